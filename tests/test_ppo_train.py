"""``l2t train --algo ppo``: Stable-Baselines3's PPO with ``l2t_gym.sb3.InstancePolicy`` as the
teacher-training algorithm of the experiment recipes and the command."""

from __future__ import annotations

import json

import pytest
from script_runner import run

from l2t_gym.experiment import ExperimentConfig, make_env, teacher_file, train_teacher
from l2t_gym.sb3 import InstanceTeacher
from l2t_gym.teachers import make_teacher, run_episode

pytest.importorskip("stable_baselines3")

TINY = {"max_iters": 8}
CPU = ("--device", "cpu", "--quiet")


def _cfg(tmp_path, **fields) -> ExperimentConfig:
    settings = {"env_args": TINY, "device": "cpu", "out": str(tmp_path), "algo": "ppo"}
    return ExperimentConfig(**{**settings, "ppo_n_steps": 16, "ppo_batch_size": 8, **fields})


def test_train_writes_a_zip_that_make_teacher_loads_and_that_teaches(tmp_path):
    args = ["train", "L2T-Digits-v0", "--algo", "ppo", "--episodes", "4", "--lr", "0.002"]
    args += ["--ppo-n-steps", "16", "--ppo-batch-size", "8", "--env-arg", "max_iters=8"]
    out = run("-m", "l2t_gym", *args, "--out", str(tmp_path), *CPU).stdout
    zip_file = tmp_path / "teacher.zip"
    assert f"teacher saved to {zip_file}" in out and "trained 4 episodes" in out
    assert not (tmp_path / "teacher.safetensors").exists()
    history = json.loads((tmp_path / "training.json").read_text())
    assert [r["episode"] for r in history] == [0, 1, 2, 3]  # the budget, exactly
    assert all(0.0 < r["keep_ratio"] <= 1.0 and r["iterations"] <= 8 for r in history)
    assert (tmp_path / "training.csv").read_text().startswith("episode,reward,iterations")
    env = make_env(_cfg(tmp_path), "student")
    names = tuple(env.unwrapped.feature_names)
    teacher = make_teacher(str(zip_file), expected_feature_names=names)
    assert isinstance(teacher, InstanceTeacher)
    result = run_episode(env, teacher, seed=1000)
    assert result.iterations <= 8 and 0.0 < result.keep_ratio <= 1.0


@pytest.mark.parametrize("episodes", [3, 0])
def test_the_episode_budget_is_respected(tmp_path, episodes):
    # Two-step rollouts: the budget ends learning in the middle of one, never past it.
    seen = []
    cfg = _cfg(tmp_path, episodes=episodes, ppo_n_steps=2, ppo_batch_size=2, lr=0.002)
    trained = train_teacher(cfg, callback=seen.append)
    assert len(trained.history) == episodes and seen == trained.history
    assert trained.algo == "ppo" and isinstance(trained.teacher, InstanceTeacher)
    assert all("baseline" not in r for r in trained.history)
    assert teacher_file(cfg) == "teacher.zip"
    trained.save(tmp_path / "t.zip")
    assert make_teacher(str(tmp_path / "t.zip")).model.policy is not None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ppo_n_steps": 1}, "ppo_n_steps must be >= 2"),
        ({"ppo_batch_size": 0}, "ppo_batch_size must be >= 2"),
        ({"vector": True}, "vector does not apply to algo='ppo'"),
        ({"init_teacher": "t.safetensors"}, "init_teacher does not apply to algo='ppo'"),
        ({"algo": "sac"}, "algo must be 'reinforce', 'es' or 'ppo'"),
    ],
)
def test_bad_ppo_fields_are_refused_by_name(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, **fields)


def test_resume_is_refused_with_ppo(tmp_path):
    with pytest.raises(ValueError, match="PPO runs cannot be resumed"):
        train_teacher(_cfg(tmp_path, episodes=1), resume=True)
    args = ["train", "digits", "--algo", "ppo", "--episodes", "1", "--resume"]
    err = run("-m", "l2t_gym", *args, "--out", str(tmp_path), *CPU, expect=2).stderr
    assert err.startswith("l2t train: error: --resume: PPO runs cannot be resumed")
    assert not (tmp_path / "teacher.zip").exists()
