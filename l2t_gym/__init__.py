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

#: Registered id -> task name.
ENV_IDS = {
    "L2T-Digits-v0": "digits",
    "L2T-MNIST-v0": "mnist",
    "L2T-CIFAR10-v0": "cifar10",
    "L2T-IMDB-v0": "imdb",
}

#: Tasks whose student runs under torch.func.vmap, so gym.make_vec gets the native vector env
#: (the others fall back to Gymnasium's SyncVectorEnv: nn.LSTM has no vmap batching rule).
VECTOR_TASKS = ("digits", "mnist", "cifar10")

for _env_id, _task in ENV_IDS.items():
    if _env_id not in registry:
        # No max_episode_steps: the env truncates itself at max_teacher_steps, which scales with
        # the task's T' and can be set per env.
        register(
            id=_env_id,
            entry_point="l2t_gym.env:L2TEnv",
            vector_entry_point="l2t_gym.vector:L2TVectorEnv" if _task in VECTOR_TASKS else None,
            kwargs={"task": _task},
        )
