"""The teacher-comparison benchmarks, smoke-run in subprocesses with tiny budgets: they must run,
write their files and refuse bad arguments (the recipes themselves are tests/test_experiment.py's).
"""

from __future__ import annotations

import csv
import json

from fabricate import write_mirror
from script_runner import run

TINY = ["--students", "2", "--episodes", "2", "--students-per-update", "2"]
TINY += ["--sweep-students", "2", "--ratios", "0.3", "0.6", "--env-arg", "max_iters=15"]


def rows(path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_compare_teachers_smoke(tmp_path):
    proc = run("benchmarks/compare_teachers.py", *TINY, "--out", str(tmp_path / "a"))
    out = proc.stdout
    assert "| L2T |" in out and "| NoTeach |" in out
    for name in ("summary.md", "runs.csv", "curves.png", "to_tau_box.png", "keep_ratio.png"):
        assert (tmp_path / "a" / name).exists()
    assert (tmp_path / "a" / "teacher.safetensors").exists()
    table = rows(tmp_path / "a" / "runs.csv")
    teachers = {r["teacher"] for r in table}
    assert {"L2T", "NoTeach", "SPL"} <= teachers and any(t.endswith("(best)") for t in teachers)
    # Today's methods beside the paper's: at L2T's ratio and at their best (RHO-LOSS in an env
    # built with the irreducible_loss column it needs, on the same students).
    assert {"RHO-LOSS", "InfoBatch", "Selective-Backprop"} <= {t.split()[0] for t in teachers}
    assert "left out of the comparison" not in proc.stderr
    assert {r["seed"] for r in table} == {"1000", "1001"}
    assert all(r["checkpoint_test_accuracy"] for r in table)  # report_test="eval"
    # The saved teacher comes back as the loaded L2T teacher and as an extra one, under a
    # compute-aware clock.
    saved = tmp_path / "a" / "teacher.safetensors"
    args = ["--teacher", str(saved), "--extra", f"again={saved}", "--candidate-cost", "0.25"]
    args += ["--extra", "mine=l2t_gym.teachers:LossRank", "--teacher-arg", "keep_ratio=0.3"]
    args += ["--baselines"]  # none of today's methods this time
    out = run("benchmarks/compare_teachers.py", *TINY, *args, "--out", str(tmp_path / "b")).stdout
    assert "| again |" in out and "| mine |" in out and "candidate_cost=0.25" in out
    assert "InfoBatch" not in out
    # The same teacher twice: the learned-against-learned table shows a zero difference.
    assert "Learned teachers against each other" in out
    assert "| L2T | again | effective instances |" in out and "+0 (+0, +0)" in out


def test_compare_teachers_refuses_bad_arguments_with_a_usage_error(tmp_path):
    err = run("benchmarks/compare_teachers.py", "--students", "1", expect=2).stderr
    assert "usage: compare_teachers.py" in err and "students must be >= 2" in err


def test_transfer_smoke(tmp_path):
    args = [*TINY[:8], "--ratios", "0.5", "--source-arg", "max_iters=15"]
    args += ["--target-arg", "max_iters=15", "--target-arg", 'student="mlp-128"']
    out = run("benchmarks/transfer.py", *args, "--native-episodes", "2", "--out", str(tmp_path))
    assert "| transferred |" in out.stdout and "| native |" in out.stdout
    assert "with mlp-128" in out.stdout
    assert (tmp_path / "source_teacher.safetensors").exists()
    assert (tmp_path / "summary.md").read_text().startswith("## transfer L2T-Digits-v0")
    # The saved teacher comes back as the transferred one and as an extra one.
    saved = str(tmp_path / "source_teacher.safetensors")
    args = ["--teacher", saved, "--extra", f"again={saved}", "--target-arg", "max_iters=15"]
    out = run(
        "benchmarks/transfer.py", *TINY[:2], "--ratios", "0.5", *args, "--out", str(tmp_path / "b")
    )
    assert "| again |" in out.stdout and "loaded from" in out.stdout
    # Both are the same teacher on the same seeds: identical runs.
    table = rows(tmp_path / "b" / "runs.csv")
    trans = [r["iteration"] for r in table if r["teacher"] == "transferred"]
    again = [r["iteration"] for r in table if r["teacher"] == "again"]
    assert trans == again and trans


def tiny_cifar10(side: str, student: str) -> list[str]:
    """One side of a transfer on CIFAR-10 small enough for a CPU: 3 iterations of 8 images."""
    args = [f"student={student!r}", "max_iters=3", "eval_every=1", "batch_size=8"]
    return [item for arg in args for item in (f"--{side}-arg", arg)]


def test_transfer_resnet20_to_resnet110_on_a_fabricated_cifar10_mirror(tmp_path, monkeypatch):
    # 20 images a class: each fold's dev set (dev_fraction 0.1) holds one image of every class.
    write_mirror(tmp_path / "mirror", per_class=20, test_per_class=1)
    monkeypatch.setenv("L2T_DATA", str(tmp_path / "data_root"))  # the decoded cache goes here
    mirror = str(tmp_path / "mirror")
    args = ["--source", "cifar10", "--target", "cifar10", "--source-offline-cifar10", mirror]
    args += ["--target-offline-cifar10", mirror, "--device", "cpu", *TINY[:6]]
    args += ["--sweep-students", "1", "--ratios", "0.5", "--out", str(tmp_path / "out")]
    args += ["--baselines"]  # LossRank's sweep only: a ResNet-110 run each costs seconds here
    args += [*tiny_cifar10("source", "resnet20"), *tiny_cifar10("target", "resnet110")]
    out = run("benchmarks/transfer.py", *args).stdout
    title = "## transfer L2T-CIFAR10-v0 (offline real CIFAR-10) with resnet20 -> "
    assert title + "L2T-CIFAR10-v0 (offline real CIFAR-10) with resnet110" in out
    assert "| transferred |" in out and "| NoTeach |" in out
    configs = json.loads((tmp_path / "out" / "config.json").read_text())
    for side, student in (("source", "resnet20"), ("target", "resnet110")):
        assert configs[side]["offline_cifar10"] == mirror
        assert configs[side]["env_args"]["student"] == student
    assert len(list((tmp_path / "data_root" / "cache").glob("cifar10-jpg-*.npz"))) == 1


def test_transfer_refuses_cifar10_data_for_another_task(tmp_path):
    args = ["--source-offline-cifar10", str(tmp_path), "--out", str(tmp_path / "out")]
    err = run("benchmarks/transfer.py", *args, expect=2).stderr
    assert "usage: transfer.py" in err
    assert "offline_cifar10: it is CIFAR-10 data; the task is 'digits'" in err


def test_tune_teacher_smoke(tmp_path):
    args = ["--grid", "lr=0.01,0.03", "--base", "episodes=2", "students_per_update=2"]
    args += ['env_args={"max_iters": 15}', "--students", "2", "--out", str(tmp_path)]
    out = run("benchmarks/tune_teacher.py", *args).stdout
    assert "lr=0.01" in out and "lr=0.03" in out
    table = rows(tmp_path / "tune.csv")
    assert [r["lr"] for r in table] == ["0.01", "0.03"]
    assert all(0.0 <= float(r["keep"]) <= 1.0 for r in table)
    err = run("benchmarks/tune_teacher.py", "--grid", "nonsense=1", expect=2).stderr
    assert "'nonsense' is not an ExperimentConfig field" in err


def test_transfer_names_the_option_whose_offline_folder_is_missing(tmp_path):
    proc = run(
        "benchmarks/transfer.py",
        "--source",
        "cifar10",
        "--target",
        "cifar10",
        "--source-offline-cifar10",
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "out"),
        expect=2,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("transfer.py: error: --source-offline-cifar10: ")
    assert "is missing" in last and "Traceback" not in proc.stderr


def test_compare_teachers_replicates_over_training_seeds(tmp_path):
    out = run(
        "benchmarks/compare_teachers.py", *TINY, "--baselines", "--train-seeds", "0", "1",
        "--candidate-cost", "0.5", "--out", str(tmp_path),
    ).stdout  # fmt: skip
    assert "train seed 0" in out and "train seed 1" in out and "| NoTeach |" in out
    assert "### L2T: seconds to tau" in out  # the compute-aware clock adds wall-clock
    for seed in (0, 1):
        assert (tmp_path / f"train_seed_{seed}" / "summary.md").exists()
    table = rows(tmp_path / "protocol.csv")
    assert {r["train_seed"] for r in table} == {"0", "1"}
    assert {r["cost"] for r in table} == {"effective_instances", "seconds"}
    err = run("benchmarks/compare_teachers.py", "--train-seeds", "1", "1", expect=2).stderr
    assert "--train-seeds: repeated seeds" in err
