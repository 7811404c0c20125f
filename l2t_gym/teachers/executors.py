"""Executors: where teachers' episodes run. The one seam between the algorithms and the rollout.

Every training algorithm (REINFORCE, CMA-ES) and every comparison hands out its work as
:class:`EpisodeJob` s, one teacher teaching some students with given env and teacher seeds, on
one of the executor's named envs, and gets back per job one :class:`EpisodeOutcome` per
student, in order (Stable-Baselines3's split of rollout and update, with the rollout behind an
interface). Three executors:

* :class:`InProcessExecutor`: in this process, on one env or side by side in a vector env
  (``gym.make_vec``, the native :class:`~l2t_gym.vector.L2TVectorEnv`): what the package did
  before executors existed, step for step.
* :class:`l2t_gym.teachers.process_executor.ProcessExecutor`: on local worker processes (the
  standard library's ``concurrent.futures``), every core of one machine without Ray.
* :class:`l2t_gym.teachers.ray_executor.RayExecutor`: on Ray actors, each with its own envs
  built from picklable env specs (the optional ``ray`` extra).

All run a job with the same function, :func:`run_job`, and an episode's outcome depends only
on the teacher's parameters and the episode's two seeds, so on CPU what an algorithm learns does
not depend on the executor or on how many workers it has.

What comes back is what an update needs, never the observations (T x M x d floats per
episode): the :class:`~l2t_gym.teachers.rollout.EpisodeResult` without its trajectory and, when
a job asks (REINFORCE), the gradient of the episode's summed log-probability in the teacher's
parameters, a flat float32 vector of a few KB.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from l2t_gym.teachers import rollout
from l2t_gym.teachers.base import Teacher
from l2t_gym.teachers.rollout import EpisodeResult

__all__ = [
    "MAIN",
    "EpisodeJob",
    "EpisodeOutcome",
    "Executor",
    "InProcessExecutor",
    "as_executor",
    "log_prob_gradient",
    "run_job",
]

#: The name of the env an executor made from one env (:func:`as_executor`) runs jobs on.
MAIN = "main"

#: What an executor's env name may stand for: a built env or vector env (in process only), or a
#: function that builds one (picklable for Ray: e.g. :class:`l2t_gym.experiment.EnvSpec`).
EnvSource = gym.Env | gym.vector.VectorEnv | Callable[[], Any]


@dataclass(frozen=True)
class EpisodeJob:
    """One teacher teaching some students: one episode per pair of seeds.

    :param teacher: the teacher (its parameters travel once per :meth:`Executor.run` call).
    :param env_seeds: the students' env seeds.
    :param teacher_seeds: the teacher's sampling seed of each episode, as many as ``env_seeds``.
    :param env: the name of the executor's env they train in.
    :param log_prob_grad: also return each episode's gradient of log pi(a | s) summed over its
        steps (REINFORCE; the teacher needs ``log_prob`` and ``policy``, as
        :class:`~l2t_gym.teachers.BernoulliTeacher` has).
    :param curves: keep each result's curve (a point per dev evaluation).
    :raises ValueError: if the seeds differ in number, or there are none.
    """

    teacher: Teacher
    env_seeds: tuple[int | None, ...]
    teacher_seeds: tuple[int | None, ...]
    env: str = MAIN
    log_prob_grad: bool = False
    curves: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_seeds", tuple(self.env_seeds))
        object.__setattr__(self, "teacher_seeds", tuple(self.teacher_seeds))
        if not self.env_seeds or len(self.env_seeds) != len(self.teacher_seeds):
            raise ValueError(
                f"an EpisodeJob needs one teacher seed per env seed, at least one; got "
                f"{len(self.env_seeds)} env seeds and {len(self.teacher_seeds)} teacher seeds"
            )

    def part(self, start: int, stop: int) -> EpisodeJob:
        """The job's episodes ``start`` .. ``stop - 1`` as a job of their own."""
        return dataclasses.replace(
            self,
            env_seeds=self.env_seeds[start:stop],
            teacher_seeds=self.teacher_seeds[start:stop],
        )


