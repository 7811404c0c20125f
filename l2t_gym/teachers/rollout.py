"""The rollout loop: teachers teaching students, one episode each, and what the benchmarks report.

:func:`run_episodes` is the one loop in the package that runs teachers on envs; evaluation,
:func:`run_episode` and REINFORCE all go through it. A single env is run as a vector env of one
(as Stable-Baselines3's ``evaluate_policy`` does), so both kinds share one loop and one set of
books. In a vector env every student gets its own teacher (:meth:`Teacher.spawn`), reset with its
own seed, and the N teachers decide together (:meth:`Teacher.act_slots`), so a policy network
scores all N candidate batches in one forward pass.

Episodes are given their env seeds explicitly. Gymnasium's autoreset cannot seed the episode it
starts, so a vector env of N runs the episodes in waves of N, each begun by ``reset(seed=[...])``;
a student whose episode has ended (or that has none in a short last wave) keeps nothing until
the wave ends, and its later episode is never counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from l2t_gym.teachers.base import Teacher

__all__ = ["CurvePoint", "EpisodeResult", "Trajectory", "run_episode", "run_episodes"]


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


class Trajectory(NamedTuple):
    """What a teacher saw and chose in one episode of T steps (REINFORCE's data).

    ``observations``: float32 (T, M, d); ``actions``: the keep masks, bool (T, M).
    """

    observations: np.ndarray
    actions: np.ndarray


@dataclass(frozen=True)
class EpisodeResult:
    """What one teacher did for one student, as the benchmarks report it.

    ``keep_ratio`` is kept / seen candidates; ``reward`` the episode's total reward;
    ``seconds`` wall-clock from before ``env.reset`` to the end (less any time the env reports
    in ``info["test_seconds"]``). ``curve`` holds a
    :class:`CurvePoint` for the start, for every dev evaluation (each new iteration that is a
    multiple of the env's ``eval_every``) and for the final evaluation at the end, if the env
    made one off that grid. ``dev_accuracy`` is NaN in a curve whose env reports none.
    ``trajectory`` is None unless the rollout recorded it (``record=True``).
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
    trajectory: Trajectory | None = field(default=None, repr=False, compare=False)


def run_episode(env: gym.Env, teacher: Teacher, seed: int | None = None) -> EpisodeResult:
    """Run one full episode of ``env`` with ``teacher`` deciding, and summarise it.

    :param env: an :class:`l2t_gym.L2TEnv`, a ``gym.make`` env (wrappers are looked through for
        ``feature_names`` and ``eval_every``) or any env with the same interface.
    :param teacher: decides; it is reset for the episode and keeps its state afterwards.
    :param seed: seeds both the env and the teacher; None continues their streams.
    :return: the episode's :class:`EpisodeResult`.
    """
    return run_episodes(env, teacher, [seed])[0]


def run_episodes(
    env: gym.Env | gym.vector.VectorEnv,
    teacher: Teacher,
    seeds: Sequence[int | None],
    *,
    teacher_seeds: Sequence[int | None] | None = None,
    record: bool = False,
    curves: bool = True,
) -> list[EpisodeResult]:
    """Run one episode per seed, with ``teacher`` deciding, and summarise each.

    :param env: one env (``gym.make``, :class:`l2t_gym.L2TEnv`), or a vector env of N
        students (``gym.make_vec``, :class:`l2t_gym.vector.L2TVectorEnv`) with next-step
        autoreset and info as dicts of arrays with ``_key`` masks.
    :param teacher: decides for the single env, and for the vector env's first student; the
        others get copies (:meth:`Teacher.spawn`) that share its parameters.
    :param seeds: the env seed of each episode; None continues the env's stream.
    :param teacher_seeds: the teacher seed of each episode (default: ``seeds``, as
        :func:`run_episode` does).
    :param record: keep each episode's observations and actions in ``result.trajectory``
        (memory: T x M x d floats per episode).
    :param curves: keep a :class:`CurvePoint` at every dev evaluation in ``result.curve``;
        False leaves the curves empty, for callers that read none (a point costs a few
        microseconds per student, about 2% of a Digits step). Evaluations are the new
        iterations on the env's ``eval_every`` grid; an env (or a vector env's sub-envs) that
        exposes no ``eval_every`` is taken to evaluate at every iteration.
    :return: one :class:`EpisodeResult` per seed, in order.
    :raises ValueError: if ``teacher_seeds`` and ``seeds`` differ in length, or the vector env
        resets its students within the step that ends their episode.
    """
    seeds = list(seeds)
    teacher_seeds = seeds if teacher_seeds is None else list(teacher_seeds)
    if len(teacher_seeds) != len(seeds):
        raise ValueError(
            f"got {len(seeds)} env seeds but {len(teacher_seeds)} teacher seeds; "
            "expected one of each per episode"
        )
    n = getattr(env, "num_envs", None)
    if n is None:
        vec, slots = _VectorOfOne(env), [teacher]
        n = 1
    else:
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"run_episodes needs a vector env with next-step autoreset, got {mode}: in other "
                "modes the step that ends an episode reports the next one's info"
            )
        vec, slots = env, [teacher] + [teacher.spawn() for _ in range(env.num_envs - 1)]
    names = _feature_names(env)
    curve_every = _eval_every(env) if curves else 0  # 0: no curve points
    results: list[EpisodeResult] = []
    for first in range(0, len(seeds), n):
        wave = slice(first, first + n)
        results += _run_wave(
            vec, slots, names, curve_every, seeds[wave], teacher_seeds[wave], record
        )
    return results


def _run_wave(
    env: Any,
    slots: list[Teacher],
    names: tuple[str, ...],
    curve_every: int,
    seeds: list[int | None],
    teacher_seeds: list[int | None],
    record: bool,
) -> list[EpisodeResult]:
    """Episodes of up to N students side by side, from one reset until the last one ends."""
    n, count = len(slots), len(seeds)
    single = isinstance(env, _VectorOfOne)
    start = time.perf_counter()
    # Students without an episode continue their own streams.
    obs, info = env.reset(seed=seeds + [None] * (n - count))
    for i in range(count):
        slots[i].reset(names, seed=teacher_seeds[i])
    books = [_Books(info, i, start, curve_every, record) for i in range(count)]
    results: list[EpisodeResult | None] = [None] * count
    running = np.zeros(n, dtype=bool)
    running[:count] = True
    # The books are kept in plain Python numbers, student by student: for one student or a few
    # that costs less per step than NumPy calls on small arrays.
    active = list(range(count))
    while active:
        if single:  # the teacher's own action, unconverted: the env checks it
            actions: Any = [slots[0].act(obs[0])]
        else:
            actions = slots[0].act_slots(obs, slots, running)
        # A copy: vector envs may hand out the same observation buffer at every step.
        shown = np.array(obs) if record else obs
        obs, rewards, terminated, truncated, info = env.step(actions)
        elapsed = time.perf_counter() - start
        # All students at once, as Python numbers; counted once the env has checked the actions
        # (a vector env's are 0/1 masks, (N, M)).
        if single:
            kept, m = [int(np.count_nonzero(actions[0]))], len(actions[0])
        else:
            kept, m = actions.sum(axis=1, dtype=np.int64).tolist(), actions.shape[1]
        gains = np.asarray(rewards, dtype=np.float64).tolist()
        done = np.logical_or(terminated, truncated).tolist()
        for i in active:
            book = books[i]
            book.kept += kept[i]
            book.seen += m
            book.reward += gains[i]
            if record:
                book.observations.append(shown[i])
                book.actions.append(actions[i])
            if book.every:
                book.look_for_evaluation(info, i, elapsed)
            if done[i]:
                results[i] = book.finish(info, i, bool(truncated[i]), start)
                running[i] = False
        if any(done[i] for i in active):
            active = [i for i in active if not done[i]]
    return results  # type: ignore[return-value]  # every slot with an episode has ended


class _Books:
    """One student's episode so far: counts, reward, curve and (when recording) trajectory."""

    def __init__(
        self, info: dict[str, Any], i: int, start: float, curve_every: int, record: bool
    ) -> None:
        self.every = curve_every  # the env's eval_every; 0: no curve
        self.curve = [_point(info, i, time.perf_counter() - start)] if curve_every else []
        self.last_iteration = info["iteration"][i]
        self.kept = self.seen = 0
        self.reward = 0.0
        self.record = record
        # What the student was shown and what its teacher chose, step by step (when recording).
        self.observations: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def look_for_evaluation(self, info: dict[str, Any], i: int, elapsed: float) -> None:
        """A curve point when the student's iteration moved onto the env's eval grid."""
        iteration = info["iteration"][i]
        if iteration != self.last_iteration and iteration % self.every == 0:
            self.curve.append(_point(info, i, elapsed))
        self.last_iteration = iteration

    def finish(self, info: dict[str, Any], i: int, truncated: bool, start: float) -> EpisodeResult:
        elapsed = time.perf_counter() - start
        iteration = int(_get(info, "iteration", i))
        final = _get(info, "final_dev_accuracy", i)
        final_dev = float(_get(info, "dev_accuracy", i, math.nan) if final is None else final)
        if self.every and final is not None and self.curve[-1].iteration != iteration:
            # The env evaluated once more at the end (it ran out of clock off the eval grid).
            self.curve.append(_point(info, i, elapsed, dev_accuracy=final_dev))
        test = _get(info, "test_accuracy", i)
        trajectory = None
        if self.record:
            trajectory = Trajectory(np.stack(self.observations), np.stack(self.actions))
        return EpisodeResult(
            reached_tau=bool(_get(info, "reached_tau", i)),
            truncated=truncated,
            iterations=iteration,
            teacher_steps=int(_get(info, "teacher_step", i)),
            effective_instances=int(_get(info, "effective_instances", i)),
            instances_seen=int(_get(info, "instances_seen", i, self.seen)),
            kept_instances=self.kept,
            keep_ratio=self.kept / self.seen if self.seen else 0.0,
            reward=self.reward,
            final_dev_accuracy=final_dev,
            test_accuracy=None if test is None else float(test),
            seconds=elapsed - float(_get(info, "test_seconds", i, 0.0)),
            curve=self.curve,
            trajectory=trajectory,
        )


def _point(
    info: dict[str, Any], i: int, elapsed: float, dev_accuracy: float | None = None
) -> CurvePoint:
    # Test accuracy belongs on the curve only when the env measures it at every evaluation,
    # which is when it reports the seconds that took.
    test_seconds = _get(info, "test_seconds", i)
    test = _get(info, "test_accuracy", i) if test_seconds is not None else None
    if dev_accuracy is None:
        dev_accuracy = _get(info, "dev_accuracy", i, math.nan)
    return CurvePoint(
        effective_instances=int(_get(info, "effective_instances", i)),
        iteration=int(_get(info, "iteration", i)),
        teacher_step=int(_get(info, "teacher_step", i)),
        dev_accuracy=float(dev_accuracy),
        seconds=elapsed - float(test_seconds or 0.0),
        kept_instances=int(_get(info, "kept_instances", i, 0)),
        instances_seen=int(_get(info, "instances_seen", i, 0)),
        test_accuracy=math.nan if test is None else float(test),
    )


def _get(info: dict[str, Any], key: str, i: int, default: Any = None) -> Any:
    """Student i's ``info[key]`` in a vector env's info (arrays with ``_key`` masks)."""
    values = info.get(key)
    if values is None:
        return default
    mask = info.get("_" + key)
    if mask is not None and not mask[i]:
        return default
    return values[i]


class _VectorOfOne:
    """A single env seen as a vector env of one: arrays of one, info values in tuples of one."""

    num_envs = 1

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def reset(self, seed: list[int | None]) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed[0])
        return obs[None], _lift(info)

    def step(self, actions: list[Any]) -> tuple[Any, ...]:
        obs, reward, terminated, truncated, info = self.env.step(actions[0])
        return obs[None], (reward,), (terminated,), (truncated,), _lift(info)


def _lift(info: dict[str, Any]) -> dict[str, Any]:
    return {key: (value,) for key, value in info.items()}


def _feature_names(env: Any) -> tuple[str, ...]:
    names = _attribute(env, "feature_names")
    if names is None:
        raise ValueError(f"{env} has no feature_names; expected an l2t-gym env")
    return tuple(names)


def _eval_every(env: Any) -> int:
    # Envs without periodic evaluation (the synthetic test env) refresh their score every step.
    every = _attribute(env, "eval_every")
    return int(every) if every is not None else 1


def _attribute(env: Any, name: str) -> Any:
    """An attribute of the env (through wrappers), or of a Sync/AsyncVectorEnv's first env."""
    base = env.unwrapped
    value = getattr(base, name, None)
    if value is None and hasattr(base, "get_attr"):
        try:
            value = base.get_attr(name)[0]
        except AttributeError:
            value = None
    return value
