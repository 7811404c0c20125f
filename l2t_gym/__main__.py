import sys

from l2t_gym.cli import main

sys.exit(main())
