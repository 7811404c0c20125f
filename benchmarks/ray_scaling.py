"""Ray scaling: REINFORCE updates per second in process and on 1, 2, ... Ray workers.

    python benchmarks/ray_scaling.py --task digits
    python benchmarks/ray_scaling.py --task mnist --offline-mnist ../shared/data/mnist

What is timed is one REINFORCE update's episodes, as :class:`l2t_gym.teachers.reinforce.
ReinforceTrainer` hands them out: one job of ``--students`` episodes of a Bernoulli teacher
(keeping about ``--init-keep``) on the teacher fold, each episode returning its reward and
gradient piece. Executors: in process (the default), and a :class:`~l2t_gym.teachers.
ray_executor.RayExecutor` per ``--workers`` entry on a local Ray (loopback, one torch thread per
worker). Every update teaches the same seeds, executors interleaved update by update, medians
over ``--repeats``; the first update of each executor (building its envs, loading the data) is
untimed. Also: ``ray.init`` and worker start-up, what an episode sends back against the size of
its observations, and the per-update overhead of Ray, measured as
the same update with episodes of zero student iterations (``max_iters=1``; each still resets its
student) on Ray and in process.

On a machine with fewer cores than workers plus the driver, the workers share cores: 2 cores
cannot show real scaling. Writes a CSV and a PNG.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import statistics
import time
from pathlib import Path

import torch

from l2t_gym.experiment import EnvSpec, ExperimentConfig, feature_names, parse_key_values
from l2t_gym.teachers import BernoulliTeacher, run_episodes
from l2t_gym.teachers.executors import EpisodeJob, Executor, InProcessExecutor
from l2t_gym.teachers.ray_executor import RayExecutor, connect


def update(teacher: BernoulliTeacher, students: int, env: str) -> EpisodeJob:
    seeds = list(range(100, 100 + students))
    return EpisodeJob(teacher, seeds, seeds, env=env, log_prob_grad=True)


def timed(executor: Executor, job: EpisodeJob) -> float:
    start = time.perf_counter()
    executor.run([job])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--task", default="digits", choices=["digits", "mnist"])
    ap.add_argument("--offline-mnist", default=None, help="folder of the offline MNIST subset")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--students", type=int, default=8, help="episodes per update")
    ap.add_argument("--repeats", type=int, default=5, help="timed updates per executor")
    ap.add_argument("--init-keep", type=float, default=0.5)
    ap.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="benchmarks/out/ray_scaling")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = ExperimentConfig(
        task=args.task,
        device="cpu",
        offline_mnist=args.offline_mnist,
        env_args=parse_key_values(args.env_arg),
    )
    envs = {
        "update": EnvSpec(cfg, "teacher"),
        "empty": EnvSpec(cfg, "teacher", (("max_iters", 1),)),
    }
    teacher = BernoulliTeacher(feature_names(cfg), init_keep=args.init_keep, seed=0)
    jobs = {name: update(teacher, args.students, name) for name in envs}

    start = time.perf_counter()
    connect("local", num_cpus=sum(args.workers))  # logical: every executor's workers held at once
    init_seconds = time.perf_counter() - start
    executors: dict[str, Executor] = {"in process": InProcessExecutor(dict(envs))}
    startup = {}
    for n in args.workers:
        start = time.perf_counter()
        executors[f"ray, {n} worker{'s' * (n > 1)}"] = RayExecutor(envs, workers=n)
        startup[n] = time.perf_counter() - start
    # Every worker builds its envs (and loads the data) before the clock starts.
    for executor in executors.values():
        for job in jobs.values():
            for _ in range(executor.workers):
                executor.run([job])
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for name, executor in executors.items():
            for kind, job in jobs.items():
                times.setdefault((name, kind), []).append(timed(executor, job))
    # What an episode sends back, against what shipping its observations would cost.
    local = executors["in process"]
    sent = statistics.median(len(pickle.dumps(o)) for o in local.run([jobs["update"]])[0])
    recorded = run_episodes(
        local.env("update"), teacher, jobs["update"].env_seeds, record=True, curves=False
    )
    shown = statistics.median(
        r.trajectory.observations.nbytes + r.trajectory.actions.nbytes for r in recorded
    )
    # One Ray call's round trip, on an idle worker.
    worker = next(e for e in executors.values() if isinstance(e, RayExecutor)).actors[0]
    ray = connect()
    calls = []
    for _ in range(200):
        start = time.perf_counter()
        ray.get(worker.pid.remote())
        calls.append(time.perf_counter() - start)
    call_ms = 1000 * statistics.median(calls)
    for executor in executors.values():
        executor.close()

    base = statistics.median(times[("in process", "update")])
    base_empty = statistics.median(times[("in process", "empty")])
    rows = []
    for name in executors:
        seconds = statistics.median(times[(name, "update")])
        empty = statistics.median(times[(name, "empty")])
        rows.append(
            {
                "executor": name,
                "update_s": seconds,
                "episodes_per_s": args.students / seconds,
                "speedup": base / seconds,
                "overhead_per_update_ms": 1000 * (empty - base_empty),
            }
        )
    print(
        f"{cfg.env_id}, {args.students} episodes per update, {args.repeats} interleaved updates "
        f"per executor (medians), torch threads 1 per process; ray.init {init_seconds:.1f} s, "
        + ", ".join(f"{n} worker(s) started in {s:.1f} s" for n, s in startup.items())
        + f"; one Ray call's round trip {call_ms:.2f} ms; per episode a worker sends back "
        f"{sent / 1024:.1f} KB (result and gradient), its observations and actions would be "
        f"{shown / 1024:.0f} KB (medians)"
    )
    header = ("update s", "episodes/s", "vs in process", "overhead ms")
    print(f"{'executor':<16}{header[0]:>10}{header[1]:>12}{header[2]:>15}{header[3]:>13}")
    for r in rows:
        print(
            f"{r['executor']:<16}{r['update_s']:>10.3f}{r['episodes_per_s']:>12.1f}"
            f"{r['speedup']:>14.2f}x{r['overhead_per_update_ms']:>13.1f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"ray_scaling_{args.task}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([r["executor"] for r in rows], [r["episodes_per_s"] for r in rows])
    ax.set_ylabel("episodes / s")
    ax.set_title(f"{cfg.env_id}: one REINFORCE update of {args.students} episodes")
    fig.tight_layout()
    fig.savefig(out / f"ray_scaling_{args.task}.png", dpi=120)
    print(f"wrote {out / f'ray_scaling_{args.task}.csv'} and .png")


if __name__ == "__main__":
    main()
