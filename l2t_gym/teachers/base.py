"""The teacher interface and the loop that runs one teacher on one student.

A teacher is any agent that maps an observation (M, d) to a keep mask (M,). :class:`Teacher` is
the one small interface this package's teachers share, made for a plain Gymnasium loop::

    obs, info = env.reset(seed=s)
    teacher.reset(env.unwrapped.feature_names, seed=s)
    while not done:
        obs, reward, terminated, truncated, info = env.step(teacher.act(obs))

:func:`run_episode` is that loop, plus the bookkeeping the benchmarks report.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

# Mixed into every teacher seed. Gymnasium seeds an env's np_random with the very same generator
# that np.random.default_rng(seed) builds, so without it a teacher reset with the env's seed would
# draw the bit stream the env draws its student from, and its "random" choices would be
# correlated with the data it is shown.
_TEACHER_STREAM = 0x7EAC4E5


def teacher_generator(seed: int | None) -> np.random.Generator:
    """A NumPy generator for a teacher: independent of an env's ``np_random`` for the same seed;
    fresh OS entropy when ``seed`` is None."""
    if seed is None:
        return np.random.default_rng()
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed}")
    return np.random.default_rng([int(seed), _TEACHER_STREAM])


class Teacher(abc.ABC):
    """Keeps or drops each instance of a candidate minibatch.

    Call :meth:`reset` at the start of every episode with the env's ``feature_names`` (for a
    ``gym.make`` env, ``env.unwrapped.feature_names``); teachers find the columns they need there,
    by name, so they work for any column layout. Then call :meth:`act` on each observation.

    Parameters
    ----------
    seed:
        Seeds the teacher's own NumPy generator (``self.rng``); ``reset(seed=...)`` reseeds it.
        Teachers that draw no random numbers ignore it.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.rng = teacher_generator(seed)
        self.feature_names: tuple[str, ...] | None = None

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        """Start an episode on an env with these observation columns.

        Subclasses that need columns look them up here (see :meth:`column`), after calling
        ``super().reset``. ``seed`` reseeds ``self.rng``; None keeps its stream going, as
        Gymnasium's ``reset(seed=None)`` does.
        """
        names = tuple(str(n) for n in feature_names)
        if not names:
            raise ValueError("feature_names is empty; expected the env's observation columns")
        if len(set(names)) != len(names):
            raise ValueError(f"feature_names has duplicates: {names}")
        self.feature_names = names
        if seed is not None:
            self.rng = teacher_generator(seed)

    @abc.abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Return the keep mask for one candidate batch: bool array of shape (M,)."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def column(self, name: str) -> int:
        """The index of a named observation column, for rules that read features by name.

        :param name: a feature name, e.g. ``"loss"``.
        :return: its index in the columns given to :meth:`reset`.
        :raises ValueError: naming the feature, if the env lacks it.
        :raises RuntimeError: before :meth:`reset`.
        """
        names = self._names()
        if name not in names:
            raise ValueError(
                f"{type(self).__name__} needs the feature {name!r}, which this env's "
                f"feature_names lack: {list(names)}"
            )
        return names.index(name)

    def rows(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` as an (M, d) array, checked against the columns given to :meth:`reset`.

        :param obs: one observation, (M, d).
        :return: ``obs`` as a NumPy array (not copied).
        :raises ValueError: if it is not 2-D with M >= 1 rows and one column per feature.
        :raises RuntimeError: before :meth:`reset`.
        """
        names = self._names()
        x = np.asarray(obs)
        if x.ndim != 2 or x.shape[1] != len(names) or x.shape[0] == 0:
            raise ValueError(
                f"expected an observation of shape (M, {len(names)}) with M >= 1, got {x.shape}"
            )
        return x

    # The names these helpers had before they were public; subclasses outside the package
    # (examples/custom_agent.py among them) may still call them.
    _column = column
    _rows = rows

    def _names(self) -> tuple[str, ...]:
        if self.feature_names is None:
            raise RuntimeError(
                f"call {type(self).__name__}.reset(feature_names) at the start of the episode, "
                "before act()"
            )
        return self.feature_names


class CurvePoint(NamedTuple):
    """One dev evaluation during an episode.

    ``kept_instances`` / ``instances_seen`` count the teacher's choices so far (their ratio is
    the keep ratio up to this point). ``test_accuracy`` is NaN unless the env measures it at
    every evaluation (``report_test="eval"``). ``seconds`` is wall-clock since before
    ``env.reset``, less the time the env spent on those test evaluations.
    """

    effective_instances: int
    iteration: int
    teacher_step: int
    dev_accuracy: float
    seconds: float
    kept_instances: int = 0
    instances_seen: int = 0
    test_accuracy: float = math.nan


@dataclass(frozen=True)
class EpisodeResult:
    """What one teacher did for one student, as the benchmarks report it.

    ``keep_ratio`` is kept / seen candidates; ``reward`` the episode's total reward;
    ``seconds`` wall-clock from before ``env.reset`` to the end (less any time the env reports
    in ``info["test_seconds"]``). ``curve`` holds a
    :class:`CurvePoint` for the start, for every dev evaluation (each new iteration that is a
    multiple of the env's ``eval_every``) and for the final evaluation at the end, if the env
    made one off that grid. ``dev_accuracy`` is NaN in a curve whose env reports none.
    """

    reached_tau: bool
    truncated: bool
    iterations: int
    teacher_steps: int
    effective_instances: int
    instances_seen: int
    kept_instances: int
    keep_ratio: float
    reward: float
    final_dev_accuracy: float
    test_accuracy: float | None
    seconds: float
    curve: list[CurvePoint]


def run_episode(env: gym.Env, teacher: Teacher, seed: int | None = None) -> EpisodeResult:
    """Run one full episode of ``env`` with ``teacher`` deciding, and summarise it.

    ``env`` may be an :class:`l2t_gym.L2TEnv`, a ``gym.make`` env (wrappers are looked through
    for ``feature_names`` and ``eval_every``) or any env with the same interface. Both the env
    and the teacher are reset with ``seed``.
    """
    base = env.unwrapped
    feature_names = base.feature_names
    # Envs without periodic evaluation (the synthetic test env) refresh their score every step.
    eval_every = int(getattr(base, "eval_every", 1))
    start = time.perf_counter()
    obs, info = env.reset(seed=seed)
    teacher.reset(feature_names, seed=seed)
    curve = [_point(info, start)]
    total_reward, kept, seen = 0.0, 0, 0
    last_iteration = info["iteration"]
    terminated = truncated = False
    while not (terminated or truncated):
        action = teacher.act(obs)
        n = int(np.count_nonzero(action))
        obs, reward, terminated, truncated, info = env.step(action)
        kept += n
        seen += len(action)
        total_reward += float(reward)
        iteration = info["iteration"]
        if iteration != last_iteration and iteration % eval_every == 0:
            curve.append(_point(info, start))
        last_iteration = iteration
    seconds = time.perf_counter() - start - float(info.get("test_seconds", 0.0))
    final_dev = float(info.get("final_dev_accuracy", info.get("dev_accuracy", math.nan)))
    if "final_dev_accuracy" in info and curve[-1].iteration != info["iteration"]:
        # The env evaluated once more at the end (it ran out of clock off the eval grid).
        curve.append(_point({**info, "dev_accuracy": final_dev}, start))
    test = info.get("test_accuracy")
    return EpisodeResult(
        reached_tau=bool(info["reached_tau"]),
        truncated=bool(truncated),
        iterations=int(info["iteration"]),
        teacher_steps=int(info["teacher_step"]),
        effective_instances=int(info["effective_instances"]),
        instances_seen=int(info.get("instances_seen", seen)),
        kept_instances=kept,
        keep_ratio=kept / seen if seen else 0.0,
        reward=total_reward,
        final_dev_accuracy=final_dev,
        test_accuracy=None if test is None else float(test),
        seconds=seconds,
        curve=curve,
    )


def _point(info: dict[str, Any], start: float) -> CurvePoint:
    test = info.get("test_accuracy") if "test_seconds" in info else None
    return CurvePoint(
        effective_instances=int(info["effective_instances"]),
        iteration=int(info["iteration"]),
        teacher_step=int(info["teacher_step"]),
        dev_accuracy=float(info.get("dev_accuracy", math.nan)),
        seconds=time.perf_counter() - start - float(info.get("test_seconds", 0.0)),
        kept_instances=int(info.get("kept_instances", 0)),
        instances_seen=int(info.get("instances_seen", 0)),
        test_accuracy=math.nan if test is None else float(test),
    )
