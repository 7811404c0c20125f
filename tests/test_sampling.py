"""The one keep-sampler: probabilities, seeded samples, the mode and its warning, log-probabilities,
and every probabilistic teacher deciding through it."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from synthetic_env import SyntheticTeachingEnv

from l2t_gym.teachers import BernoulliTeacher, RandTeach, teacher_generator
from l2t_gym.teachers.sampling import KeepSampler, keep_log_prob, keep_probabilities, sample_keep


def test_keep_probabilities_are_the_sigmoid_off_the_graph():
    z = torch.tensor([[-30.0, -1.0, 0.0, 2.0, 30.0]], requires_grad=True)
    p = keep_probabilities(z)
    assert isinstance(p, np.ndarray) and p.dtype == np.float32 and p.shape == (1, 5)
    np.testing.assert_array_equal(p, torch.sigmoid(z).detach().numpy())
    assert p[0, 2] == 0.5 and p.min() >= 0.0 and p.max() <= 1.0


def test_sample_keeps_where_the_uniform_draw_falls_below_p():
    p = np.array([0.0, 0.25, 0.5, 0.75, 1.0] * 40, dtype=np.float32)
    keep = sample_keep(p, np.random.default_rng(1))
    u = np.random.default_rng(1).random(len(p))
    np.testing.assert_array_equal(keep, u < p)
    assert keep.dtype == np.bool_ and not keep[p == 0].any() and keep[p == 1].all()


def test_sampler_samples_or_takes_the_mode():
    sampler = KeepSampler("T")
    p = np.array([0.2, 0.5, 0.51, 0.9])
    assert sampler(p, np.random.default_rng(0), deterministic=True).tolist() == [
        False,
        False,
        True,
        True,
    ]
    np.testing.assert_array_equal(
        sampler(p, np.random.default_rng(3), deterministic=False),
        sample_keep(p, np.random.default_rng(3)),
    )


def test_mode_warns_once_per_sampler_when_it_drops_every_candidate():
    sampler = KeepSampler("SomeTeacher")
    low = np.array([0.1, 0.4])
    with pytest.warns(UserWarning, match="deterministic SomeTeacher drops every candidate .*0.400"):
        assert not sampler.mode(low).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler.mode(low)  # once
        sampler(low, np.random.default_rng(0), deterministic=False)  # sampling never warns
    with pytest.warns(UserWarning, match="drops every candidate"):
        KeepSampler("SomeTeacher")(low, np.random.default_rng(0), deterministic=True)


def test_log_prob_by_hand():
    z = torch.tensor([[0.3, -1.2, 2.0], [0.0, 4.0, -0.5]], requires_grad=True)
    a = np.array([[1, 0, 1], [0, 0, 1]])
    got = keep_log_prob(z, a)
    p = torch.sigmoid(z.detach()).double().numpy()
    expected = [
        sum(math.log(pi) if ai else math.log(1 - pi) for pi, ai in zip(row, acts, strict=True))
        for row, acts in zip(p, a, strict=True)
    ]
    assert got.shape == (2,)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-6)
    got.sum().backward()
    # d/dz log p = 1 - p for a kept instance, d/dz log(1 - p) = -p for a dropped one.
    np.testing.assert_allclose(z.grad.numpy(), np.where(a == 1, 1 - p, -p), rtol=1e-5)


def test_log_prob_stays_finite_where_p_saturates():
    z = torch.tensor([[80.0, -80.0]])
    assert keep_log_prob(z, [[1, 0]]).item() == pytest.approx(0.0, abs=1e-30)
    wrong = keep_log_prob(z, [[0, 1]]).item()
    assert math.isfinite(wrong) and wrong == pytest.approx(-160.0)


@pytest.mark.parametrize(
    ("actions", "match"),
    [(np.ones((2, 2)), "shape"), (np.full((2, 3), 0.5), "0/1"), (np.full((2, 3), 2), "0/1")],
)
def test_log_prob_rejects_bad_actions(actions, match):
    with pytest.raises(ValueError, match=match):
        keep_log_prob(torch.zeros(2, 3), actions)


# -- every probabilistic teacher decides through the sampler -------------------------------
def _bernoulli(names):
    teacher = BernoulliTeacher(names, init_keep=0.5, seed=1)
    with torch.no_grad():  # rows with visibly different probabilities
        for param in teacher.policy.parameters():
            param.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    return teacher, teacher.keep_probabilities


def _rand(names):
    teacher = RandTeach(0.3)
    return teacher, lambda obs: np.full(len(obs), 0.3)


def _instance(names):
    sb3 = pytest.importorskip("stable_baselines3")
    from l2t_gym.sb3 import InstancePolicy, InstanceTeacher

    model = sb3.PPO(InstancePolicy, SyntheticTeachingEnv(), seed=0, device="cpu")
    policy = model.policy

    def probabilities(obs):
        with torch.no_grad():
            return torch.sigmoid(policy.keep_logits(torch.as_tensor(obs)[None]))[0].numpy()

    return InstanceTeacher(model), probabilities


@pytest.mark.parametrize("make", [_bernoulli, _rand, _instance], ids=["bernoulli", "rand", "sb3"])
def test_teacher_decisions_are_the_samplers_draws_from_its_own_stream(make):
    env = SyntheticTeachingEnv()
    obs, _ = env.reset(seed=0)
    teacher, probabilities = make(env.feature_names)
    teacher.reset(env.feature_names, seed=11)
    rng = teacher_generator(11)
    for _ in range(3):
        p = probabilities(obs)
        np.testing.assert_array_equal(teacher.act(obs), sample_keep(p, rng))
