"""The executor seam without Ray: jobs in process, REINFORCE's gradient pieces, the settings."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
from synthetic_env import SyntheticTeachingEnv

from l2t_gym.experiment import EnvSpec, ExperimentConfig, make_executor
from l2t_gym.teachers import BernoulliTeacher, RandTeach, run_episodes
from l2t_gym.teachers.executors import (
    EpisodeJob,
    InProcessExecutor,
    as_executor,
    log_prob_gradient,
    run_job,
)
from l2t_gym.teachers.reinforce import reinforce_gradient, reinforce_loss


def test_the_gradient_from_pieces_is_the_gradient_of_the_reinforce_loss():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    results = run_episodes(env, teacher, [1, 2, 3], record=True, curves=False)
    rewards = torch.tensor([0.3, -0.1, 0.8])
    baseline = torch.tensor([0.2, 0.0, 0.5])
    log_probs = torch.stack(
        [teacher.log_prob(r.trajectory.observations, r.trajectory.actions).sum() for r in results]
    )
    reinforce_loss(log_probs, rewards, baseline).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in teacher.policy.parameters()])
    for p in teacher.policy.parameters():
        p.grad = None
    pieces = torch.as_tensor(
        np.stack([log_prob_gradient(teacher, r.trajectory)[1] for r in results])
    )
    torch.testing.assert_close(reinforce_gradient(pieces, rewards, baseline), expected)
    # The pieces left the teacher's own gradients alone.
    assert all(p.grad is None for p in teacher.policy.parameters())


def test_a_job_in_process_is_the_rollout_of_its_seeds():
    env = SyntheticTeachingEnv()
    direct = run_episodes(env, RandTeach(0.5), [4, 5], teacher_seeds=[7, 8], curves=False)
    (outcomes,) = InProcessExecutor(env).run([EpisodeJob(RandTeach(0.5), [4, 5], [7, 8])])
    timeless = [dataclasses.replace(r, seconds=0.0) for r in direct]
    assert [dataclasses.replace(o.result, seconds=0.0) for o in outcomes] == timeless
    assert all(o.log_prob is None and o.log_prob_grad is None for o in outcomes)


def test_a_job_asking_for_gradients_returns_them_and_no_observations():
    env = SyntheticTeachingEnv()
    teacher = BernoulliTeacher(env.feature_names, seed=0)
    (outcome,) = run_job(env, EpisodeJob(teacher, [3], [3], log_prob_grad=True))
    n = sum(p.numel() for p in teacher.policy.parameters())
    assert outcome.result.trajectory is None
    assert outcome.log_prob_grad.shape == (n,) and outcome.log_prob_grad.dtype == np.float32
    assert np.isfinite(outcome.log_prob) and outcome.log_prob < 0


def test_jobs_come_back_in_order_and_on_done_sees_each_once():
    executor = InProcessExecutor({"a": SyntheticTeachingEnv, "b": SyntheticTeachingEnv()})
    seen = []
    jobs = [EpisodeJob(RandTeach(p), [s], [s], env=e) for p, s, e in ((0.2, 1, "a"), (0.9, 2, "b"))]
    out = executor.run(jobs, lambda i, outcomes: seen.append((i, len(outcomes))))
    assert seen == [(0, 1), (1, 1)]
    assert out[0][0].result.keep_ratio < out[1][0].result.keep_ratio


def test_warming_up_changes_no_episode():
    spec = EnvSpec(ExperimentConfig(device="cpu", env_args={"max_iters": 12}), "teacher")
    job = EpisodeJob(RandTeach(0.5), [3], [3])
    cold = InProcessExecutor(spec).run([job])[0][0].result
    warm = InProcessExecutor(spec, warm_up=True).run([job])[0][0].result
    assert (cold.iterations, cold.reward, cold.kept_instances) == (
        warm.iterations,
        warm.reward,
        warm.kept_instances,
    )


def test_an_env_name_that_changes_source_is_rebuilt_and_an_unknown_one_refused():
    first, second = SyntheticTeachingEnv(), SyntheticTeachingEnv()
    executor = InProcessExecutor({"x": first})
    assert executor.env("x") is first
    executor.envs["x"] = second
    assert executor.env("x") is second
    with pytest.raises(KeyError, match=r"no env named 'y'.*\['x'\]"):
        executor.env("y")


def test_an_executor_is_passed_through_and_an_env_wrapped():
    executor = InProcessExecutor({})
    assert as_executor(executor) is executor
    assert isinstance(as_executor(SyntheticTeachingEnv()), InProcessExecutor)


@pytest.mark.parametrize("env_seeds, teacher_seeds", [([1, 2], [1]), ([], [])])
def test_a_job_needs_one_teacher_seed_per_env_seed(env_seeds, teacher_seeds):
    with pytest.raises(ValueError, match="one teacher seed per env seed"):
        EpisodeJob(RandTeach(0.5), env_seeds, teacher_seeds)


def test_env_specs_are_equal_by_value_and_build_one_env_or_side_by_side():
    cfg = ExperimentConfig(device="cpu")
    assert EnvSpec(cfg, "teacher") == EnvSpec(ExperimentConfig(device="cpu"), "teacher")
    assert EnvSpec(cfg, "teacher") != EnvSpec(cfg, "student")
    assert EnvSpec(cfg, "teacher", num_envs=3)().num_envs == 3
    assert not hasattr(EnvSpec(cfg, "teacher")(), "num_envs")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"workers": 0}, "workers must be a positive integer"),
        ({"workers": 2, "algo": "ppo"}, "workers does not apply to algo='ppo'"),
        ({"gpus_per_worker": 1.0}, "gpus_per_worker=1.0 needs ray_address"),
        ({"ray_address": ""}, "ray_address must be"),
        ({"ray_address": "local", "workers": 0}, "workers must be a positive integer"),
        ({"ray_address": "local", "gpus_per_worker": -0.5}, "gpus_per_worker must be >= 0"),
        ({"ray_address": "local", "algo": "ppo"}, "does not apply to algo='ppo'"),
    ],
)
def test_bad_ray_settings_are_refused_naming_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig(**bad)


def test_without_a_ray_address_episodes_run_in_process():
    assert isinstance(make_executor(ExperimentConfig()), InProcessExecutor)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    from l2t_gym.teachers.ray_executor import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ImportError, match=r"l2t-gym\[ray\]"):
        connect("local")


def test_an_unreachable_ray_address_is_a_quick_clear_error():
    from l2t_gym.teachers.ray_executor import connect

    pytest.importorskip("ray")
    with pytest.raises(ConnectionError, match=r"ray_address='127.0.0.1:1': cannot reach"):
        connect("127.0.0.1:1", reach_timeout=2)
    with pytest.raises(ValueError, match="HOST:PORT"):
        connect("nohost", reach_timeout=2)
