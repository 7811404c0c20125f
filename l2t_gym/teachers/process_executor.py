"""Episodes on local worker processes, with the standard library's ``concurrent.futures``: every
core of one machine without Ray (``workers`` > 1 and no ``ray_address``).

A worker is a process started with ``spawn`` (a fork of a process that already runs torch's
thread pools is not safe), holding an :class:`~l2t_gym.teachers.executors.InProcessExecutor`
that builds its envs from the picklable env specs it is sent (see
:class:`l2t_gym.experiment.EnvSpec`), once per worker and spec. As on Ray, a job is cut into
tasks of as many episodes as the worker's env trains side by side (one for a single env), tasks
go to whichever worker is free, a task returns outcomes and never observations, and the outcomes
are put back in the jobs' order. An episode's outcome depends only on the teacher's parameters
and its two seeds, so on CPU a run gives the same teacher with any number of workers as in
process (tested). For a cluster, or restarts of workers that die, use
:class:`~l2t_gym.teachers.ray_executor.RayExecutor`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from l2t_gym.teachers.executors import (
    MAIN,
    EpisodeJob,
    EpisodeOutcome,
    Executor,
    Gathered,
    InProcessExecutor,
    run_job,
    split_jobs,
)

__all__ = ["ProcessExecutor"]

# The worker process's own executor (built by _start, once per process).
_worker: InProcessExecutor | None = None


def _start(threads: int, warm_up: bool) -> None:
    global _worker
    torch.set_num_threads(threads)
    _worker = InProcessExecutor({}, warm_up=warm_up)


def _run(specs: Mapping[str, Any], job: EpisodeJob) -> list[EpisodeOutcome]:
    assert _worker is not None, "started by ProcessExecutor's initializer"
    _worker.envs.update(specs)
    return run_job(_worker.env(job.env), job)


class ProcessExecutor(Executor):
    """Runs jobs on ``workers`` local processes (see the module docstring).

    :param envs: name -> a picklable function that builds the env or vector env (an
        :class:`l2t_gym.experiment.EnvSpec`); names may be added between runs. A spec with a
        ``num_envs`` attribute says how many students its env trains side by side.
    :param workers: processes (>= 1); more than the machine's cores only adds switching.
    :param threads: torch threads per worker (>= 1).
    :param warm_up: warm each env up when a worker first builds it (wall-clock comparisons).
    :raises ValueError: naming the argument, for workers < 1 or threads < 1.
    """

    def __init__(
        self,
        envs: Mapping[str, Callable[[], Any]] | None = None,
        workers: int = 2,
        threads: int = 1,
        warm_up: bool = False,
    ) -> None:
        for name, value in (("workers", workers), ("threads", threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.envs: dict[str, Any] = dict(envs or {})
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(threads, warm_up),
        )

    @property
    def workers(self) -> int:
        return self._workers

    def num_envs(self, name: str = MAIN) -> int:
        """How many students env ``name`` trains side by side (its spec's ``num_envs``, 1 for
        a single env).

        :raises KeyError: naming the known envs, for an unknown name.
        """
        if name not in self.envs:
            raise KeyError(f"no env named {name!r} in this executor; it has {sorted(self.envs)}")
        return int(getattr(self.envs[name], "num_envs", None) or 1)

    def run(
        self,
        jobs: Sequence[EpisodeJob],
        on_done: Callable[[int, list[EpisodeOutcome]], None] | None = None,
    ) -> list[list[EpisodeOutcome]]:
        if self._pool is None:
            raise RuntimeError("this ProcessExecutor is closed; build another")
        specs = dict(self.envs)
        tasks = {
            self._pool.submit(_run, specs, part): (i, start)
            for i, start, part in split_jobs(jobs, self.num_envs)  # a KeyError before any work
        }
        gathered = Gathered(jobs, on_done)
        for future in as_completed(tasks):
            gathered.put(*tasks[future], future.result())
        return gathered.outcomes

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
