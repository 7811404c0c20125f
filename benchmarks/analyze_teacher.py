"""What the teacher learned: keep probability against instance loss and margin, early, middle and
late in training, and per class. Is it easy-to-hard like self-paced learning, or hard-first?

    python benchmarks/analyze_teacher.py --teacher runs/train/teacher.safetensors --task digits \\
        --out benchmarks/out/analysis
    python benchmarks/analyze_teacher.py --train-episodes 40 --task digits   # train one first

The teacher teaches one fresh student per seed (the student fold by default), sampling its keep
decisions as it was trained to; ``l2t_gym.analysis`` records every candidate row it is shown and
explains the phases (thirds of each run's own iterations) and the verdict.

Outputs in --out: loss_margin.png (keep probability against quantile bins of loss and of margin,
a column per phase, the band the 25-75% range of p in the bin), per_class.png, binned.csv (the
values of both plots), summary.md (Spearman's rho of keep probability with loss and with margin
per phase and a verdict), and teacher.safetensors when the script trained the teacher itself
(``l2t train``'s REINFORCE settings: four students per update, Adam 0.03).

Any object with ``keep_probabilities(obs) -> (M,)`` can be analysed from Python (an SB3 policy
wrapped to that method, say): ``records = l2t_gym.analysis.analyze(teacher, make_env, seeds)``,
then ``l2t_gym.analysis.write_analysis(records, out)``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from l2t_gym import ENV_IDS, TASKS
from l2t_gym.analysis import analyze, write_analysis
from l2t_gym.experiment import ExperimentConfig, env_factory, parse_key_values, train_teacher
from l2t_gym.teachers import BernoulliTeacher


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--teacher", type=Path, help="a saved BernoulliTeacher (.safetensors)")
    source.add_argument(
        "--train-episodes",
        type=int,
        help="train a REINFORCE teacher for N episodes first (0: untrained)",
    )
    ap.add_argument("--task", default="digits", help=f"{sorted(TASKS)} or {sorted(ENV_IDS)}")
    ap.add_argument(
        "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="e.g. max_iters=50"
    )
    ap.add_argument("--fold", default="student", choices=("student", "teacher"))
    ap.add_argument(
        "--offline-mnist", default=None, metavar="DIR", help="MNIST: the offline real subset"
    )
    ap.add_argument(
        "--offline-cifar10", default=None, metavar="DIR", help="CIFAR-10: the JPEG mirror's folder"
    )
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=list(range(10)), help="one student each"
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="seed of the teacher trained by --train-episodes"
    )
    ap.add_argument("--bins", type=int, default=10, help="quantile bins of loss and margin")
    ap.add_argument("--max-rows-per-run", type=int, default=50_000, help="subsample above this")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/analysis"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)  # small students run fastest on one thread
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"analyze_teacher: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    episodes = args.train_episodes or 0
    cfg = ExperimentConfig(
        task=args.task,
        env_args=parse_key_values(args.env_arg),
        device=args.device,
        offline_mnist=args.offline_mnist,
        offline_cifar10=args.offline_cifar10,
        episodes=episodes,
        students_per_update=max(1, min(4, episodes)),
        lr=0.03,
        train_seed=args.seed,
        out=str(args.out),
    )
    make_env = env_factory(cfg, args.fold)
    base = make_env().unwrapped
    if args.teacher is not None:
        teacher = BernoulliTeacher.load(args.teacher, expected_feature_names=base.feature_names)
        source = f"{args.teacher} (trained on {teacher.task or 'an unrecorded task'})"
    else:
        trained = train_teacher(cfg)
        if episodes:
            last = min(len(trained.history), 10)
            reward, keep = trained.tail(last)
            print(
                f"trained {len(trained.history)} episodes on the teacher fold; last {last}: "
                f"mean reward {reward:.3f}, keep ratio {keep:.2f}"
            )
        trained.save(args.out / "teacher.safetensors")
        teacher = trained.teacher
        source = f"REINFORCE, {episodes} episodes, seed {args.seed} (saved as teacher.safetensors)"
    records = analyze(teacher, make_env, args.seeds, args.max_rows_per_run)
    header = [
        f"- teacher: {source}, sampling its decisions",
        f"- env: {cfg.env_id}, {args.fold} fold, tau={base.tau}, T'={base.max_iters}, "
        f"M={base.batch_size}",
    ]
    print(write_analysis(records, args.out, args.bins, header))
    print(f"wrote loss_margin.png, per_class.png, binned.csv and summary.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
