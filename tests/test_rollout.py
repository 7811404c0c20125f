"""The rollout loop: a single env is a vector of one, vector envs give each student its own
teacher and seeds, idle students keep nothing, and trajectories are what the teacher saw and did."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorWrapper
from synthetic_env import SyntheticTeachingEnv

import l2t_gym  # noqa: F401 - registers the L2T ids
from l2t_gym.teachers import (
    BernoulliTeacher,
    EpisodeResult,
    LossRank,
    RandTeach,
    Teacher,
    run_episode,
    run_episodes,
)
from l2t_gym.teachers.rollout import CurvePoint
from l2t_gym.vector import L2TVectorEnv


def timeless(result: EpisodeResult) -> EpisodeResult:
    """The result without its wall-clock times, which no two runs share."""
    curve = [p._replace(seconds=0.0) for p in result.curve]
    return dataclasses.replace(result, seconds=0.0, curve=curve)


def synthetic_vector(n: int, **kwargs) -> SyncVectorEnv:
    return SyncVectorEnv([SyntheticTeachingEnv] * n, **kwargs)


class RunningMean(Teacher):
    """Keeps the candidates whose loss beats the mean loss it has seen so far this episode, each
    with probability 0.8: its decisions depend on per-episode state and on its generator."""

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        self.loss = self.column("loss")
        self.total, self.count = 0.0, 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        loss = self.rows(obs)[:, self.loss]
        self.total, self.count = self.total + float(loss.sum()), self.count + len(loss)
        return (loss >= self.total / self.count) & (self.rng.random(len(loss)) < 0.8)


class RecordActions(VectorWrapper):
    """Keeps every action the vector env is sent."""

    def __init__(self, env):
        super().__init__(env)
        self.sent = []

    def step(self, actions):
        self.sent.append(np.array(actions))
        return self.env.step(actions)


def test_run_episode_is_a_rollout_of_one():
    seeds = [0, 1, 2]
    many = run_episodes(SyntheticTeachingEnv(), RandTeach(0.6), seeds)
    env, teacher = SyntheticTeachingEnv(), RandTeach(0.6)
    one_by_one = [run_episode(env, teacher, seed=s) for s in seeds]
    assert [timeless(r) for r in many] == [timeless(r) for r in one_by_one]
    assert len({r.teacher_steps for r in many}) > 1  # three different episodes


def test_without_curves_the_results_are_the_same_but_for_the_curve():
    env = synthetic_vector(2)
    full = run_episodes(env, RandTeach(0.6), [0, 1, 2])
    bare = run_episodes(env, RandTeach(0.6), [0, 1, 2], curves=False)
    assert all(len(r.curve) > 2 for r in full) and all(r.curve == [] for r in bare)
    assert [dataclasses.replace(timeless(r), curve=[]) for r in full] == [timeless(r) for r in bare]


def test_teacher_seeds_default_to_the_env_seeds_and_can_differ():
    env = SyntheticTeachingEnv()
    same = run_episodes(env, RandTeach(0.5), [4], teacher_seeds=[4])
    assert timeless(run_episodes(env, RandTeach(0.5), [4])[0]) == timeless(same[0])
    other = run_episodes(env, RandTeach(0.5), [4], teacher_seeds=[5])
    assert other[0].kept_instances != same[0].kept_instances


def test_sync_vector_env_gives_the_single_env_results_exactly():
    kwargs = {"device": "cpu", "eval_every": 5, "max_iters": 12, "report_test": True}
    seeds = [3, 4, 5]  # two waves of two students, the second with one idle student
    single = run_episodes(gym.make("L2T-Digits-v0", **kwargs), RandTeach(0.5), seeds)
    vec = gym.make_vec("L2T-Digits-v0", 2, vectorization_mode="sync", **kwargs)
    assert isinstance(vec, SyncVectorEnv)  # feature_names and eval_every come from its envs
    side_by_side = run_episodes(vec, RandTeach(0.5), seeds)
    assert [timeless(r) for r in side_by_side] == [timeless(r) for r in single]
    # The bookkeeping read from the vector info: the final evaluation off the eval grid, the test
    # accuracy where the episode ended.
    assert [p.iteration for p in single[0].curve] == [0, 5, 10, 12]
    assert all(r.test_accuracy is not None for r in side_by_side)


def test_native_vector_env_matches_the_single_env():
    kwargs = {"device": "cpu", "max_iters": 40}
    seeds = [0, 1, 2]
    single = run_episodes(l2t_gym.L2TEnv("digits", **kwargs), RandTeach(0.8), seeds)
    vec = run_episodes(L2TVectorEnv(2, "digits", **kwargs), RandTeach(0.8), seeds)
    for a, b in zip(single, vec, strict=True):
        exact = ("reached_tau", "iterations", "teacher_steps", "kept_instances", "keep_ratio")
        assert [getattr(a, k) for k in exact] == [getattr(b, k) for k in exact]
        assert a.reward == pytest.approx(b.reward, abs=1e-9)
        assert [p.iteration for p in a.curve] == [p.iteration for p in b.curve]
        np.testing.assert_allclose(
            [p.dev_accuracy for p in a.curve], [p.dev_accuracy for p in b.curve], atol=1e-6
        )


def test_each_student_of_a_vector_env_has_its_own_teacher_state():
    seeds = [10, 11, 12, 13, 14]
    alone = run_episodes(SyntheticTeachingEnv(), RunningMean(), seeds)
    together = run_episodes(synthetic_vector(3), RunningMean(), seeds)
    assert [timeless(r) for r in together] == [timeless(r) for r in alone]
    assert len({r.kept_instances for r in alone}) > 2  # the students' episodes differ


def test_students_without_an_episode_keep_nothing():
    env = RecordActions(synthetic_vector(3))
    results = run_episodes(env, LossRank(0.5), [0, 1])
    sent = np.stack(env.sent)  # (steps, 3, M)
    assert len(sent) == max(r.teacher_steps for r in results)
    assert not sent[:, 2].any()  # no episode at all
    for i, r in enumerate(results):
        assert sent[: r.teacher_steps, i].sum(1).tolist() == [4] * r.teacher_steps
        assert not sent[r.teacher_steps :, i].any()  # ended: idle until the wave ends


@pytest.mark.parametrize("vector", [False, True])
def test_recorded_trajectory_is_what_the_teacher_saw_and_chose(vector):
    seen, chosen = [], []

    class Spy(RandTeach):
        def act(self, obs):
            seen.append(np.array(obs))
            chosen.append(super().act(obs))
            return chosen[-1]

    # copy=False: the vector env hands out one observation buffer, rewritten at every step.
    env = synthetic_vector(1, copy=False) if vector else SyntheticTeachingEnv()
    (result,) = run_episodes(env, Spy(0.5), [7], record=True)
    trajectory = result.trajectory
    t, m, d = result.teacher_steps, 8, len(SyntheticTeachingEnv().feature_names)
    assert trajectory.observations.shape == (t, m, d) and trajectory.actions.shape == (t, m)
    np.testing.assert_array_equal(trajectory.observations, np.stack(seen))
    np.testing.assert_array_equal(trajectory.actions, np.stack(chosen))
    assert trajectory.actions.sum() == result.kept_instances
    assert run_episodes(env, RandTeach(0.5), [7])[0].trajectory is None


def test_spawned_bernoulli_teachers_share_the_policy_not_the_stream():
    names = SyntheticTeachingEnv().feature_names
    teacher = BernoulliTeacher(names, init_keep=0.5, seed=0)
    twin = teacher.spawn()
    assert twin.policy is teacher.policy and twin.rng is not teacher.rng
    teacher.reset(names, seed=1)
    twin.reset(names, seed=2)
    env = SyntheticTeachingEnv()
    obs = np.stack([env.reset(seed=s)[0] for s in (0, 1)])
    # One forward pass for both students decides as each would alone, from its own stream.
    both = teacher.act_slots(obs, [teacher, twin], np.array([True, True]))
    teacher.reset(names, seed=1)
    twin.reset(names, seed=2)
    np.testing.assert_array_equal(both, [teacher.act(obs[0]), twin.act(obs[1])])
    assert not (both[0] == both[1]).all()
    idle = teacher.act_slots(obs, [teacher, twin], np.array([True, False]))
    assert not idle[1].any()


def test_rollout_rejects_mismatched_seeds_and_same_step_autoreset():
    with pytest.raises(ValueError, match="2 env seeds but 1 teacher seeds"):
        run_episodes(SyntheticTeachingEnv(), RandTeach(0.5), [0, 1], teacher_seeds=[0])
    same_step = synthetic_vector(2, autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="next-step autoreset"):
        run_episodes(same_step, RandTeach(0.5), [0, 1])


def test_results_are_importable_from_the_package():
    from l2t_gym import teachers

    assert teachers.CurvePoint is CurvePoint and teachers.EpisodeResult is EpisodeResult
