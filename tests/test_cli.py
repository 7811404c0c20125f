"""The ``l2t`` command, smoke-run in subprocesses with tiny budgets, as a user runs it."""

from __future__ import annotations

import csv
import json

from script_runner import run

from l2t_gym.features import feature_names
from l2t_gym.teachers import BernoulliTeacher

CPU = ("--device", "cpu", "--quiet")


def l2t(*args: str, expect: int = 0):
    return run("-m", "l2t_gym", *args, expect=expect)


def test_help_lists_the_commands_and_the_config_docstrings():
    # Without a command: the usage, every command, status 2.
    assert all(c in l2t(expect=2).stdout for c in ("usage: l2t", "demo", "train", "evaluate"))
    train_help = " ".join(l2t("train", "--help").stdout.split())
    assert "usage: l2t train" in train_help
    # Option help comes from ExperimentConfig's field docstrings, defaults from the command.
    assert "REINFORCE: Adam's learning rate. (default: 0.03)" in train_help
    assert "(default: runs/train)" in train_help
    # The authors' code's REINFORCE details are options of train (and demo).
    assert "--lr-halve-every LR_HALVE_EVERY" in train_help
    assert "--weight-decay WEIGHT_DECAY" in train_help


def test_demo_trains_then_compares_on_fresh_students(tmp_path):
    # The main job's recipe (CMA-ES, a narrow teacher reading the scale-free columns), its
    # budgets tiny.
    quick = ["--episodes", "6", "--es-popsize", "3", "--es-students", "1", "--students", "2"]
    quick += ["--sweep-students", "1", "--ratios", "0.3", "0.6", "--env-arg", "max_iters=40"]
    out = l2t("demo", "--out", str(tmp_path), *quick, *CPU).stdout
    assert "trained 2 generations (6 episodes) by CMA-ES" in out and "seeds 1000-1001" in out
    lines = out.splitlines()
    head = _table_head(lines)
    body = lines[lines.index(head) + 2 :][:11]
    rows = [" ".join(w for w in ln.split()[:3] if not w[0].isdigit()) for ln in body]
    # The papers' names; the heuristics at L2T's ratio and at their best setting on the teacher
    # fold (InfoBatch has no keep ratio: at its best only).
    assert [r.split()[0] for r in rows] == [
        "NoTeach",
        "RandTeach",
        "LossRank",
        "LossRank",
        "RHO-LOSS",
        "RHO-LOSS",
        "InfoBatch",
        "Selective-Backprop",
        "Selective-Backprop",
        "SPL",
        "L2T",
    ]
    assert sum("(best)" in ln for ln in body) == 4
    # Every heuristic's row carries L2T's paired test against it; L2T's own row none.
    assert "L2T vs row" in head and "paired p" in head
    assert all(ln.split()[-1].replace(".", "").replace("<", "").isdigit() for ln in body[:-1])
    assert body[-1].split()[-1] == f"{float(body[-1].split()[-1]):.2f}"  # ends with its keep
    assert (tmp_path / "teacher.safetensors").is_file() and (tmp_path / "curves.png").is_file()
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episodes"] for r in history] == [3, 6]
    teacher = BernoulliTeacher.load(tmp_path / "teacher.safetensors")
    assert teacher.hidden == 4 and teacher.layout[-3:] == (
        "loss_rank",
        "loss_vs_mean",
        "loss_change",
    )
    assert teacher.inputs == ("margin", "loss_rank", "loss_vs_mean", "loss_change")
    table = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert {r["seed"] for r in table} == {"1000", "1001"}
    assert {r["teacher"] for r in table} >= {"NoTeach", "SPL", "L2T"}


def test_train_resume_then_evaluate(tmp_path):
    base = ["train", "L2T-Digits-v0", "--out", str(tmp_path), *CPU, "--students-per-update", "2"]
    base += ["--checkpoint-every", "2", "--env-arg", "max_iters=30"]
    l2t(*base, "--episodes", "4")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "checkpoint-000002.pt",
        "checkpoint-000004.pt",
    ]
    out = l2t(*base, "--episodes", "6", "--resume").stdout
    assert "checkpoint-000004.pt (4 episodes done)" in out and "trained 6 episodes" in out
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == list(range(6))
    teacher = str(tmp_path / "teacher.safetensors")
    assert BernoulliTeacher.load(teacher).task == "digits"
    args = ["--teacher", teacher, "--teacher", "rand", "--keep-prob", "0.7", "--students", "2"]
    # module:Class, its keyword arguments after it.
    args += ["--teacher", "l2t_gym.teachers:LossRank", "--teacher-arg", "keep_ratio=0.3"]
    out = l2t("evaluate", "L2T-Digits-v0", *args, "--out", str(tmp_path / "eval"), *CPU).stdout
    assert "\nteacher " in out and "\nRandTeach 0.70 " in out and "seeds 0-1" in out
    assert "\nLossRank keep_ratio=0.3 " in out


