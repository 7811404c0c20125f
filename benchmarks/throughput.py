"""Throughput: teacher steps and student iterations per second, memory, and vector-env scaling.

    python benchmarks/throughput.py --tasks digits --threads 1
    python benchmarks/throughput.py --tasks digits mnist cifar10 --device cuda   # on a GPU

For each task: one env driven by a keep-all teacher (teacher steps/s = student iterations/s
then), its overhead against a bare PyTorch loop (``l2t_gym.speed``, interleaved, medians),
and the native vector env at N = 1, 4, 16, 64 students (teacher steps/s summed over students,
and as a multiple of the single env). MNIST and CIFAR-10 use real data if ``--data-root`` holds
it, else random data of the right shape (said in the output): speed does not depend on the
values. Memory: resident host memory added per student, and on a GPU peak device memory per
student. Writes a CSV and a PNG of the scaling.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
import torch

from l2t_gym import TASKS, L2TEnv
from l2t_gym.data import RawData
from l2t_gym.speed import BareLoop, interleaved, steps_per_second, synchronizer
from l2t_gym.vector import L2TVectorEnv


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def task_kwargs(task: str, data_root: str | None) -> tuple[dict, str]:
    if task == "digits":
        return {}, "scikit-learn digits"
    spec = TASKS[task]
    if data_root and task == "mnist" and (Path(data_root) / "MNIST" / "raw").is_dir():
        return {"data_root": data_root, "download": False}, "real"
    if data_root and task == "cifar10" and (Path(data_root) / "cifar-10-batches-py").is_dir():
        return {"data_root": data_root, "download": False}, "real"
    n = 60_000 if task == "mnist" else 50_000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, n)
    data = RawData.from_arrays(x, y, x[:10_000], y[:10_000], spec.num_classes)
    return {"data": data}, f"random data of {task}'s shape"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["digits"], choices=sorted(TASKS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--steps", type=int, default=200, help="timed single-env steps")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved overhead blocks")
    ap.add_argument(
        "--keep",
        type=float,
        default=1.0,
        help="keep probability of the teacher driving the single and vector envs' rates "
        "(default 1: keep-all; below 1 students train only when their pool is full)",
    )
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="benchmarks/out/throughput")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = synchronizer(args.device)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads} torch thread(s)"
    print(f"device: {args.device} ({where}); torch {torch.__version__}")
    rows = []
    for task in args.tasks:
        kwargs, what = task_kwargs(task, args.data_root)
        common = {"device": args.device, "tau": 1.0, "max_iters": 10**9, **kwargs}
        env = L2TEnv(task, **common)
        env.reset(seed=0)
        m = env.batch_size
        single = steps_per_second(env, args.steps, sync, args.keep)
        blocks = max(5, args.steps // 4)
        env_t, bare_t = interleaved(env, BareLoop(env.settings, 0), blocks, args.repeats, sync)
        ratio = statistics.median(env_t) / statistics.median(bare_t)
        print(f"\n{task} ({what}), student {env.student}, M={m}, eval every {env.eval_every}")
        print(
            f"  single env: {single:.1f} teacher steps/s"
            + (" = student iterations/s (keep-all)" if args.keep == 1 else f" (keep {args.keep})")
            + f"; env / bare loop {ratio:.3f}x (keep-all)"
        )
        print(
            f"  {'N':>4} {'teacher steps/s':>16} {'x single':>9} {'host MB/student':>16}"
            + (f" {'GPU MB/student':>15}" if cuda else "")
        )
        for n in args.sizes:
            before = resident_mb()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base_mem = torch.cuda.memory_allocated()
            venv = L2TVectorEnv(n, task, **common)
            venv.reset(seed=0)
            rate = n * steps_per_second(venv, max(5, args.steps // n), sync, args.keep)
            host = (resident_mb() - before) / n
            gpu = (torch.cuda.max_memory_allocated() - base_mem) / 2**20 / n if cuda else None
            rows.append((task, what, n, rate, rate / single, single, ratio, host, gpu))
            print(
                f"  {n:>4} {rate:>16.1f} {rate / single:>9.2f} {host:>16.2f}"
                + (f" {gpu:>15.1f}" if cuda else "")
            )
            venv.close()
            del venv
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "throughput.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "task",
                "data",
                "num_envs",
                "teacher_steps_per_s",
                "x_single",
                "single_env_steps_per_s",
                "env_over_bare",
                "host_mb_per_student",
                "gpu_mb_per_student",
                "device",
                "threads",
                "keep",
            ]
        )
        w.writerows([(*r, args.device, args.threads, args.keep) for r in rows])
    plot(rows, out / "throughput.png", where)
    print(f"\nwrote {out / 'throughput.csv'} and {out / 'throughput.png'}")


def plot(rows, path: Path, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task in dict.fromkeys(r[0] for r in rows):
        pts = [(r[2], r[4]) for r in rows if r[0] == task]
        ax.plot(*zip(*pts, strict=True), marker="o", label=task)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("students in one vector env (N)")
    ax.set_ylabel("teacher steps/s, x one env")
    ax.set_title(f"vector env scaling ({where})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
