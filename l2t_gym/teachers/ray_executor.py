"""Episodes on Ray actors: the same algorithms on a laptop or a cluster (``pip install
"l2t-gym[ray]"``; Ray is imported only when a :class:`RayExecutor` is built).

Each worker is a Ray actor that builds its own envs from picklable env specs (see
:class:`l2t_gym.experiment.EnvSpec`: the experiment's settings, a fold, overrides, how many
students side by side), so it loads its data once, from its own disk (stage the data on every
node, or share ``$L2T_DATA``), and on its own GPU when it has one. A call runs whole episodes:

* the teachers of a :meth:`RayExecutor.run` call are put into Ray's object store once each (a
  teacher's weights: a few KB) and the env specs once, and every task refers to them;
* a job is cut into tasks of as many episodes as the worker's env trains side by side (one for a
  single env), and tasks go to whichever worker is free (Ray's ``ActorPool``; two at a time by
  default, see ``tasks_per_worker``), so students that reach tau early free their worker early;
* a task returns its :class:`~l2t_gym.teachers.executors.EpisodeOutcome` s (results, and the
  log-probability gradients REINFORCE asks for), never observations, and the outcomes are put
  back in the jobs' order.

An episode's outcome depends only on the teacher's parameters and its two seeds, so on CPU a
run gives the same teacher with any number of workers as in process.

Failures. Workers are started with ``max_restarts`` and ``max_task_retries``: a worker that dies
(killed, out of memory, its node lost) is restarted by Ray and its unfinished task runs again,
from the same seeds, so the update completes with the same outcome. Tasks carry everything they
need (teacher, env specs), so a restarted worker needs nothing from before. If restarts run out,
:meth:`RayExecutor.run` raises Ray's error, and the run resumes from its last checkpoint (which
stays on the driver) with nothing lost.

Networking. ``address="local"`` starts a new single-machine Ray (never joining one that
``RAY_ADDRESS`` or an earlier ``ray start`` names) bound to the loopback address (127.0.0.1) with
the dashboard off: its servers listen on 127.0.0.1 only (checked with ``ss``
on Ray 2.60; without this Ray binds every interface and announces the machine's network
address), and Ray's token authentication stays on as Ray sets it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from l2t_gym.teachers.executors import (
    EpisodeJob,
    EpisodeOutcome,
    Executor,
    Gathered,
    InProcessExecutor,
    run_job,
    split_jobs,
)

__all__ = ["RayExecutor", "connect"]

_INSTALL_HINT = 'Ray executors need Ray: pip install "l2t-gym[ray]" (or pip install ray)'
LOOPBACK = "127.0.0.1"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return ray


def connect(address: str = "local", *, reach_timeout: float = 10.0, **init_kwargs: Any) -> Any:
    """Start or join Ray once per process (a second call does nothing).

    :param address: "local" starts a new single-machine Ray on the loopback address with the
        dashboard off (never joining a cluster that ``RAY_ADDRESS`` or an earlier ``ray start``
        names); "auto" joins the cluster this machine belongs to (``ray start`` was run);
        HOST:PORT joins that cluster's head (or "ray://HOST:PORT", Ray Client).
    :param reach_timeout: seconds to wait for HOST:PORT to accept a connection before Ray is
        asked to join it (Ray itself retries an unreachable address for minutes).
    :param init_kwargs: more keyword arguments of ``ray.init`` (e.g. ``num_cpus`` for "local").
    :return: the ``ray`` module.
    :raises ImportError: saying how to install Ray.
    :raises ValueError: for an empty address or a HOST:PORT without a port number.
    :raises ConnectionError: naming the address, when there is no cluster to join there.
    """
    ray = _import_ray()
    if not address or not isinstance(address, str):
        raise ValueError(f"ray_address must be 'local', 'auto' or HOST:PORT, got {address!r}")
    if ray.is_initialized():
        return ray
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address == "local":
        _stay_on_loopback(ray)
        ray.init(
            address="local",
            _node_ip_address=LOOPBACK,
            include_dashboard=False,
            **quiet,
            **init_kwargs,
        )
        return ray
    if address != "auto":
        _check_reachable(address, reach_timeout)
    try:
        ray.init(address=address, **quiet, **init_kwargs)
    except ConnectionError as err:
        raise ConnectionError(
            f"ray_address={address!r}: no Ray cluster to join there ({err}); start one with "
            "`ray start --head` (README 'Running on a cluster'), or use --ray-address local"
        ) from err
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not (host and port.isdigit()):
        raise ValueError(f"ray_address must be 'local', 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(
            f"ray_address={address!r}: cannot reach {host}:{port} within {timeout:g} s ({err}); "
            "is the head node up (ray start --head --port PORT) and the port open?"
        ) from err


def _stay_on_loopback(ray: Any) -> None:
    # Ray resolves a node IP of 127.0.0.1 to the machine's network address (so that other
    # nodes could reach it) unless it runs "without clusters", its mode for Windows and macOS;
    # then every server binds to, and every process contacts, the loopback address only.
    # The switch is read from the environment at Ray's import (the raylet's and workers' too).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False


@dataclasses.dataclass(frozen=True, eq=False)
class _Versioned:
    """An env source as a worker receives it: equal to another when the driver gave both the
    same version, so a worker rebuilds an env only when the driver's source for that name
    changed (a spec unpickled afresh for every task never *is* the last one)."""

    version: int
    source: Any

    def __call__(self) -> Any:
        return self.source()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Versioned) and other.version == self.version

    __hash__ = object.__hash__


class _Worker:
    """A Ray actor's state: its envs, built from the specs the tasks bring, at first use."""

    def __init__(self, threads: int, warm_up: bool) -> None:
        torch.set_num_threads(threads)
        self.executor = InProcessExecutor({}, warm_up=warm_up)

    def run(
        self, task: int, specs: Mapping[str, Any], teacher: Any, job: EpisodeJob
    ) -> tuple[int, list[EpisodeOutcome]]:
        # Ray resolves object references at the top level of a task's arguments only, so the
        # teacher comes apart from its job.
        self.executor.envs.update(specs)
        job = dataclasses.replace(job, teacher=teacher)
        return task, run_job(self.executor.env(job.env), job)

    def pid(self) -> int:
        return os.getpid()