def test_evaluate_refuses_a_bad_teacher_spec_naming_it(tmp_path):
    args = ["evaluate", "L2T-Digits-v0", "--teacher", "nosuchmodule_q:T", *CPU]
    err = l2t(*args, "--out", str(tmp_path), expect=2).stderr
    assert "teacher 'nosuchmodule_q:T': cannot import module 'nosuchmodule_q'" in err
    err = l2t(*args[:2], "--teacher-arg", "a=1", "--teacher", "spl", *CPU, expect=2).stderr
    assert "give it after the --teacher it is for" in err


def test_train_side_by_side_with_the_seed_baseline(tmp_path):
    args = ["train", "digits", "--vector", "--students-per-update", "2", "--episodes", "4"]
    args += ["--baseline", "seed", "--repeats", "2", "--init-keep", "0.3"]
    args += ["--checkpoint-every", "0", "--env-arg", "max_iters=20", "--out", str(tmp_path)]
    l2t(*args, *CPU)
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == [0, 1, 2, 3]
    assert BernoulliTeacher.load(tmp_path / "teacher.safetensors").init_keep == 0.3
    assert not (tmp_path / "checkpoints").exists()


def test_errors_exit_2_with_a_message(tmp_path):
    # Config errors (tests/test_experiment.py) and a teacher's own refusal alike, before any
    # student trains.
    cases = [
        (["evaluate", "L2T-Digits-v0", "--teacher", "nonsense"], "unknown teacher 'nonsense'"),
        (["train", "digits", "--env-arg", "tau"], "--env-arg expects KEY=VALUE"),
        (["train", "digits", "--init-keep", "1.5", "--episodes", "1"], "init_keep"),
        # The env's TypeError for a wrongly typed argument: a usage error, not a traceback.
        (["train", "digits", "--env-arg", "max_iters=abc", "--episodes", "1"], "max_iters"),
    ]
    for args, message in cases:
        err = l2t(*args, "--out", str(tmp_path), *CPU, expect=2).stderr
        assert err.startswith(f"l2t {args[0]}: error: ") and message in err, (args, err)


def test_a_damaged_teacher_file_exits_2_naming_it(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    BernoulliTeacher(feature_names(10)).save(teacher)
    data = bytearray(teacher.read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight
    teacher.write_bytes(bytes(data))
    args = ["evaluate", "digits", "--teacher", str(teacher), "--out", str(tmp_path), *CPU]
    err = l2t(*args, expect=2).stderr
    assert err.startswith("l2t evaluate: error: ") and str(teacher) in err
    assert "is damaged or not an l2t-gym teacher file" in err and "Traceback" not in err


def test_resume_without_a_checkpoint_starts_and_past_a_damaged_one_warns(tmp_path):
    base = ["train", "digits", "--out", str(tmp_path), *CPU, "--students-per-update", "2"]
    base += ["--checkpoint-every", "2", "--env-arg", "max_iters=20"]
    out = l2t(*base, "--episodes", "4", "--resume").stdout
    assert f"--resume: no checkpoint in {tmp_path / 'checkpoints'} yet; starting" in out
    assert "trained 4 episodes" in out
    (tmp_path / "checkpoints" / "checkpoint-000004.pt").write_bytes(b"")
    done = l2t(*base, "--episodes", "6", "--resume")
    assert "checkpoint-000002.pt (2 episodes done)" in done.stdout
    assert (
        "l2t train: warning: resumed from checkpoint-000002.pt, the newest intact checkpoint; "
        "skipped checkpoint-000004.pt (the file is empty)"
    ) in done.stderr
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == list(range(6))


def _table_head(lines: list[str]) -> str:
    (head,) = [ln for ln in lines if ln.startswith("teacher ")]
    return head


def test_an_output_folder_that_cannot_be_written_stops_the_command_before_the_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = l2t(
        "evaluate",
        "L2T-Digits-v0",
        "--teacher",
        "noteach",
        "--students",
        "2",
        "--out",
        str(blocker / "out"),
        *CPU,
        expect=2,
    )
    assert proc.stderr.startswith("l2t evaluate: error:") and len(proc.stderr.splitlines()) == 1
    assert "teacher" not in proc.stdout  # no student was taught, no table printed