class EpisodeOutcome(NamedTuple):
    """One episode as an update needs it.

    ``result``: its :class:`EpisodeResult` (``trajectory`` None); ``log_prob``: log pi(a | s)
    summed over the episode, and ``log_prob_grad`` its gradient in the teacher's parameters, a
    float32 (n,) vector in ``policy.parameters()`` order; both None unless the job asked.
    """

    result: EpisodeResult
    log_prob: float | None = None
    log_prob_grad: np.ndarray | None = None


def log_prob_gradient(teacher: Any, trajectory: rollout.Trajectory) -> tuple[float, np.ndarray]:
    """log pi(a | s) summed over an episode and its gradient in the teacher's parameters.

    :param teacher: a teacher with ``log_prob(observations, actions)`` -> (T,) and ``policy``
        (a :class:`~l2t_gym.teachers.BernoulliTeacher`); its parameters' ``.grad`` are left alone.
    :param trajectory: the episode's observations (T, M, d) and keep masks (T, M).
    :return: (the summed log-probability, its gradient as a flat float32 (n,) array).
    """
    params = [p for p in teacher.policy.parameters() if p.requires_grad]
    total = teacher.log_prob(trajectory.observations, trajectory.actions).sum()
    grads = torch.autograd.grad(total, params)
    flat = torch.cat([g.reshape(-1) for g in grads]).detach().cpu().numpy()
    return float(total.detach()), flat.astype(np.float32, copy=False)


def run_job(env: Any, job: EpisodeJob) -> list[EpisodeOutcome]:
    """Run a job's episodes on ``env`` (one env, or side by side in a vector env, in waves of
    its ``num_envs``): the one function every executor runs jobs with.

    :return: one outcome per episode, in the job's order.
    """
    results = rollout.run_episodes(
        env,
        job.teacher,
        job.env_seeds,
        teacher_seeds=job.teacher_seeds,
        record=job.log_prob_grad,
        curves=job.curves,
    )
    if not job.log_prob_grad:
        return [EpisodeOutcome(r) for r in results]
    outcomes = []
    for r in results:
        assert r.trajectory is not None
        log_prob, grad = log_prob_gradient(job.teacher, r.trajectory)
        outcomes.append(EpisodeOutcome(dataclasses.replace(r, trajectory=None), log_prob, grad))
    return outcomes


def split_jobs(
    jobs: Sequence[EpisodeJob], size: Callable[[str], int]
) -> list[tuple[int, int, EpisodeJob]]:
    """How a worker executor cuts jobs into tasks: each job into runs of as many episodes as
    its env trains side by side (``size(job.env)``; one for a single env), so that students
    that reach tau early free their worker early.

    :return: per task, (its job's index, its first episode there, the task as an
        :meth:`EpisodeJob.part` of the job).
    :raises KeyError: from ``size``, for a job on an unknown env, before any task is made.
    """
    sizes = [size(job.env) for job in jobs]
    return [
        (i, start, job.part(start, start + n))
        for i, (job, n) in enumerate(zip(jobs, sizes, strict=True))
        for start in range(0, len(job.env_seeds), n)
    ]


class Gathered:
    """Tasks' outcomes put back in their jobs' order as they arrive, ``on_done`` called with a
    job's outcomes once all its episodes are in (what a worker executor's ``run`` returns)."""

    def __init__(
        self,
        jobs: Sequence[EpisodeJob],
        on_done: Callable[[int, list[EpisodeOutcome]], None] | None = None,
    ) -> None:
        self.outcomes: list[list[Any]] = [[None] * len(j.env_seeds) for j in jobs]
        self._missing = [len(j.env_seeds) for j in jobs]
        self._on_done = on_done

    def put(self, job: int, start: int, outcomes: list[EpisodeOutcome]) -> None:
        """The outcomes of job ``job``'s episodes ``start``, ``start + 1``, ..."""
        self.outcomes[job][start : start + len(outcomes)] = outcomes
        self._missing[job] -= len(outcomes)
        if self._missing[job] == 0 and self._on_done is not None:
            self._on_done(job, self.outcomes[job])


