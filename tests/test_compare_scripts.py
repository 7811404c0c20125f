"""Smoke runs of the teacher-comparison benchmarks with tiny budgets, and their argument checks."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_scripts import run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import compare_teachers  # noqa: E402

TINY = ["--students", "2", "--episodes", "2", "--students-per-update", "2"]
TINY += ["--sweep-students", "2", "--ratios", "0.3", "0.6", "--env-arg", "max_iters=15"]


def test_compare_teachers_smoke(tmp_path):
    out = run("benchmarks/compare_teachers.py", *TINY, "--out", str(tmp_path / "a"))
    assert "| l2t |" in out and "| noteach |" in out
    for name in ("summary.md", "runs.csv", "curves.png", "to_tau_box.png", "keep_ratio.png"):
        assert (tmp_path / "a" / name).exists()
    rows = list(csv.DictReader((tmp_path / "a" / "runs.csv").open()))
    teachers = {r["teacher"] for r in rows}
    assert {"l2t", "noteach", "spl"} <= teachers and any(t.endswith("(best)") for t in teachers)
    assert {r["seed"] for r in rows} == {"1000", "1001"}
    assert all(r["checkpoint_test_accuracy"] for r in rows)  # report_test="eval"
    # The saved teacher comes back as the loaded L2T teacher and as an extra one, under a
    # compute-aware clock.
    saved = tmp_path / "a" / "teacher.safetensors"
    args = ["--teacher", str(saved), "--extra", f"again={saved}", "--candidate-cost", "0.25"]
    out = run("benchmarks/compare_teachers.py", *TINY, *args, "--out", str(tmp_path / "b"))
    assert "| again |" in out and "candidate_cost=0.25" in out
    # The same teacher twice: the learned-against-learned table shows a zero difference.
    assert "Learned teachers against each other" in out
    assert "| l2t | again | effective instances |" in out and "+0 (+0, +0)" in out


def test_load_extra_reads_an_sb3_model(tmp_path):
    from stable_baselines3 import PPO

    from l2t_gym import L2TEnv
    from l2t_gym.sb3 import InstancePolicy, InstanceTeacher

    env = L2TEnv("digits", device="cpu", max_iters=5)
    PPO(InstancePolicy, env, n_steps=8, batch_size=8, device="cpu").save(tmp_path / "ppo.zip")
    name, teacher = compare_teachers.load_extra(
        f"ppo={tmp_path / 'ppo.zip'}", env.feature_names, "PPO"
    )
    assert name == "ppo" and isinstance(teacher, InstanceTeacher)
    with pytest.raises(ValueError, match="NAME=PATH"):
        compare_teachers.load_extra("ppo.zip", env.feature_names, "PPO")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--task", "svhn"], "unknown task"),
        (["--students", "1"], "at least 2"),
        (["--candidate-cost", "-1"], ">= 0"),
        (["--env-arg", "tau"], "KEY=VALUE"),
    ],
)
def test_compare_teachers_bad_arguments(argv, match, capsys):
    with pytest.raises((SystemExit, ValueError), match=match):
        compare_teachers.parse(argv)


def test_transfer_smoke(tmp_path):
    out = run(
        "benchmarks/transfer.py",
        *TINY[:8],
        "--ratios",
        "0.5",
        "--source-arg",
        "max_iters=15",
        "--target-arg",
        "max_iters=15",
        "--target-arg",
        'student="mlp-128"',
        "--native-episodes",
        "2",
        "--out",
        str(tmp_path),
    )
    assert "| transferred |" in out and "| native |" in out and "with mlp-128" in out
    assert (tmp_path / "source_teacher.safetensors").exists()
    assert (tmp_path / "summary.md").read_text().startswith("## transfer L2T-Digits-v0")
    # The saved teacher comes back as the transferred one and as an extra one.
    saved = str(tmp_path / "source_teacher.safetensors")
    args = ["--teacher", saved, "--extra", f"again={saved}", "--target-arg", "max_iters=15"]
    out = run(
        "benchmarks/transfer.py", *TINY[:2], "--ratios", "0.5", *args, "--out", str(tmp_path / "b")
    )
    assert "| again |" in out and "loaded from" in out
    # Both are the same teacher on the same seeds: identical runs.
    rows = list(csv.DictReader((tmp_path / "b" / "runs.csv").open()))
    trans = [r["iteration"] for r in rows if r["teacher"] == "transferred"]
    again = [r["iteration"] for r in rows if r["teacher"] == "again"]
    assert trans == again and trans


def test_tune_teacher_smoke(tmp_path):
    args = ["--grid", "lr=0.01,0.03", "--base", "episodes=2", "students_per_update=2"]
    args += ['env_args={"max_iters": 15}', "--students", "2", "--out", str(tmp_path)]
    out = run("benchmarks/tune_teacher.py", *args)
    assert "lr=0.01" in out and "lr=0.03" in out
    rows = list(csv.DictReader((tmp_path / "tune.csv").open()))
    assert [r["lr"] for r in rows] == ["0.01", "0.03"]
    assert all(0.0 <= float(r["keep"]) <= 1.0 for r in rows)
    bad = subprocess.run(
        [sys.executable, "benchmarks/tune_teacher.py", "--grid", "nonsense=1"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert bad.returncode != 0 and "not a Config field" in bad.stderr


def test_training_can_start_from_a_saved_teacher(tmp_path):
    from l2t_gym import L2TEnv
    from l2t_gym.teachers import BernoulliTeacher

    names = L2TEnv("digits", device="cpu").feature_names
    saved = BernoulliTeacher(names, init_keep=0.2, seed=5)
    saved.save(tmp_path / "t.safetensors")
    cfg = compare_teachers.Config(
        episodes=1,
        students_per_update=1,
        lr=1e-9,
        env_args={"max_iters": 5, "device": "cpu"},
        init_teacher=str(tmp_path / "t.safetensors"),
    )
    teacher, history = compare_teachers.train_teacher(
        cfg, compare_teachers.env_factory(cfg, "teacher")
    )
    assert len(history) == 1
    for a, b in zip(teacher.policy.parameters(), saved.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # lr 1e-9: it starts where it was
    fresh = compare_teachers.Config(**{**cfg.__dict__, "init_teacher": None})
    other, _ = compare_teachers.train_teacher(fresh, compare_teachers.env_factory(fresh, "teacher"))
    assert not torch.allclose(other.policy[2].bias, saved.policy[2].bias)
