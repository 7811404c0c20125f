"""Many students at once: N independent L2T episodes on one device, trained with ``torch.func``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from l2t_gym.env import autograd_on
from l2t_gym.episode import Episodes, action_space, check_keep_masks, observation_space
from l2t_gym.settings import Settings, SettingsAttributes, require_integer
from l2t_gym.student import StudentRun


class L2TVectorEnv(SettingsAttributes, VectorEnv):
    """
    ## Description

    ``num_envs`` students of one task, each in its own L2T episode, trained together on one
    device. Their parameters are stacked and every forward pass is one ``torch.func.vmap`` of
    ``functional_call`` over the students, so N small students cost little more than one. Each
    student keeps its own initialisation, SGD momentum, data order, augmentation stream, pool,
    iteration count, clock and episode end: with the same seeds and actions the results equal
    N separate :class:`~l2t_gym.L2TEnv` to float tolerance. The rules of the episode and the
    student's run are the single env's own (:mod:`l2t_gym.episode`, :mod:`l2t_gym.student`),
    over N students.

    ## Spaces

    The single env's spaces batched by Gymnasium's ``batch_space``: observations a float32
    ``Box`` (N, M, d), actions an int8 ``Box(0, 1, (N, M))`` (its batch of ``MultiBinary(M)``;
    bool, int or float 0/1 arrays are accepted); rewards, terminations and truncations are arrays
    of shape (N,).

    ## Autoreset

    Gymnasium's next-step mode (``metadata["autoreset_mode"]``): the step after a sub-env's
    episode ended resets that sub-env (a new student, from its own continuing seed stream),
    ignores its action and returns its first observation with reward 0.

    ## Arguments

    ``num_envs`` and every :class:`~l2t_gym.L2TEnv` keyword argument, with two limits:
    ``mode="paper"`` only (the mask mode trains each student on a batch of its own size), and
    ``optimizer="sgd"`` only (its update is applied to the stacked parameters here, the same
    arithmetic as ``torch.optim.SGD`` with momentum and weight decay). Of the speed options,
    ``precision="bf16"`` works for the package's MLP students (named ``"mlp-..."``), whose
    batched forward is plain matmuls; ``torch.vmap`` does not apply autocast to convolutions, so
    other students, ``channels_last`` and ``compile`` raise a ValueError: use ``L2TEnv``.

    BatchNorm students work: their running statistics are stacked like the parameters and each
    student's are updated only by its own training batches (candidate forward passes run on a
    copy, kept only when that copy's batch is trained on).

    ## Info

    A dict of arrays of shape (N,), with Gymnasium's ``_key`` masks; the keys of ``L2TEnv``'s
    info. ``final_dev_accuracy`` (and ``test_accuracy`` with ``report_test``) are set where an
    episode ended on this step.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, task: str = "digits", **kwargs: Any) -> None:
        num_envs = require_integer("num_envs", num_envs)
        self.settings = settings = Settings.resolve(task, **kwargs)
        _check_stackable(settings)
        self.num_envs = n = int(num_envs)
        self.batch_size = settings.batch_size
        self.feature_names = settings.feature_names
        self.device = settings.device
        self.single_observation_space = observation_space(settings)
        self.single_action_space = action_space(settings)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.render_mode = None
        self._episodes: Episodes | None = None
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._needs_reset = np.zeros(n, dtype=bool)

    # -- Gymnasium API ------------------------------------------------------------------------
    @autograd_on
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if isinstance(seed, (list, tuple)):
            if len(seed) != n:
                raise ValueError(f"expected {n} seeds, got {len(seed)}")
            seeds = list(seed)
        else:  # Gymnasium's convention: sub-env i gets seed + i
            seeds = [None if seed is None else seed + i for i in range(n)]
        if self._episodes is None:
            run = StudentRun(self.settings, n=n, stacked=True)
            self._episodes = Episodes(self.settings, run)
        episodes = self._episodes
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = gym.utils.seeding.np_random(s)
            episodes.start(i, self._rngs[i])
        self._needs_reset[:] = False
        obs = episodes.observe()
        return obs, self._info(np.zeros(n, dtype=bool))

    @autograd_on
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        episodes = self._episodes
        if episodes is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        keep = check_keep_masks(actions, (self.num_envs, self.batch_size))
        resetting = np.flatnonzero(self._needs_reset).tolist()
        for i in resetting:
            episodes.start(i, self._rngs[i])
        # A resetting sub-env's action is ignored: it starts its new episode instead.
        stepping = [i for i in range(self.num_envs) if i not in resetting] if resetting else None
        obs, rewards, terminated, truncated = episodes.step(keep, stepping)
        terminated, truncated = np.array(terminated), np.array(truncated)
        ended = terminated | truncated
        info = self._info(ended)
        self._needs_reset = ended
        return obs, np.array(rewards), terminated, truncated, info

    @property
    def run(self) -> StudentRun | None:
        """The students' run (their parameters, histories, data), None before the first reset."""
        return None if self._episodes is None else self._episodes.run

    def _info(self, ended: np.ndarray) -> dict[str, Any]:
        assert self._episodes is not None
        info = self._episodes.info()
        everywhere = np.ones(self.num_envs, dtype=bool)
        info.update({f"_{k}": everywhere for k in list(info)})
        if ended.any():
            final = self._episodes.final_info(np.flatnonzero(ended).tolist())
            info.update({k: np.array(v) for k, v in final.items()})
            info.update({f"_{k}": ended.copy() for k in final})
        return info


def _check_stackable(settings: Settings) -> None:
    """Refuse, with a pointer to L2TEnv, what stacked students cannot honour."""
    if settings.mode != "paper":
        raise ValueError("the vector env supports mode='paper' only")
    if settings.optimizer != "sgd":
        raise ValueError("the vector env supports optimizer='sgd' only")
    if settings.channels_last:
        raise ValueError(
            "channels_last is not supported by the vector env (torch.vmap runs the students "
            "as one grouped convolution, which keeps no memory format); use L2TEnv"
        )
    if settings.compile:
        raise ValueError("compile=True is not supported by the vector env; use L2TEnv")
    if settings.report_test == "eval":
        raise ValueError(
            "report_test='eval' is not supported by the vector env (it reports test "
            "accuracy at the end of an episode: report_test=True); use L2TEnv for curves"
        )
    mlp = isinstance(settings.student, str) and settings.student.startswith("mlp-")
    if settings.precision == "bf16" and not mlp:
        raise ValueError(
            "precision='bf16' in the vector env needs an MLP student ('mlp-...'): "
            f"torch.vmap does not apply autocast to convolutions, got {settings.student!r}; "
            "use L2TEnv for other students"
        )
