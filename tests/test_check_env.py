"""Every registered id through Gymnasium's and Stable-Baselines3's env checkers, and the MNIST
and CIFAR-10 tasks end to end on fabricated files in torchvision's on-disk formats."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import l2t_gym

# Small batches keep the ResNet fast on CPU; everything else is the task's default.
SMALL = {
    "L2T-Digits-v0": {},
    "L2T-MNIST-v0": {"batch_size": 10},
    "L2T-CIFAR10-v0": {"batch_size": 6},
    "L2T-IMDB-v0": {"batch_size": 8},
}


@pytest.mark.parametrize("env_id", sorted(l2t_gym.ENV_IDS))
def test_checkers_pass(env_id, fabricated_data_root):
    kwargs = {"device": "cpu", "download": False, **SMALL[env_id]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker's warning is a failure here, but one:
        # SB3 suggests flattening any 2-D observation; the (M, d) matrix is the design, and a
        # per-instance policy is how SB3 agents read it.
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        gym_check_env(gym.make(env_id, **kwargs).unwrapped, skip_render_check=True)
        sb3_check_env(gym.make(env_id, **kwargs), warn=True)
    assert set(SMALL) == set(l2t_gym.ENV_IDS)


def test_checkers_pass_with_the_thresholds_reward():
    # Its info holds an array of clocks; Gymnasium's determinism check compares infos, which a
    # NaN for "not reached yet" would fail.
    kwargs = {"device": "cpu", "reward": "thresholds"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        gym_check_env(gym.make("L2T-Digits-v0", **kwargs).unwrapped, skip_render_check=True)
        sb3_check_env(gym.make("L2T-Digits-v0", **kwargs), warn=True)


@pytest.mark.parametrize("env_id", ["L2T-MNIST-v0", "L2T-CIFAR10-v0"])
def test_vision_tasks_run_and_repeat(env_id, fabricated_data_root):
    def episode():
        env = gym.make(
            env_id,
            device="cpu",
            download=False,
            max_iters=6,
            eval_every=3,
            tau=1.0,
            report_test=True,
            **SMALL[env_id],
        )
        obs, info = env.reset(seed=7)
        rng = np.random.default_rng(0)
        out = [obs]
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(rng.random(len(obs)) < 0.8)
            out.append(obs)
            done = terminated or truncated
        return out, info

    a, info = episode()
    b, _ = episode()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert info["iteration"] == 6 and 0.0 <= info["test_accuracy"] <= 1.0
    assert a[0].shape == (SMALL[env_id]["batch_size"], 25)


def test_mnist_keep_all_learns_fabricated_digits(fabricated_data_root):
    env = gym.make(
        "L2T-MNIST-v0", device="cpu", download=False, tau=0.9, max_iters=300, eval_every=5
    )
    obs, info = env.reset(seed=0)
    start = info["dev_accuracy"]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(np.ones(len(obs)))
        done = terminated or truncated
    assert info["reached_tau"] and reward > 0 and start < 0.5


def test_missing_data_is_a_clear_error(tmp_path):
    env = gym.make("L2T-MNIST-v0", device="cpu", download=False, data_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="MNIST"):
        env.reset(seed=0)
