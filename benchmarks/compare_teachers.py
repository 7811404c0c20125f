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
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from l2t_gym.experiment import (
    ExperimentConfig,
    add_arguments,
    available_baselines,
    best_setting,
    compare_teachers,
    config_from_arguments,
    feature_names,
    load_extra,
    make_env,
    train_teacher,
    training_printer,
    write_report,
)
from l2t_gym.teachers import TEACHER_LABELS, BernoulliTeacher, EpisodeResult, Teacher


def main(argv: list[str] | None = None) -> dict[str, list[EpisodeResult]]:
    cfg = parse(argv)
    torch.set_num_threads(cfg.threads)  # small students run fastest on one thread
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    names = feature_names(cfg)
    notes = []
    start = time.perf_counter()
    if cfg.teacher:
        teacher = BernoulliTeacher.load(cfg.teacher, expected_feature_names=names)
        notes.append(f"L2T teacher loaded from `{cfg.teacher}`.")
    else:
        trained = train_teacher(cfg, training_printer(cfg))
        trained.save(out / "teacher.safetensors", out / "training.json")
        teacher = trained.teacher
        last = min(len(trained.history), 5 * cfg.students_per_update)
        reward, keep = trained.tail(last)
        notes.append(
            f"L2T teacher trained here: {len(trained.history)} episodes in "
            f"{time.perf_counter() - start:.0f} s; last {last}: mean reward {reward:.3f}, "
            f"keep ratio {keep:.2f}."
        )
    baselines = available_baselines(cfg)
    best = {}
    for name in ["lossrank", *baselines]:
        best[name], sweep = best_setting(cfg, name)
        notes.append(
            f"{TEACHER_LABELS[name]} sweep on the teacher fold (keep setting: mean reward): "
            + ", ".join(f"{r:g}: {v:.3f}" for r, v in sweep.items())
            + f" -> best {best[name]:g}."
        )
    learned: dict[str, Teacher] = {TEACHER_LABELS["l2t"]: teacher}
    for spec, kwargs in zip(cfg.extra, cfg.extra_args, strict=True):
        name, extra = load_extra(spec, names, cfg.sb3_algo, kwargs)
        learned[name] = extra
    results = compare_teachers(cfg, learned, best=best, baselines=baselines)
    env = make_env(cfg, "student").unwrapped
    seeds = cfg.student_seeds
    notes.append(
        f"{cfg.env_id}, student fold: tau={env.tau}, T'={env.max_iters}, M={env.batch_size}, "
        f"eval_every={env.eval_every}, candidate_cost={env.candidate_cost}; {cfg.students} "
        f"students, seeds {seeds[0]}-{seeds[-1]} for every teacher; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {env.device}; "
        f"{time.perf_counter() - start:.0f} s in all."
    )
    title = f"{cfg.env_id} (candidate_cost={env.candidate_cost:g})"
    summary = write_report(cfg, results, list(learned), title, notes)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    print(summary)
    print(f"\nwrote {out}/summary.md, runs.csv, curves.png, to_tau_box.png, keep_ratio.png")
    return results


def parse(argv: list[str] | None = None) -> ExperimentConfig:
    """The experiment of the command line; a usage error (exit 2) names a bad option."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(ap, ExperimentConfig())
    args = ap.parse_args(argv)
    try:
        return config_from_arguments(args)
    except ValueError as err:
        ap.error(str(err))


if __name__ == "__main__":
    main(sys.argv[1:])
