"""Compare teacher policies as the paper does: a learned (L2T) teacher against plain training,
random filtering and loss ranking at its keep ratio, loss ranking at its best ratio,
self-paced learning and today's data-selection methods, each teaching the same fresh students.
More teachers (--extra NAME=SPEC, each followed by its --teacher-arg KEY=VALUE items): a saved
teacher, an SB3 .zip (unpickled: trusted sources only), a teacher name or package.module:Class.

    python benchmarks/compare_teachers.py --task digits --students 10 --out benchmarks/out/cmp
    python benchmarks/compare_teachers.py --task digits --candidate-cost 0.25   # filtering costs
    python benchmarks/compare_teachers.py --extra mine=mypkg.teachers:Mine --teacher-arg alpha=2

Protocol (every choice is an option; the recipes are in ``l2t_gym.experiment``):

1. The L2T teacher is trained by REINFORCE on the task's *teacher* fold (or loaded, --teacher).
2. The best setting of LossRank and of today's data-selection methods (--baselines: RHO-LOSS,
   InfoBatch, Selective-Backprop; RHO-LOSS only where the env offers its irreducible_loss
   column) is chosen on the teacher fold too (mean reward over --sweep-students students per
   setting of --ratios), never on the students it is then compared on.
3. Every teacher teaches one fresh student per seed on the *student* fold, the same seeds for all
   teachers (paired). The L2T teacher goes first; RandTeach, LossRank, RHO-LOSS and
   Selective-Backprop then run at its mean keep ratio on those students (InfoBatch has no keep
   ratio: it runs at its best setting only), and every baseline at its best setting.
4. Reported: costs to tau (iterations, effective instances, candidate batches, wall-clock) with
   runs that never reach tau counted, final test accuracy, keep ratio; paired t-tests (and Welch's)
   of every teacher against NoTeach and against the cheapest heuristic; a CSV (one row per run
   and checkpoint, with dev and test accuracy), PNGs and a markdown summary.

``--candidate-cost c`` charges c clock units per candidate batch shown, in training and in the
comparison (the reward and T' read that clock), so a teacher pays for the forward passes it
filters away. Wall-clock includes the teacher's own time and excludes test-set evaluations.

``--train-seeds 0 1 2`` replicates all of it once per training seed (each in
``OUT/train_seed_S``, on the same student seeds) and writes ``OUT/protocol.md`` and
``protocol.csv``: the learned teacher against every heuristic in each training seed, the spread,
and the student runs each seed spent (GUIDE §8: a result of one training seed is an anecdote).

    python benchmarks/compare_teachers.py --task digits --students 30 --train-seeds 0 1 2

``--ray-address local|auto|HOST:PORT --workers N [--gpus-per-worker G]`` runs the training's,
the sweeps' and the comparison's episodes on Ray workers (``pip install "l2t-gym[ray]"``; README
"Running on a cluster"); the results are the same as in process, but for the seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from l2t_gym.experiment import (
    ExperimentConfig,
    add_arguments,
    config_from_arguments,
    replicate,
    run_comparison,
    write_protocol,
)


def main(argv: list[str] | None = None) -> dict[int, object]:
    cfg, train_seeds = parse(argv)
    torch.set_num_threads(cfg.threads)  # small students run fastest on one thread
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    if not train_seeds:
        run = run_comparison(cfg)
        print((out / "summary.md").read_text())
        print(f"\nwrote {out}/summary.md, runs.csv, curves.png, to_tau_box.png, "
              "keep_ratio.png")  # fmt: skip
        return {cfg.train_seed: run}
    runs = replicate(cfg, train_seeds)
    costs = ["effective_instances", "seconds"] if cfg.candidate_cost > 0 else None
    print(write_protocol(runs, out, *([costs] if costs else [])))
    print(f"\nwrote {out}/protocol.md, protocol.csv and train_seed_*/")
    return dict(runs)


def parse(argv: list[str] | None = None) -> tuple[ExperimentConfig, list[int]]:
    """The experiment of the command line and the training seeds to replicate it over (none:
    one run at --train-seed); a usage error (exit 2) names a bad option."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(ap, ExperimentConfig())
    ap.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        default=[],
        help="replicate the comparison once per training seed (overrides --train-seed) and "
        "write protocol.md",
    )
    args = ap.parse_args(argv)
    if len(set(args.train_seeds)) != len(args.train_seeds):
        ap.error(f"--train-seeds: repeated seeds in {args.train_seeds}")
    train_seeds = args.train_seeds
    del args.train_seeds
    try:
        return config_from_arguments(args), train_seeds
    except ValueError as err:
        ap.error(str(err))


if __name__ == "__main__":
    main(sys.argv[1:])
