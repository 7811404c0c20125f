"""Overhead of the env against a bare PyTorch loop doing the same student work.

Both sides train the same student (same builder, optimiser, data tensors, batch stream and dev
evaluations every ``eval_every`` iterations); the env is driven through ``gym.make`` by a keep-all
teacher, so it adds only what a teacher's view costs: the candidate features, the action check
and the Gymnasium wrappers. Blocks of iterations alternate between the two (interleaved, after a
warm-up) and the ratio of the medians is reported.

    python benchmarks/overhead.py --task digits --threads 1
    python benchmarks/overhead.py --task cifar10 --device cuda   # on a GPU machine
    python benchmarks/overhead.py --task digits --extra-features all   # with every optional column
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
from pathlib import Path

import gymnasium as gym
import torch

import l2t_gym  # noqa: F401  (registers the envs)
from l2t_gym import TASKS
from l2t_gym.features import EXTRA_FEATURES
from l2t_gym.speed import BareLoop, interleaved, synchronizer


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", default="digits", choices=sorted(TASKS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    ap.add_argument("--iters", type=int, default=200, help="student iterations per block")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved blocks per side")
    ap.add_argument("--student", default=None, help="student name (default: the task's)")
    ap.add_argument("--batch-size", type=int, default=None, help="M (default: the task's)")
    ap.add_argument("--eval-every", type=int, default=None, help="default: the task's")
    ap.add_argument("--data-root", default=None)
    ap.add_argument(
        "--extra-features",
        nargs="+",
        default=[],
        choices=[*EXTRA_FEATURES, "all"],
        help="optional observation columns the env computes at every step ('all': every one)",
    )
    ap.add_argument("--out", default="benchmarks/out/overhead.csv")
    args = ap.parse_args()
    extra = tuple(EXTRA_FEATURES) if "all" in args.extra_features else tuple(args.extra_features)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = synchronizer(device)

    # An unreachable tau and a far clock keep one episode going for the whole measurement.
    env = gym.make(
        TASKS[args.task].env_id,
        device=args.device,
        tau=1.0,
        max_iters=10**9,
        data_root=args.data_root,
        download=False,
        student=args.student,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        extra_features=extra,
    )
    env.reset(seed=0)
    bare = BareLoop(env.unwrapped.settings, seed=0)

    env_t, bare_t = interleaved(env, bare, args.iters, args.repeats, sync)
    env_med, bare_med = statistics.median(env_t), statistics.median(bare_t)
    ratio = env_med / bare_med
    paired = statistics.median(te / tb for te, tb in zip(env_t, bare_t, strict=True))
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )

    e = env.unwrapped
    print(
        f"task={args.task} student={e.student} M={e.batch_size} eval_every={e.eval_every} "
        f"device={args.device} ({machine}) torch threads={torch.get_num_threads()} "
        f"extra_features={','.join(extra) or 'none'}"
    )
    print(f"{'':10} {'us/iteration (median)':>22} {'min':>10} {'max':>10}")
    for name, ts in (("env", env_t), ("bare loop", bare_t)):
        med, lo, hi = (1e6 * f(ts) for f in (statistics.median, min, max))
        print(f"{name:10} {med:22.1f} {lo:10.1f} {hi:10.1f}")
    print(f"overhead ratio (median env / median bare): {ratio:.3f}x")
    print(f"median of the paired block ratios:          {paired:.3f}x")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        header = ["task", "student", "M", "device", "threads", "extra_features", "repeat"]
        w.writerow([*header, "env_s", "bare_s"])
        for k, (te, tb) in enumerate(zip(env_t, bare_t, strict=True)):
            w.writerow(
                [
                    args.task,
                    e.student,
                    e.batch_size,
                    args.device,
                    torch.get_num_threads(),
                    " ".join(extra),
                    k,
                    te,
                    tb,
                ]
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