def _check_resources(
    ray: Any, cpus: int, gpus: float, workers: int, threads: int, gpus_per_worker: float
) -> None:
    # A local Ray gets no more CPUs or GPUs: fail now rather than wait for them.
    total = ray.cluster_resources()
    if gpus > total.get("GPU", 0):
        raise ValueError(
            f"gpus_per_worker={gpus_per_worker}: {workers} workers need {gpus:g} GPUs, and the "
            f"local Ray sees {total.get('GPU', 0):g}"
        )
    if cpus > total.get("CPU", 0):
        raise ValueError(
            f"workers={workers} with threads={threads} need {cpus} CPUs, and the local Ray was "
            f"started in this process with {total.get('CPU', 0):g}"
        )


class RayExecutor(Executor):
    """Runs jobs on ``workers`` Ray actors (see the module docstring).

    :param envs: name -> a picklable function that builds the env or vector env (an
        :class:`l2t_gym.experiment.EnvSpec`); names may be added between runs. A spec with a
        ``num_envs`` attribute says how many students its env trains side by side.
    :param workers: Ray actors (>= 1).
    :param gpus_per_worker: GPUs Ray reserves for each worker (0: CPU; fractions share a GPU).
    :param address: where Ray runs (see :func:`connect`); joined once per process.
    :param threads: torch threads per worker.
    :param warm_up: warm each env up when a worker first builds it (wall-clock comparisons).
    :param max_restarts: how often Ray restarts a worker that died (its task is rerun).
    :param start_timeout: seconds to wait for every worker to start.
    :param tasks_per_worker: tasks handed to a worker at once: with 2 (the default) the next
        one waits on the worker while the last one's results travel back, which hides the
        round trip (on Digits, 8 episodes per update on one worker: 20 ms of Ray overhead per
        update instead of 30 ms); 1 keeps every task unassigned until a worker is free, which
        balances the last tasks of an update best when episodes are long.
    :raises ImportError: when Ray is not installed, saying how to install it.
    :raises ValueError: naming the argument, for workers < 1, gpus_per_worker < 0,
        threads < 1, max_restarts < 0, start_timeout <= 0 or tasks_per_worker outside 1..64.
    :raises ValueError: on a local Ray without the GPUs asked for, or started earlier in this
        process with fewer CPUs than ``workers * threads``.
    :raises TimeoutError: when the workers have not started within ``start_timeout`` (Ray
        waits for free CPUs and GPUs, which a cluster may add: the message says what it has).
    """

    def __init__(
        self,
        envs: Mapping[str, Callable[[], Any]] | None = None,
        workers: int = 1,
        gpus_per_worker: float = 0.0,
        address: str = "local",
        threads: int = 1,
        warm_up: bool = False,
        max_restarts: int = 3,
        start_timeout: float = 120.0,
        tasks_per_worker: int = 2,
    ) -> None:
        if isinstance(workers, bool) or int(workers) != workers or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if not (math.isfinite(gpus_per_worker) and gpus_per_worker >= 0):
            raise ValueError(f"gpus_per_worker must be >= 0, got {gpus_per_worker!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        if not start_timeout > 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout!r}")
        if isinstance(tasks_per_worker, bool) or tasks_per_worker not in range(1, 65):
            raise ValueError(
                f"tasks_per_worker must be an integer in 1..64, got {tasks_per_worker!r}"
            )
        need_cpus, need_gpus = int(workers) * int(threads), int(workers) * gpus_per_worker
        # A local Ray is told of at least the CPUs its workers need (workers share the cores).
        cpus = {"num_cpus": max(os.cpu_count() or 1, need_cpus)} if address == "local" else {}
        ray = connect(address, **cpus)
        if address == "local":
            _check_resources(ray, need_cpus, need_gpus, workers, threads, gpus_per_worker)
        from ray.util import ActorPool

        self._ray = ray
        self.envs: dict[str, Any] = dict(envs or {})
        self._sources: dict[str, _Versioned] = {}  # name -> the source last sent, versioned
        self._versions = itertools.count()
        remote = ray.remote(
            num_cpus=threads,
            num_gpus=gpus_per_worker,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
        )(_Worker)
        self.actors = [remote.remote(int(threads), warm_up) for _ in range(int(workers))]
        try:
            ray.get([a.pid.remote() for a in self.actors], timeout=start_timeout)
        except ray.exceptions.GetTimeoutError:
            available = ray.available_resources()
            self.close()
            raise TimeoutError(
                f"{workers} Ray worker(s) of {threads} CPU(s) and {gpus_per_worker} GPU(s) each "
                f"did not start within {start_timeout:g} s; the cluster has free {available} "
                "(fewer workers, or a bigger cluster)"
            ) from None
        # A handle listed k times keeps k tasks in flight on its worker (they run one by one).
        self._pool = ActorPool(self.actors * tasks_per_worker)

    @property
    def workers(self) -> int:
        """How many actors run episodes."""
        return len(self.actors)

    def num_envs(self, name: str = "main") -> int:
        """Students side by side in a worker's env ``name``: its spec's ``num_envs``, else 1.

        :raises KeyError: naming the known envs, for an unknown name.
        """
        if name not in self.envs:
            raise KeyError(f"no env named {name!r} in this executor; it has {sorted(self.envs)}")
        return int(getattr(self.envs[name], "num_envs", None) or 1)

    def _versioned(self) -> dict[str, _Versioned]:
        for name, source in self.envs.items():
            sent = self._sources.get(name)
            if sent is None or (sent.source is not source and sent.source != source):
                self._sources[name] = _Versioned(next(self._versions), source)
        return {name: self._sources[name] for name in self.envs}

    def run(
        self,
        jobs: Sequence[EpisodeJob],
        on_done: Callable[[int, list[EpisodeOutcome]], None] | None = None,
    ) -> list[list[EpisodeOutcome]]:
        ray = self._ray
        if not self.actors:
            raise RuntimeError("this RayExecutor is closed; build another")
        tasks = split_jobs(jobs, self.num_envs)  # a KeyError naming the envs, before any work
        specs = ray.put(self._versioned())
        # One object per teacher: its weights travel once per run, however many tasks use it.
        teachers: dict[int, Any] = {}
        for job in jobs:
            if id(job.teacher) not in teachers:
                teachers[id(job.teacher)] = ray.put(job.teacher)

        def submit(actor: Any, k: int) -> Any:
            i, _, part = tasks[k]
            teacher = teachers[id(jobs[i].teacher)]
            return actor.run.remote(k, specs, teacher, dataclasses.replace(part, teacher=None))

        gathered = Gathered(jobs, on_done)
        for k, done in self._pool.map_unordered(submit, range(len(tasks))):
            gathered.put(*tasks[k][:2], done)
        return gathered.outcomes

    def close(self) -> None:
        """Stop the workers (Ray itself keeps running for the rest of the process)."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
