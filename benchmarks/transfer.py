"""Does a learned teacher transfer? Train (or load) an L2T teacher with one student or task, then
let it teach fresh students of another task or architecture with the same observation layout,
next to the heuristics and, optionally, a teacher trained on the target itself.

    # Digits: a teacher trained with the MLP-64 student teaches an MLP-256-256 student
    python benchmarks/transfer.py --source digits --target digits \\
        --target-arg student='"mlp-256-256"' --out benchmarks/out/transfer_wide
    # Digits -> real MNIST (both 10 classes: d = 25), MNIST from the offline subset
    python benchmarks/transfer.py --source digits --target mnist \\
        --target-offline-mnist ../shared/data/mnist --out benchmarks/out/transfer_mnist

Real CIFAR-10 from the JPEG mirror (``--source-offline-cifar10`` / ``--target-offline-cifar10``,
decoded once and cached under the data root; ``l2t_gym.data.cifar10_jpg``), on a GPU:

    # ResNet-32 (the task's student) -> ResNet-110
    python benchmarks/transfer.py --source cifar10 --target cifar10 \\
        --target-arg student='"resnet110"' --source-offline-cifar10 ../shared/data \\
        --target-offline-cifar10 ../shared/data --device cuda --out benchmarks/out/transfer_r110
    # MNIST (MLP) -> CIFAR-10 (ResNet-32), and back: both d = 25
    python benchmarks/transfer.py --source mnist --source-offline-mnist ../shared/data/mnist \\
        --target cifar10 --target-offline-cifar10 ../shared/data --device cuda \\
        --out benchmarks/out/transfer_mnist_cifar10
    python benchmarks/transfer.py --source cifar10 --source-offline-cifar10 ../shared/data \\
        --target mnist --target-offline-mnist ../shared/data/mnist --device cuda \\
        --out benchmarks/out/transfer_cifar10_mnist

The same route, tiny enough for one CPU thread: tests/test_compare_scripts.py runs this on a
fabricated mirror of 20 training images per class (``write_mirror`` in tests/fabricate.py), about
20 s; it measures nothing. On the real mirror the dev checks (2,500 images a fold) and the test
checks (10,000) dominate; add ``--source-arg dev_fraction=0.01 --target-arg dev_fraction=0.01
--target-arg report_test=False`` there (about 1.5 min on one thread once the mirror is cached).

    python benchmarks/transfer.py --source cifar10 --target cifar10 \\
        --source-offline-cifar10 MIRROR --target-offline-cifar10 MIRROR \\
        --source-arg student='"resnet20"' --target-arg student='"resnet110"' \\
        --source-arg max_iters=3 --target-arg max_iters=3 --source-arg eval_every=1 \\
        --target-arg eval_every=1 --source-arg batch_size=8 --target-arg batch_size=8 \\
        --episodes 2 --students-per-update 2 --students 2 --sweep-students 1 --ratios 0.5 \\
        --device cpu --out benchmarks/out/transfer_tiny

The target comparison is compare_teachers.py's (``l2t_gym.experiment.compare_teachers``): the
same student seeds for every teacher, heuristics at the transferred teacher's keep ratio,
every baseline's best setting chosen on the target's teacher fold, paired t-tests, CSV, PNGs and a
markdown summary. Both experiments share every option but the task, its env arguments and data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from l2t_gym.experiment import (
    OFFLINE_DATA,
    ExperimentConfig,
    TrainedTeacher,
    add_arguments,
    best_settings,
    compare_teachers,
    config_from_arguments,
    env_kwargs,
    feature_names,
    load_extra,
    parse_key_values,
    train_teacher,
    training_printer,
    write_report,
)
from l2t_gym.teachers import BernoulliTeacher, EpisodeResult, Teacher

SHARED = (
    "episodes",
    "students_per_update",
    "lr",
    "init_keep",
    "baseline",
    "repeats",
    "vector",
    "candidate_cost",
    "students",
    "first_seed",
    "train_seed",
    "ratios",
    "sweep_students",
    "baselines",
    "extra",
    "sb3_algo",
    "device",
    "threads",
    "out",
)


def main(argv: list[str] | None = None) -> dict[str, list[EpisodeResult]]:
    ap = _parser()
    args = ap.parse_args(argv)
    try:
        target = config_from_arguments(
            args,
            ExperimentConfig(
                task=args.target,
                env_args=parse_key_values(args.target_arg, "--target-arg"),
                offline_mnist=args.target_offline_mnist,
                offline_cifar10=args.target_offline_cifar10,
            ),
        )
        source = dataclasses.replace(
            target,
            task=args.source,
            env_args=parse_key_values(args.source_arg, "--source-arg"),
            offline_mnist=args.source_offline_mnist,
            offline_cifar10=args.source_offline_cifar10,
        )
        for side, cfg in (("source", source), ("target", target)):
            try:  # offline data read now, so a wrong folder stops the script before any work
                env_kwargs(cfg, "teacher")
            except FileNotFoundError as err:
                data = "cifar10" if cfg.offline_cifar10 else "mnist"
                ap.error(f"--{side}-offline-{data}: {err}")
    except ValueError as err:
        ap.error(str(err))
    torch.set_num_threads(target.threads)  # small students run fastest on one thread
    out = Path(target.out)
    out.mkdir(parents=True, exist_ok=True)
    target_names = feature_names(target)
    notes = [f"Source: {_describe(source)}. Target: {_describe(target)}."]
    if args.teacher:
        transferred = BernoulliTeacher.load(args.teacher, expected_feature_names=target_names)
        notes.append(f"Transferred teacher loaded from `{args.teacher}`.")
    else:
        source_names = feature_names(source)
        if source_names != target_names:
            raise SystemExit(
                f"source and target observations differ: {source_names} vs {target_names}"
            )
        trained = train_teacher(source, training_printer(source))
        trained.save(out / "source_teacher.safetensors")
        transferred = trained.teacher
        notes.append(_trained_note("transferred teacher, on the source", trained))
    learned: dict[str, Teacher] = {"transferred": transferred}
    learned.update(load_extra(spec, target_names, target.sb3_algo) for spec in target.extra)
    if args.native_episodes:
        native_cfg = dataclasses.replace(target, episodes=args.native_episodes)
        native = train_teacher(native_cfg, training_printer(native_cfg))
        native.save(out / "native_teacher.safetensors")
        learned["native"] = native.teacher
        notes.append(_trained_note("native teacher, on the target", native))
    best, sweep_notes = best_settings(target)  # LossRank and today's methods, target fold
    notes += [n.replace("teacher fold", "target's teacher fold") for n in sweep_notes]
    results = compare_teachers(target, learned, best=best)
    title = f"transfer {_describe(source)} -> {_describe(target)}"
    summary = write_report(target, results, list(learned), title, notes)
    configs = {"source": dataclasses.asdict(source), "target": dataclasses.asdict(target)}
    # The configs last: the --source/--target task names would otherwise replace them.
    (out / "config.json").write_text(json.dumps({**vars(args), **configs}, indent=1))
    print(summary)
    print(f"\nwrote {out}/summary.md, runs.csv, curves.png, to_tau_box.png, keep_ratio.png")
    return results


def _describe(cfg: ExperimentConfig) -> str:
    student = cfg.env_args.get("student")
    offline = [name for field, (_, name) in OFFLINE_DATA.items() if getattr(cfg, field)]
    data = "".join(f" (offline real {name})" for name in offline)
    return f"{cfg.env_id}{data}" + (f" with {student}" if student else "")


def _trained_note(what: str, trained: TrainedTeacher) -> str:
    last = min(len(trained.history), 40)
    reward, keep = trained.tail(last)
    return (
        f"{what}: {len(trained.history)} episodes in {trained.seconds:.0f} s; last "
        f"{last}: mean reward {reward:.3f}, keep ratio {keep:.2f}."
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--source", default="digits", help="task the teacher learns on")
    ap.add_argument("--target", default="digits", help="task it then teaches")
    ap.add_argument("--source-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--target-arg", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--source-offline-mnist", default=None, metavar="DIR")
    ap.add_argument("--target-offline-mnist", default=None, metavar="DIR")
    ap.add_argument("--source-offline-cifar10", default=None, metavar="DIR")
    ap.add_argument("--target-offline-cifar10", default=None, metavar="DIR")
    ap.add_argument("--teacher", default=None, help="a saved source teacher (skips training)")
    ap.add_argument("--native-episodes", type=int, default=0, help="0: no native teacher")
    defaults = ExperimentConfig(out="benchmarks/out/transfer")
    add_arguments(ap, defaults, SHARED, flags={"train_seed": "--seed"})
    return ap


if __name__ == "__main__":
    main(sys.argv[1:])
