"""What a candidate batch costs a teacher on this machine, in student iterations: the
``candidate_cost`` under which the env's clock tracks wall-clock (GUIDE section 2, "The clock").

    python benchmarks/candidate_cost.py --task mnist --offline-mnist ../shared/data/mnist \\
        --teacher runs/mnist/teacher.safetensors \\
        --env-arg eval_every=10 --env-arg max_iters=1500 --env-arg dev_fraction=0.2 \\
        --env-arg "extra_features=('loss_rank','loss_vs_mean','loss_change')" \\
        --seeds 20000 20001 20002 20003 20004 20005 20006 20007

The teacher teaches one fresh student per seed (on the teacher fold by default: choosing a
clock is tuning), and NoTeach the same seeds, interleaved seed by seed. Over the teacher's runs,
least squares without an intercept fits

    seconds = a x iterations + b x candidate batches,

so ``a`` is what a student iteration costs beside the candidate batches (its training step and
its share of the dev evaluations) and ``b`` what one candidate batch costs (the student's forward
pass on it, the features, the teacher's decision). ``c = b / a`` is the candidate cost in the
teacher's own iterations: with ``candidate_cost=c`` the clock c = iterations + c x candidate
batches is the teacher's wall-clock in units of ``a``. NoTeach's seconds per iteration are
printed beside it (its candidate's forward pass is reused for training, so it is not a + b).
The fit needs runs whose candidate batches per iteration differ (a learned teacher's do, as its
keep ratio follows the run); it is refused when they spread by less than 2%.

Outputs in --out: runs.csv (a row per run) and summary.md. Time it alone on the machine, with
the thread count it is printed with (GUIDE section 4).
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
from pathlib import Path

import numpy as np
import torch

from l2t_gym import TASKS
from l2t_gym.experiment import ExperimentConfig, make_env, parse_key_values
from l2t_gym.teachers import NoTeach, make_teacher, run_episode

#: The least spread of candidate batches per iteration over the teacher's runs (relative) that
#: lets the fit tell a candidate batch's cost from an iteration's.
MIN_SPREAD = 0.02


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", default="digits", choices=sorted(TASKS))
    ap.add_argument(
        "--teacher",
        required=True,
        help="a saved teacher (.safetensors or SB3 .zip), a teacher name or module:Class",
    )
    ap.add_argument("--teacher-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--fold", default="teacher", choices=("teacher", "student"))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(20000, 20008)))
    ap.add_argument("--offline-mnist", default=None, help="folder of the offline MNIST subset")
    ap.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/out/candidate_cost")
    return ap.parse_args()


def fit(iterations: list[int], candidates: list[int], seconds: list[float]) -> tuple[float, float]:
    """(a, b) of seconds = a x iterations + b x candidates, least squares without intercept.

    :raises SystemExit: when candidates per iteration spread by less than :data:`MIN_SPREAD`.
    """
    ratio = np.asarray(candidates, float) / np.maximum(np.asarray(iterations, float), 1.0)
    if len(ratio) < 2 or np.ptp(ratio) < MIN_SPREAD * ratio.mean():
        raise SystemExit(
            "the teacher's runs show almost the same candidate batches per iteration "
            f"({', '.join(f'{r:.3f}' for r in ratio)}): an iteration's cost and a candidate's "
            "cannot be told apart; use more seeds or a teacher whose keep ratio varies"
        )
    design = np.column_stack([iterations, candidates]).astype(float)
    (a, b), *_ = np.linalg.lstsq(design, np.asarray(seconds, float), rcond=None)
    return float(a), float(b)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(
        task=args.task,
        env_args=parse_key_values(args.env_arg),
        device=args.device,
        offline_mnist=args.offline_mnist,
    )
    env = make_env(cfg, args.fold)
    names = env.unwrapped.feature_names
    options = parse_key_values(args.teacher_arg, flag="--teacher-arg")
    if Path(args.teacher).is_file():
        options.setdefault("expected_feature_names", names)
    teacher = make_teacher(args.teacher, **options)
    run_episode(env, NoTeach(), seed=args.seeds[0])  # warm-up: first kernel calls, data
    rows = []
    for seed in args.seeds:
        for name, who in (("teacher", teacher), ("NoTeach", NoTeach())):
            r = run_episode(env, who, seed=seed)
            rows.append((name, seed, r.iterations, r.teacher_steps, r.seconds, r.reached_tau))
            print(
                f"{name:8s} seed {seed}: {r.iterations} iterations, {r.teacher_steps} "
                f"candidate batches, {r.seconds:.3f} s",
                flush=True,
            )
    taught = [r for r in rows if r[0] == "teacher"]
    a, b = fit([r[2] for r in taught], [r[3] for r in taught], [r[4] for r in taught])
    plain = [r[4] / r[2] for r in rows if r[0] == "NoTeach" and r[2]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["teacher", "seed", "iterations", "candidate_batches", "seconds", "tau"])
        writer.writerows(rows)
    lines = [
        f"# Candidate cost: {args.teacher} on {cfg.env_id}, {args.fold} fold",
        "",
        f"{len(args.seeds)} seeds; {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {args.device}",
        "",
        "| per | milliseconds |",
        "|---|---|",
        f"| teacher's iteration (a) | {a * 1e3:.3f} |",
        f"| candidate batch (b) | {b * 1e3:.3f} |",
        f"| NoTeach iteration (median) | {statistics.median(plain) * 1e3:.3f} |",
        "",
        f"candidate_cost = b / a = **{b / a:.3f}**",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote runs.csv and summary.md to {out}")


if __name__ == "__main__":
    main()
