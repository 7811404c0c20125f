"""``l2t train --algo ppo``: Stable-Baselines3's PPO with ``l2t_gym.sb3.InstancePolicy`` as the
teacher-training algorithm of the experiment recipes and the command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from script_runner import run

from l2t_gym.experiment import ExperimentConfig, make_env, teacher_file, train_teacher
from l2t_gym.sb3 import InstanceTeacher
from l2t_gym.teachers import make_teacher, run_episode
from l2t_gym.teachers.ppo import PPOConfig, PPOTrainer, checkpoint_files

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
        ({"teacher_hidden": 4}, "teacher_hidden does not apply to algo='ppo'"),
        ({"teacher_inputs": ("loss",)}, "teacher_inputs does not apply to algo='ppo'"),
        ({"algo": "sac"}, "algo must be 'reinforce', 'es' or 'ppo'"),
    ],
)
def test_bad_ppo_fields_are_refused_by_name(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        _cfg(tmp_path, **fields)


def test_a_resumed_run_continues_exactly_as_the_uninterrupted_one(tmp_path):
    # Checkpoints fall at rollout starts, the env mid-episode; resuming from the first one in
    # another folder must give the same episodes and the same policy as running straight on.
    fields = {"episodes": 8, "lr": 0.002, "checkpoint_every": 2}
    straight = train_teacher(_cfg(tmp_path / "a", **fields))
    written = checkpoint_files(tmp_path / "a" / "checkpoints")
    assert len(written) >= 2
    first = written[-1]  # newest first
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(first, tmp_path / "b" / "checkpoints")
    resumed = train_teacher(_cfg(tmp_path / "b", **fields), resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == first.name
    assert 0 < resumed.resumed_episodes < 8
    assert resumed.history == straight.history
    a, b = straight.teacher.model.policy.state_dict(), resumed.teacher.model.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_logs_to_its_own_tensorboard_folder(tmp_path):
    # SB3's zip remembers the folder of the run that saved it; the resuming run's wins.
    config = PPOConfig(episodes=3, lr=0.002, n_steps=16, batch_size=8, checkpoint_every=1)
    env = make_env(_cfg(tmp_path), "teacher")
    PPOTrainer(env, config, tmp_path / "ck", tensorboard_log=tmp_path / "tb1").train()
    again = PPOTrainer(env, config, tmp_path / "ck", tensorboard_log=tmp_path / "tb2")
    assert again.resume() is not None
    assert again.model.tensorboard_log == str(tmp_path / "tb2")


def test_resume_refuses_another_runs_checkpoint_and_skips_damaged_ones(tmp_path):
    train_teacher(_cfg(tmp_path, episodes=4, lr=0.002, checkpoint_every=1))
    written = checkpoint_files(tmp_path / "checkpoints")
    written[0].write_bytes(written[0].read_bytes()[:-10])  # the newest, cut short
    with pytest.warns(UserWarning, match="skipped " + written[0].name):
        again = train_teacher(_cfg(tmp_path, episodes=4, lr=0.002), resume=True)
    assert again.resumed_from == written[1]
    another = pytest.raises(ValueError, match="checkpoint was made with seed=0, this run has 5")
    with another, pytest.warns(UserWarning, match="skipped"):
        train_teacher(_cfg(tmp_path, episodes=4, lr=0.002, train_seed=5), resume=True)


def test_resume_through_the_command_says_where_it_continued(tmp_path):
    args = ["train", "digits", "--algo", "ppo", "--episodes", "3", "--lr", "0.002"]
    args += ["--ppo-n-steps", "16", "--ppo-batch-size", "8", "--env-arg", "max_iters=8"]
    args += ["--checkpoint-every", "1", "--out", str(tmp_path), *CPU]
    run("-m", "l2t_gym", *args)
    out = run("-m", "l2t_gym", *args[:5], "5", *args[6:], "--resume").stdout
    assert "resumed from" in out and "trained 5 episodes (" in out and " in this run)" in out
