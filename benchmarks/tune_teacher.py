"""Tune REINFORCE for the L2T teacher without looking at the students it is compared on.

Every setting trains a teacher on the teacher fold, then teaches held-out students *of the
teacher fold* (seeds no training episode used), next to NoTeach and LossRank at the teacher's own
keep ratio. The student fold stays untouched until compare_teachers.py runs the chosen setting.

    python benchmarks/tune_teacher.py --task digits --grid lr=0.01,0.03 init_keep=0.5,0.9 \\
        --base episodes=1600 vector=True students_per_update=16 --out benchmarks/out/tune

``--grid`` names ExperimentConfig fields (``l2t_gym.experiment``) with comma-separated values
(every combination is run); ``--base`` sets the others. Prints a table and writes tune.csv.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from l2t_gym.evaluation import budgets, censored_costs, evaluate, keep_ratio
from l2t_gym.experiment import (
    ExperimentConfig,
    env_factory,
    heuristics_at,
    parse_key_value,
    parse_key_values,
    train_teacher,
    training_printer,
)
from l2t_gym.stats import paired_ttest

# Far above any training episode's seed (episode_seed(s, e) = s * 1_000_003 + e, mod 2**31).
HELD_OUT = 2_000_000_000


def run(cfg: ExperimentConfig, students: int) -> dict[str, Any]:
    """Train with ``cfg``, then compare on ``students`` held-out teacher-fold students."""
    trained = train_teacher(cfg, training_printer(cfg))
    seeds = list(range(HELD_OUT, HELD_OUT + students))
    make_env = env_factory(cfg, "teacher")
    learned = evaluate(make_env, {"l2t": trained.teacher}, seeds)["l2t"]
    ratio = keep_ratio(learned)
    heuristics = heuristics_at(ratio)
    lossrank = next(name for name in heuristics if name.startswith("LossRank"))
    others = evaluate(make_env, {n: heuristics[n] for n in ("NoTeach", lossrank)}, seeds)
    env = make_env().unwrapped
    budget = budgets(env.max_iters, env.batch_size)["effective_instances"]
    runs = {"noteach": others["NoTeach"], "lossrank": others[lossrank], "l2t": learned}
    eff = {k: censored_costs(v, "effective_instances", budget) for k, v in runs.items()}
    reward, _ = trained.tail(5 * cfg.students_per_update)
    return {
        "train_seconds": round(trained.seconds),
        "train_reward_last": round(reward, 3),
        "keep": round(ratio, 3),
        "reached": sum(r.reached_tau for r in learned),
        "l2t": statistics.fmean(eff["l2t"]),
        "noteach": statistics.fmean(eff["noteach"]),
        "lossrank_same_ratio": statistics.fmean(eff["lossrank"]),
        "vs_noteach_p": paired_ttest(eff["l2t"], eff["noteach"]).p,
        "vs_lossrank_p": paired_ttest(eff["l2t"], eff["lossrank"]).p,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", default="digits")
    ap.add_argument("--grid", nargs="+", default=[], metavar="FIELD=V1,V2")
    ap.add_argument("--base", nargs="*", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--students", type=int, default=20, help="held-out teacher-fold students")
    ap.add_argument("--out", default="benchmarks/out/tune")
    args = ap.parse_args(argv)
    names = {f.name for f in dataclasses.fields(ExperimentConfig)}
    try:
        base = parse_key_values(args.base, "--base")
        grid = {}
        for item in args.grid:
            key, _, values = item.partition("=")
            grid[key] = [parse_key_value(f"{key}={v}", "--grid")[1] for v in values.split(",")]
        for key in [*base, *grid]:
            if key not in names:
                raise ValueError(
                    f"{key!r} is not an ExperimentConfig field; expected one of {sorted(names)}"
                )
        cfg0 = ExperimentConfig(task=args.task, **base)
        configs = [
            dataclasses.replace(cfg0, **dict(zip(grid, combo, strict=True)))
            for combo in itertools.product(*grid.values())
        ]
    except ValueError as err:
        ap.error(str(err))
    torch.set_num_threads(cfg0.threads)
    rows = []
    for cfg, combo in zip(configs, itertools.product(*grid.values()), strict=True):
        row = {**dict(zip(grid, combo, strict=True)), **run(cfg, args.students)}
        rows.append(row)
        print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tune.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "base_config.txt").write_text(repr(dataclasses.asdict(cfg0)) + "\n")
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main(sys.argv[1:])
