"""What only the single env, ``L2TEnv``, has: its spaces, registration and ``gym.make``, Python
numbers out of ``step``, the end of an episode, and its public seams.

The MDP itself is tested once over every env in ``test_episode.py``.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

import l2t_gym
from l2t_gym import TASKS, L2TEnv
from l2t_gym.data import RawData
from l2t_gym.student import StudentRun


def make(**kwargs) -> L2TEnv:
    return L2TEnv("digits", **{"device": "cpu", **kwargs})


def test_the_spaces_are_an_m_by_d_float32_box_and_multibinary_m():
    env = make(batch_size=8)
    assert env.action_space == gym.spaces.MultiBinary(8)
    space = env.observation_space
    assert space.shape == (8, 25) and space.dtype == np.float32
    assert env.feature_names == l2t_gym.feature_names(10) and env.num_features == 25
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_is_registered_under_its_env_id(task):
    spec = gym.spec(TASKS[task].env_id)
    assert spec.entry_point == "l2t_gym.env:L2TEnv" and spec.kwargs == {"task": task}
    assert l2t_gym.ENV_IDS[TASKS[task].env_id] == task


def test_gym_make_builds_an_l2t_env_with_the_arguments_given():
    env = gym.make("l2t_gym:L2T-Digits-v0", device="cpu", batch_size=8, tau=0.5)
    assert isinstance(env.unwrapped, L2TEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, 25)
    assert env.unwrapped.tau == 0.5 and env.unwrapped.max_iters == TASKS["digits"].max_iters


def test_the_settings_read_as_the_envs_attributes():
    env = make(max_iters=17)
    assert env.max_iters == env.settings.max_iters == 17
    assert env.fold == "teacher" and env.batch_size == 32
    assert env.reward == "paper" and env.taus is None
    with pytest.raises(AttributeError, match="no attribute 'tauz'"):
        env.tauz  # noqa: B018


def test_rendering_is_refused():
    with pytest.raises(ValueError, match="render_mode"):
        make(render_mode="human")
    assert make().render_mode is None


def test_step_returns_a_python_float_python_bools_and_an_info_of_python_numbers():
    env = make(max_teacher_steps=2)
    obs, info = env.reset(seed=0)
    assert all(type(v) in (int, float, bool) for v in info.values())
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(np.zeros(32))
        assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
        assert all(type(v) in (int, float, bool) for v in info.values())
    assert truncated


def test_a_step_after_the_episode_ended_needs_a_reset():
    env = make(max_teacher_steps=1)
    env.reset(seed=0)
    *_, truncated, _ = env.step(np.zeros(32))
    assert truncated
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.ones(32))
    env.reset(seed=0)  # and a reset starts the next one
    *_, info = env.step(np.ones(32))
    assert info["iteration"] == 1


def test_the_run_and_the_clock_are_public_from_the_first_reset_on():
    env = make(candidate_cost=0.5)
    assert env.run is None
    with pytest.raises(gym.error.ResetNeeded):
        env.clock  # noqa: B018
    env.reset(seed=0)
    assert isinstance(env.run, StudentRun) and env.run.n == 1
    env.step(np.ones(32))
    env.step(np.zeros(32))
    assert env.clock == 1 + 0.5 * 2
    student = env.run.students.modules[0]
    assert env.run.students.optimizers[0].param_groups[0]["params"] == list(student.parameters())


# -- normalisers --------------------------------------------------------------------------------
def _play(env, episodes: int, seed: int) -> list[np.ndarray]:
    seen = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(np.ones(32, dtype=bool))
            seen.append(obs)
            done = terminated or truncated
    return seen


def test_gymnasiums_normaliser_stays_finite_and_useful_after_a_diverged_episode():
    from gymnasium.wrappers import NormalizeObservation

    diverging = NormalizeObservation(gym.make("L2T-Digits-v0", device="cpu", lr=1e8))
    _play(diverging, 2, seed=0)  # two diverged episodes feed the running statistics
    healthy = NormalizeObservation(gym.make("L2T-Digits-v0", device="cpu", max_iters=30))
    healthy.obs_rms = diverging.obs_rms  # the statistics carry on, as in one long run
    seen = np.stack(_play(healthy, 2, seed=5))
    rms = healthy.obs_rms
    assert np.isfinite(rms.mean).all() and np.isfinite(rms.var).all()
    column = seen[..., healthy.unwrapped.feature_names.index("avg_train_loss")]
    # A later healthy episode's average loss still moves in the normalised view (it used to read
    # -0 for good once a diverged student's 3.4e38 had entered the variance).
    assert np.isfinite(seen).all() and column.std() > 0.05


def test_gymnasiums_vector_normaliser_stays_finite_through_diverging_students():
    from gymnasium.wrappers.vector import NormalizeObservation

    envs = NormalizeObservation(gym.make_vec("L2T-Digits-v0", num_envs=3, device="cpu", lr=1e8))
    envs.reset(seed=0)
    for _ in range(8):  # students diverge and are replaced, again and again
        obs, *_ = envs.step(np.ones((3, 32), dtype=bool))
        assert np.isfinite(obs).all()
    assert np.isfinite(envs.obs_rms.mean).all() and np.isfinite(envs.obs_rms.var).all()
    assert envs.obs_rms.var.max() < 1e5


def test_sb3s_vecnormalize_keeps_sane_statistics_through_diverged_and_healthy_episodes():
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    envs = VecNormalize(
        DummyVecEnv(
            [
                lambda: gym.make("L2T-Digits-v0", device="cpu", lr=1e8),
                lambda: gym.make("L2T-Digits-v0", device="cpu", max_iters=30),
            ]
        ),
        norm_reward=False,
    )
    envs.seed(0)
    envs.reset()
    for _ in range(40):
        obs, *_ = envs.step(np.ones((2, 32), dtype=np.float32))
        assert np.isfinite(obs).all()
    assert np.isfinite(envs.obs_rms.mean).all() and envs.obs_rms.var.max() < 1e5


# -- datasets are shared ------------------------------------------------------------------------
def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_a_dataset_given_to_gym_make_is_shared_by_the_spec_not_copied():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8000, 1, 28, 28)).astype(np.float32)  # 25 MB
    data = RawData.from_arrays(x, np.arange(8000) % 10, x[:100], np.arange(100) % 10, 10)
    env = gym.make("L2T-MNIST-v0", data=data, device="cpu")
    before = _resident_mb()
    specs = [copy.deepcopy(env.spec) for _ in range(4)]  # what env.spec and print(env) do
    repr(env)
    grown = _resident_mb() - before
    assert all(spec.kwargs["data"] is data for spec in specs) and env.spec.kwargs["data"] is data
    assert grown < 10, f"{grown:.0f} MB more after copying the spec four times"
