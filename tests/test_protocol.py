"""The replication protocol: per-training-seed comparisons of the learned teacher with every
heuristic, their spread, and the student runs spent (l2t_gym.experiment.protocol)."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from fake_runs import fake_run

from l2t_gym.experiment import (
    ComparisonRun,
    ExperimentConfig,
    heuristic_role,
    protocol_rows,
    replicate,
    write_protocol,
)


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("NoTeach", "NoTeach"),
        ("SPL", "SPL"),
        ("RandTeach 0.27", "RandTeach at L2T's ratio"),
        ("LossRank 0.27", "LossRank at L2T's ratio"),
        ("LossRank 0.50 (best)", "LossRank (best)"),
        ("InfoBatch prune_ratio=0.80 (best)", "InfoBatch (best)"),
        ("Selective-Backprop 0.20 (best)", "Selective-Backprop (best)"),
    ],
)
def test_heuristic_roles_drop_the_setting_that_differs_between_seeds(name, role):
    assert heuristic_role(name) == role


def fake_comparison(cfg: ExperimentConfig, learned: list[int], ratio: str) -> ComparisonRun:
    # NoTeach takes 50 iterations, LossRank 40 at L2T's ratio (its label carries the ratio).
    n = len(learned)
    results = {
        "NoTeach": [fake_run(50) for _ in range(n)],
        f"LossRank {ratio}": [fake_run(40, keep=0.3) for _ in range(n)],
        "L2T": [fake_run(i, keep=0.3) for i in learned],
    }
    return ComparisonRun(cfg, results, ["L2T"], [], 64, 10, 1.0)


def test_protocol_rows_pair_the_learned_teacher_with_each_heuristic_in_each_seed(tmp_path):
    cfg = ExperimentConfig(students=4, env_args={"max_iters": 100}, out=str(tmp_path))
    runs = {
        0: fake_comparison(cfg, [30, 31, 32, 33], "0.27"),  # cheaper than both: wins
        1: fake_comparison(cfg, [55, 56, 57, 58], "0.31"),  # dearer than both: losses
    }
    rows = {r.heuristic: r for r in protocol_rows(runs)}
    assert set(rows) == {"NoTeach", "LossRank at L2T's ratio"}
    noteach = rows["NoTeach"]
    # Effective instances are 32 per iteration: seed 0 costs 31.5 vs 50 iterations.
    assert noteach.comparisons[0].relative == pytest.approx(31.5 / 50 - 1)
    assert noteach.comparisons[1].relative == pytest.approx(56.5 / 50 - 1)
    assert (noteach.wins, noteach.losses) == (1, 1)
    mean, std = noteach.spread
    assert mean == pytest.approx((31.5 / 50 + 56.5 / 50) / 2 - 1)
    assert std > 0
    text = write_protocol(runs, tmp_path)
    assert text.startswith("## L2T-Digits-v0: L2T (reinforce) in 2 training seeds")
    assert "trained its own teacher" in text
    # Seed 1: differences 5..8 iterations x 32, t = 10.1 on 3 df: p = 0.002.
    assert "| NoTeach | -37.0% (p <0.001) | +13.0% (p 0.002) |" in text
    assert "| 0 | 4/4 | 4 (NoTeach) | 64 | 10 | 16 | 1 |" in text  # 3 x 4 students + a probe of 4
    with (tmp_path / "protocol.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and {r["train_seed"] for r in table} == {"0", "1"}
    # A second learned teacher gets its own table, with the first among its rows; its name is
    # its own, number and all (only a heuristic's setting is dropped from its row).
    for run in runs.values():
        run.results["native 2"] = run.results["NoTeach"]
        run.learned.append("native 2")
    rows = {r.heuristic: r for r in protocol_rows(runs, teacher="native 2")}
    assert set(rows) == {"NoTeach", "LossRank at L2T's ratio", "L2T"}
    assert rows["NoTeach"].comparisons[0].paired.diff == 0
    assert "native 2" in {r.heuristic for r in protocol_rows(runs)}
    assert "### native 2: effective instances to tau" in write_protocol(runs, tmp_path)
    # Saved teachers (one per seed, --teacher) were trained elsewhere: the title says so.
    for s, run in runs.items():
        run.cfg = dataclasses.replace(run.cfg, teacher=f"t_{s}.safetensors", train_seed=s)
    text = write_protocol(runs, tmp_path)
    assert text.startswith("## L2T-Digits-v0: L2T (saved teachers) in 2 training seeds")
    assert "loaded its own saved teacher" in text and "(reinforce)" not in text


def test_protocol_refuses_runs_whose_heuristics_differ(tmp_path):
    cfg = ExperimentConfig(students=4, out=str(tmp_path))
    runs = {0: fake_comparison(cfg, [30] * 4, "0.2"), 1: fake_comparison(cfg, [30] * 4, "0.2")}
    del runs[1].results["NoTeach"]
    with pytest.raises(ValueError, match="missing from some training seeds"):
        protocol_rows(runs)


def test_replicate_gives_each_training_seed_its_folder_and_the_same_students(tmp_path):
    seen = []

    def run(cfg: ExperimentConfig) -> ComparisonRun:
        seen.append((cfg.train_seed, cfg.out, cfg.student_seeds))
        return fake_comparison(cfg, [30] * cfg.students, "0.2")

    cfg = ExperimentConfig(students=3, first_seed=7, out=str(tmp_path))
    runs = replicate(cfg, [2, 0], run)
    assert list(runs) == [2, 0]
    assert seen == [
        (2, str(tmp_path / "train_seed_2"), [7, 8, 9]),
        (0, str(tmp_path / "train_seed_0"), [7, 8, 9]),
    ]
    # A saved teacher per training seed: the transferred one and an extra (a native one).
    specs = []
    cfg = ExperimentConfig(
        students=3,
        teacher="t/seed_{train_seed}.safetensors",
        extra=["native=n/{train_seed}/teacher.safetensors", "spl=spl"],
        out=str(tmp_path),
    )
    replicate(cfg, [4, 5], lambda c: specs.append((c.teacher, c.extra)) or run(c))
    assert specs == [
        ("t/seed_4.safetensors", ["native=n/4/teacher.safetensors", "spl=spl"]),
        ("t/seed_5.safetensors", ["native=n/5/teacher.safetensors", "spl=spl"]),
    ]
    # A warm start per training seed (e.g. each seed's teacher from another reward).
    starts = []
    cfg = ExperimentConfig(students=3, init_teacher="w/{train_seed}.safetensors", out=str(tmp_path))
    replicate(cfg, [4, 5], lambda c: starts.append(c.init_teacher) or run(c))
    assert starts == ["w/4.safetensors", "w/5.safetensors"]
    with pytest.raises(ValueError, match="train_seeds"):
        replicate(cfg, [1, 1], run)
    with pytest.raises(ValueError, match="train_seeds"):
        replicate(cfg, [], run)
