"""The ``l2t`` command, smoke-run with tiny budgets (in process, through ``main``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from l2t_gym.cli import main


@pytest.mark.parametrize(
    "argv", [["--help"], ["demo", "--help"], ["train", "--help"], ["evaluate", "--help"]]
)
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0 and "usage: l2t" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "l2t_gym", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "demo" in out.stdout


def test_demo_tiny(tmp_path, capsys):
    assert (
        main(
            [
                "demo",
                "--out",
                str(tmp_path),
                "--episodes",
                "4",
                "--students",
                "2",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for name in ("noteach", "rand", "spl", "lossrank", "l2t"):
        assert f"\n{name}" in out
    assert (tmp_path / "teacher.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    rows = (tmp_path / "runs.csv").read_text().splitlines()
    assert rows[0].startswith("teacher,seed") and len(rows) > 10


def test_train_resume_then_evaluate(tmp_path, capsys):
    base = [
        "train",
        "L2T-Digits-v0",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
        "--quiet",
        "--students-per-update",
        "2",
        "--checkpoint-every",
        "2",
        "--env-arg",
        "max_iters=30",
    ]
    assert main([*base, "--episodes", "4"]) == 0
    assert main([*base, "--episodes", "6", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == list(range(6))
    teacher = str(tmp_path / "teacher.safetensors")
    assert (
        main(
            [
                "evaluate",
                "L2T-Digits-v0",
                "--teacher",
                teacher,
                "--teacher",
                "rand",
                "--keep-prob",
                "0.7",
                "--students",
                "2",
                "--out",
                str(tmp_path / "eval"),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "\nteacher " in out and "\nrand " in out


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert (
        main(
            [
                "evaluate",
                "L2T-Digits-v0",
                "--teacher",
                "nonsense",
                "--device",
                "cpu",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown teacher 'nonsense'" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "L2T-Digits-v0",
                "--resume",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "L2T-Digits-v0", "--env-arg", "tau", "--out", str(tmp_path)]) == 2


def test_train_side_by_side(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "L2T-Digits-v0",
                "--vector",
                "--students-per-update",
                "2",
                "--episodes",
                "4",
                "--checkpoint-every",
                "0",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
                "--quiet",
                "--env-arg",
                "max_iters=30",
            ]
        )
        == 0
    )
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == [0, 1, 2, 3]


def test_train_with_the_seed_baseline(tmp_path, capsys):
    base = ["train", "L2T-Digits-v0", "--out", str(tmp_path), "--device", "cpu", "--quiet"]
    base += ["--episodes", "4", "--students-per-update", "2", "--env-arg", "max_iters=20"]
    assert main([*base, "--baseline", "seed"]) == 2
    assert "repeats >= 2" in capsys.readouterr().err
    assert main([*base, "--baseline", "seed", "--repeats", "2", "--checkpoint-every", "0"]) == 0
    history = json.loads((tmp_path / "training.json").read_text())
    assert len(history) == 4


def test_train_init_keep(tmp_path, capsys):
    from l2t_gym.teachers import BernoulliTeacher

    base = ["train", "L2T-Digits-v0", "--out", str(tmp_path), "--device", "cpu", "--quiet"]
    base += ["--episodes", "2", "--students-per-update", "2", "--env-arg", "max_iters=10"]
    assert main([*base, "--init-keep", "0.3", "--checkpoint-every", "0"]) == 0
    teacher = BernoulliTeacher.load(tmp_path / "teacher.safetensors")
    assert teacher.init_keep == 0.3
    assert main([*base, "--init-keep", "1.5"]) == 2
    assert "init_keep" in capsys.readouterr().err
