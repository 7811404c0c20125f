"""Does a learned teacher transfer? Train (or load) an L2T teacher with one student or task, then
let it teach fresh students of another task or architecture with the same observation layout,
next to the heuristics and, optionally, a teacher trained on the target itself.

    # Digits: a teacher trained with the MLP-64 student teaches an MLP-256-256 student
    python benchmarks/transfer.py --source digits --target digits \\
        --target-arg student='"mlp-256-256"' --out benchmarks/out/transfer_wide
    # Digits -> real MNIST (both 10 classes: d = 25), MNIST from the offline subset
    python benchmarks/transfer.py --source digits --target mnist \\
        --target-offline-mnist ../shared/data/mnist --out benchmarks/out/transfer_mnist
    # Where data and a GPU are present: ResNet-32 -> ResNet-110, MNIST <-> CIFAR-10
    python benchmarks/transfer.py --source cifar10 --target cifar10 \\
        --target-arg student='"resnet110"' --device cuda

The target comparison is compare_teachers.py's: the same student seeds for every teacher,
heuristics at the transferred teacher's keep ratio, LossRank's best ratio chosen on the target's
teacher fold, paired t-tests, CSV, PNGs and a markdown summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from compare_teachers import (
    Config,
    best_lossrank_ratio,
    compare,
    env_factory,
    key_value,
    load_extra,
    report,
    train_teacher,
)

from l2t_gym.teachers import BernoulliTeacher, Teacher


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)  # small students run fastest on one thread
    training = {
        "episodes": args.episodes,
        "students_per_update": args.students_per_update,
        "lr": args.lr,
        "init_keep": args.init_keep,
        "baseline": args.baseline,
        "repeats": args.repeats,
        "train_seed": args.seed,
        "vector": args.vector,
        "candidate_cost": args.candidate_cost,
        "threads": args.threads,
    }
    source = Config(
        task=args.source,
        env_args={**_pairs(args.source_arg), "device": args.device},
        offline_mnist=args.source_offline_mnist,
        **training,
    )
    target = replace(
        source,
        task=args.target,
        env_args={**_pairs(args.target_arg), "device": args.device},
        offline_mnist=args.target_offline_mnist,
        students=args.students,
        first_seed=args.first_seed,
        ratios=tuple(args.ratios),
        sweep_students=args.sweep_students,
        out=args.out,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target_names = env_factory(target, "teacher")().unwrapped.feature_names
    notes = [f"Source: {_describe(source)}. Target: {_describe(target)}."]
    start = time.perf_counter()
    if args.teacher:
        transferred = BernoulliTeacher.load(args.teacher, expected_feature_names=target_names)
        notes.append(f"Transferred teacher loaded from `{args.teacher}`.")
    else:
        source_names = env_factory(source, "teacher")().unwrapped.feature_names
        if source_names != target_names:
            raise SystemExit(
                f"source and target observations differ: {source_names} vs {target_names}"
            )
        transferred, history = train_teacher(source, env_factory(source, "teacher"))
        transferred.save(out / "source_teacher.safetensors", task=source.task)
        notes.append(_trained_note("transferred teacher, on the source", history, start))
    learned: dict[str, Teacher] = {"transferred": transferred}
    for spec in args.extra:
        name, extra = load_extra(spec, target_names, "PPO")
        learned[name] = extra
    if args.native_episodes:
        start = time.perf_counter()
        native_cfg = replace(target, episodes=args.native_episodes)
        native, history = train_teacher(native_cfg, env_factory(native_cfg, "teacher"))
        native.save(out / "native_teacher.safetensors", task=target.task)
        learned["native"] = native
        notes.append(_trained_note("native teacher, on the target", history, start))
    best_ratio, sweep = best_lossrank_ratio(target, env_factory(target, "teacher"))
    notes.append(
        "LossRank sweep on the target's teacher fold (mean reward): "
        + ", ".join(f"{r:g}: {v:.3f}" for r, v in sweep.items())
        + f" -> best {best_ratio:g}."
    )
    results = compare(
        target, learned, env_factory(target, "student", report_test="eval"), best_ratio
    )
    title = f"transfer {_describe(source)} -> {_describe(target)}"
    summary = report(target, results, list(learned), out, title, notes)
    (out / "config.json").write_text(
        json.dumps({"source": asdict(source), "target": asdict(target), **vars(args)}, indent=1)
    )
    print(summary)
    print(f"\nwrote {out}/summary.md, runs.csv, curves.png, to_tau_box.png, keep_ratio.png")
    return results


def _describe(cfg: Config) -> str:
    student = cfg.env_args.get("student")
    data = " (offline real MNIST)" if cfg.offline_mnist else ""
    return f"{cfg.env_id()}{data}" + (f" with {student}" if student else "")


def _trained_note(what: str, history: list[dict], start: float) -> str:
    last = history[-min(len(history), 40) :]
    reward = sum(r["reward"] for r in last) / len(last)
    keep = sum(r["keep_ratio"] for r in last) / len(last)
    return (
        f"{what}: {len(history)} episodes in {time.perf_counter() - start:.0f} s; last "
        f"{len(last)}: mean reward {reward:.3f}, keep ratio {keep:.2f}."
    )


def _pairs(items: list[str]) -> dict:
    return dict(key_value(item) for item in items)


def _parser() -> argparse.ArgumentParser:
    d = Config()
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", default="digits", help="task the teacher learns on")
    ap.add_argument("--target", default="digits", help="task it then teaches")
    ap.add_argument("--source-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--target-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--source-offline-mnist", default=None, metavar="DIR")
    ap.add_argument("--target-offline-mnist", default=None, metavar="DIR")
    ap.add_argument("--teacher", default=None, help="a saved source teacher (skips training)")
    ap.add_argument("--native-episodes", type=int, default=0, help="0: no native teacher")
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another saved teacher to compare on the target, e.g. one trained there",
    )
    ap.add_argument("--episodes", type=int, default=d.episodes)
    ap.add_argument("--students-per-update", type=int, default=d.students_per_update)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--init-keep", type=float, default=d.init_keep)
    ap.add_argument("--baseline", default=d.baseline, choices=("moving", "seed"))
    ap.add_argument("--repeats", type=int, default=d.repeats)
    ap.add_argument("--vector", action="store_true")
    ap.add_argument("--candidate-cost", type=float, default=d.candidate_cost)
    ap.add_argument("--students", type=int, default=d.students)
    ap.add_argument("--first-seed", type=int, default=d.first_seed)
    ap.add_argument("--seed", type=int, default=0, help="teacher training seed")
    ap.add_argument("--ratios", type=float, nargs="+", default=list(d.ratios))
    ap.add_argument("--sweep-students", type=int, default=d.sweep_students)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/out/transfer")
    return ap


if __name__ == "__main__":
    main(sys.argv[1:])