def warm_up(env: Any, steps: int = 3) -> None:
    """A few untimed keep-all steps, so that one-time costs (loading the data, fitting the
    irreducible losses, first kernel calls) are not charged to the seconds of whichever
    episode comes first. Seeded resets afterwards make the runs the same as without it."""
    n = getattr(env, "num_envs", None)
    obs, _ = env.reset(seed=0 if n is None else [0] * n)
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(np.ones(np.shape(obs)[:-1], dtype=bool))
        if np.any(terminated) or np.any(truncated):
            break


class Executor(abc.ABC):
    """Runs :class:`EpisodeJob` s on named envs and gives back their outcomes in order.

    ``envs`` maps names to env sources (see :data:`EnvSource`); callers may add names between
    runs. Executors are context managers (``close`` on exit).
    """

    envs: MutableMapping[str, Any]

    @abc.abstractmethod
    def run(
        self,
        jobs: Sequence[EpisodeJob],
        on_done: Callable[[int, list[EpisodeOutcome]], None] | None = None,
    ) -> list[list[EpisodeOutcome]]:
        """Run every job.

        :param jobs: the work; each names one of ``envs``.
        :param on_done: called with (job index, its outcomes) as each job completes (in
            process: in order; on Ray: as they arrive).
        :return: per job, its outcomes, in the order of ``jobs`` and of their seeds.
        :raises KeyError: for a job whose env is not in ``envs``.
        """

    def num_envs(self, name: str = MAIN) -> int:
        """How many students of env ``name`` train side by side (1: a single env)."""
        return 1

    @property
    def workers(self) -> int:
        """How many processes run episodes at once (1 in process)."""
        return 1

    def close(self) -> None:  # noqa: B027 - optional: most executors hold nothing to release
        """Release what the executor holds (Ray: its actors)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Runs jobs in this process, one after the other, each on its env (a vector env runs a
    job's students side by side).

    :param envs: one env (named :data:`MAIN`), or name -> an env, vector env or a function that
        builds one (built at first use).
    :param warm_up: give every env a few untimed keep-all steps when first used (for wall-clock
        comparisons; see :func:`warm_up`).
    """

    def __init__(self, envs: EnvSource | Mapping[str, EnvSource], warm_up: bool = False) -> None:
        if not isinstance(envs, Mapping):
            envs = {MAIN: envs}
        self.envs: dict[str, Any] = dict(envs)
        self.warm_up = warm_up
        self._built: dict[str, tuple[Any, Any]] = {}  # name -> (its source, the env built)

    def env(self, name: str) -> Any:
        """The env called ``name``, built (and warmed up) at its first use, and again if the
        name now stands for another source.

        :raises KeyError: naming the known envs, for an unknown name.
        """
        if name not in self.envs:
            raise KeyError(f"no env named {name!r} in this executor; it has {sorted(self.envs)}")
        source = self.envs[name]
        built = self._built.get(name)
        if built is None or built[0] is not source and built[0] != source:
            env = source if _is_env(source) else source()
            if self.warm_up:
                warm_up(env)
            built = self._built[name] = (source, env)
        return built[1]

    def num_envs(self, name: str = MAIN) -> int:
        """``num_envs`` of env ``name`` (building it), 1 for a single env."""
        return int(getattr(self.env(name), "num_envs", 1))

    def run(
        self,
        jobs: Sequence[EpisodeJob],
        on_done: Callable[[int, list[EpisodeOutcome]], None] | None = None,
    ) -> list[list[EpisodeOutcome]]:
        out = []
        for i, job in enumerate(jobs):
            outcomes = run_job(self.env(job.env), job)
            out.append(outcomes)
            if on_done is not None:
                on_done(i, outcomes)
        return out


def _is_env(source: Any) -> bool:
    # A built env (any object with step, as the rollout takes), not a class or spec to call.
    return isinstance(source, (gym.Env, gym.vector.VectorEnv)) or (
        not isinstance(source, type) and hasattr(source, "step")
    )


def as_executor(env: Executor | EnvSource) -> Executor:
    """``env`` itself if it is an executor, else an :class:`InProcessExecutor` of it (named
    :data:`MAIN`)."""
    return env if isinstance(env, Executor) else InProcessExecutor(env)
