"""The training curve of every algorithm: training.csv always, TensorBoard when asked."""

from __future__ import annotations

import csv
import sys

import pytest

from l2t_gym.experiment import ExperimentConfig, train_teacher

TINY = {"max_iters": 8}


def _cfg(tmp_path, **fields) -> ExperimentConfig:
    settings = {"env_args": TINY, "device": "cpu", "out": str(tmp_path), "episodes": 4}
    return ExperimentConfig(**{**settings, "students_per_update": 2, **fields})


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def test_reinforce_writes_its_curve_as_csv(tmp_path):
    trained = train_teacher(_cfg(tmp_path))
    trained.save(tmp_path / "t.safetensors", tmp_path / "training.json")
    with (tmp_path / "training.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["episode"]) for r in rows] == [0, 1, 2, 3]
    assert [float(r["reward"]) for r in rows] == [r["reward"] for r in trained.history]
    assert "baseline" in rows[0]


@pytest.mark.parametrize(
    ("algo", "fields", "tag", "key", "steps"),
    [
        ("reinforce", {}, "train/reward", "reward", [1, 2, 3, 4]),
        (
            "es",
            {"es_popsize": 3, "es_students": 1, "episodes": 6},
            "train/mean_fitness",
            "mean_fitness",
            [3, 6],
        ),
        ("ppo", {"ppo_n_steps": 16, "ppo_batch_size": 8}, "train/reward", "reward", [1, 2, 3, 4]),
    ],
)
def test_tensorboard_gets_every_record_against_the_student_runs_done(
    tmp_path, algo, fields, tag, key, steps
):
    pytest.importorskip("tensorboard")
    if algo == "es":
        pytest.importorskip("cma")
    cfg = _cfg(tmp_path, algo=algo, tensorboard=str(tmp_path / "tb"), **fields)
    trained = train_teacher(cfg)
    logged = scalars(tmp_path / "tb")
    assert [s for s, _ in logged[tag]] == steps
    assert [v for _, v in logged[tag]] == pytest.approx([r[key] for r in trained.history])
    assert "train/keep_ratio" in logged


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r'pip install "l2t-gym\[tensorboard\]"'):
        train_teacher(_cfg(tmp_path, tensorboard=str(tmp_path / "tb")))
