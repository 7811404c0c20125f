"""One driver for every L2T env, so that a rule of the MDP is written once in the tests.

:class:`Driver` holds an ``L2TEnv`` (as a vector of one: arrays in, arrays out) or an
``L2TVectorEnv`` (its info dict-of-arrays read per sub-env through the ``_key`` masks), and
:func:`first_episodes` plays each sub-env's first episode to its end. The ``shell`` fixture in
``conftest.py`` runs a test over :data:`SHELLS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from l2t_gym import L2TEnv
from l2t_gym.vector import L2TVectorEnv

#: The envs every contract test runs over: the single env, and the vector env of one and three.
SHELLS = ("single", "vector-1", "vector-3")

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class Step:
    """One sub-env's view of a reset or a step (reward 0 and flags False for a reset)."""

    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class Driver:
    """An L2T env as N sub-envs.

    :param shell: one of :data:`SHELLS`.
    :param task: the task; every other keyword goes to the env (``device`` defaults to "cpu").
    """

    def __init__(self, shell: str, task: str = "digits", **kwargs: Any) -> None:
        kwargs.setdefault("device", "cpu")
        self.shell = shell
        if shell == "single":
            self.env: L2TEnv | L2TVectorEnv = L2TEnv(task, **kwargs)
            self.n = 1
            self.single_observation_space = self.env.observation_space
        else:
            self.n = int(shell.split("-")[1])
            self.env = L2TVectorEnv(self.n, task, **kwargs)
            self.single_observation_space = self.env.single_observation_space
        self.settings = self.env.settings
        self.batch_size = self.settings.batch_size
        self.feature_names = self.env.feature_names
        #: The shape of the action the env itself takes: (M,) or (N, M).
        self.action_shape: tuple[int, ...] = self.env.action_space.shape

    @property
    def run(self):
        """The env's student run (public seam ``env.run``)."""
        return self.env.run

    def column(self, name: str) -> int:
        return self.feature_names.index(name)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Observations (N, M, d) and one info dict per sub-env."""
        obs, info = self.env.reset(seed=seed)
        if self.shell == "single":
            return obs[None], [info]
        return obs, self._per_sub_env(info)

    def step(
        self, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Keep masks (N, M) in; observations (N, M, d), rewards, terminated and truncated (N,)
        and one info dict per sub-env out."""
        keep = np.asarray(keep)
        if self.shell == "single":
            obs, reward, terminated, truncated, info = self.env.step(keep[0])
            return (
                obs[None],
                np.array([reward]),
                np.array([terminated]),
                np.array([truncated]),
                [info],
            )
        obs, rewards, terminated, truncated, info = self.env.step(keep)
        return obs, rewards, terminated, truncated, self._per_sub_env(info)

    def step_as_is(self, action: Any) -> Any:
        """Hand ``action`` to the env untouched (for bad actions)."""
        return self.env.step(action)

    def _per_sub_env(self, info: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                k: v[i].item() if v[i].ndim == 0 else v[i]  # (N, K) rows stay arrays
                for k, v in info.items()
                if not k.startswith("_") and info[f"_{k}"][i]
            }
            for i in range(self.n)
        ]


def first_episodes(driver: Driver, policy: Policy, seed: int) -> list[list[Step]]:
    """Every sub-env's first episode after ``reset(seed)``, reset included, to its end.

    The env is stepped until every sub-env's episode has ended; what a vector env's sub-env does
    after its end (an autoreset, a new episode) is not recorded.
    """
    obs, infos = driver.reset(seed)
    episodes = [[Step(obs[i], 0.0, False, False, infos[i])] for i in range(driver.n)]
    done = np.zeros(driver.n, dtype=bool)
    while not done.all():
        obs, rewards, terminated, truncated, infos = driver.step(policy(obs))
        for i in np.flatnonzero(~done):
            episodes[i].append(
                Step(obs[i], float(rewards[i]), bool(terminated[i]), bool(truncated[i]), infos[i])
            )
        done |= terminated | truncated
    return episodes


# -- policies: observations (N, M, d) -> keep masks (N, M) ----------------------------------------
def keep_all(obs: np.ndarray) -> np.ndarray:
    return np.ones(obs.shape[:2], dtype=bool)


def drop_all(obs: np.ndarray) -> np.ndarray:
    return np.zeros(obs.shape[:2], dtype=bool)


def keep_first(k: int) -> Policy:
    """Keep the first ``k`` candidates of every batch."""
    return lambda obs: np.broadcast_to(np.arange(obs.shape[1]) < k, obs.shape[:2])


def keep_at_random(p: float, seed: int) -> Policy:
    """Keep each candidate with probability ``p``, from a stream of its own."""
    rng = np.random.default_rng(seed)
    return lambda obs: rng.random(obs.shape[:2]) < p
