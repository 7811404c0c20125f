"""l2t-gym: "Learning to Teach" (Fan et al., ICLR 2018) as Gymnasium environments.

``import l2t_gym`` registers ``L2T-Digits-v0``, ``L2T-MNIST-v0``, ``L2T-CIFAR10-v0`` and
``L2T-IMDB-v0``.
"""

from gymnasium.envs.registration import register, registry

from l2t_gym.env import L2TEnv
from l2t_gym.features import feature_names
from l2t_gym.tasks import TASKS, TaskSpec

__all__ = ["ENV_IDS", "L2TEnv", "TASKS", "TaskSpec", "feature_names"]
__version__ = "0.1.0"

#: Registered id -> task name, from the task table.
ENV_IDS = {spec.env_id: name for name, spec in TASKS.items()}

for _task, _spec in TASKS.items():
    if _spec.env_id not in registry:
        # No max_episode_steps: the env truncates itself at max_teacher_steps, which scales with
        # the task's T' and can be set per env.
        register(
            id=_spec.env_id,
            entry_point="l2t_gym.env:L2TEnv",
            vector_entry_point="l2t_gym.vector:L2TVectorEnv" if _spec.stacked else None,
            kwargs={"task": _task},
        )
