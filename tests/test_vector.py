"""The native vector env: N students at once equal N separate envs, autoreset, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import l2t_gym  # noqa: F401
from l2t_gym import L2TEnv
from l2t_gym.data import RawData
from l2t_gym.vector import L2TVectorEnv


def lockstep(task, n, steps, keep_prob, seed=10, first_keeps_all=False, **kwargs):
    """Drive a vector env and n single envs with the same seeds and actions; return the worst
    observation difference and whether any episode ended (single envs reset as next-step
    autoreset does)."""
    venv = L2TVectorEnv(n, task, **kwargs)
    envs = [L2TEnv(task, **kwargs) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    singles = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    worst = max(float(np.abs(vobs[i] - singles[i]).max()) for i in range(n))
    rng = np.random.default_rng(0)
    done = [False] * n
    ended = 0
    for t in range(steps):
        actions = rng.random((n, venv.batch_size)) < (keep_prob if t % 5 else 1.0)
        if first_keeps_all:  # one student reuses its candidate pass while others use pools
            actions[0] = True
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
        for i, env in enumerate(envs):
            if done[i]:
                obs, _ = env.reset()
                reward, term, trunc, info = 0.0, False, False, None
                done[i] = False
            else:
                obs, reward, term, trunc, info = env.step(actions[i])
                done[i] = term or trunc
                ended += done[i]
                assert info["iteration"] == vinfo["iteration"][i]
                assert info["teacher_step"] == vinfo["teacher_step"][i]
                assert info["pool_size"] == vinfo["pool_size"][i]
            assert (term, trunc) == (vterm[i], vtrunc[i])
            assert reward == pytest.approx(vrew[i], abs=1e-9)
            worst = max(worst, float(np.abs(obs - vobs[i]).max()))
    return worst, ended


def test_digits_students_equal_separate_envs_across_episodes():
    worst, ended = lockstep("digits", 3, 150, 0.6, device="cpu", max_iters=40)
    assert ended >= 3  # episodes ended and sub-envs were reset along the way
    assert worst < 1e-4


def small_images():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    x = rng.normal(size=(300, 3, 8, 8)).astype(np.float32) + y[:, None, None, None] * 0.1
    return RawData.from_arrays(x, y, x[:40], y[:40], 10)


@pytest.mark.parametrize("augment, first_keeps_all", [(False, False), (True, True)])
def test_batchnorm_students_with_augmentation_equal_separate_envs(augment, first_keeps_all):
    # A small rate and a few steps: ResNet training at lr 0.1 amplifies float-level differences
    # (a ReLU that flips on one pixel), so trajectories part ways even though each step is
    # right. With first_keeps_all one student reuses its candidate pass while the others train
    # from their pools, in the same update.
    worst, _ = lockstep(
        "cifar10",
        3,
        4,
        0.5,
        first_keeps_all=first_keeps_all,
        device="cpu",
        data=small_images(),
        batch_size=6,
        student="resnet20",
        eval_every=2,
        augment=augment,
        max_iters=50,
        lr=0.01,
    )
    assert worst < 1e-3


def test_make_vec_uses_the_native_vector_env():
    envs = gym.make_vec("L2T-Digits-v0", num_envs=4, device="cpu", batch_size=8)
    assert isinstance(envs, L2TVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == (4, 8, 25)
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    assert info["iteration"].shape == (4,) and info["_iteration"].all()


def test_next_step_autoreset():
    envs = L2TVectorEnv(2, "digits", device="cpu", max_iters=3, tau=1.0)
    envs.reset(seed=0)
    keep = np.ones((2, 32), dtype=bool)
    for _ in range(2):
        _, _, term, _, info = envs.step(keep)
        assert not term.any()
    _, reward, term, trunc, info = envs.step(keep)
    assert term.all() and (reward == 0).all() and info["_final_dev_accuracy"].all()
    obs, reward, term, trunc, info = envs.step(np.zeros((2, 32)))  # ignored: the reset step
    assert not (term | trunc).any() and (reward == 0).all()
    assert (info["iteration"] == 0).all() and (info["teacher_step"] == 0).all()
    assert (obs[:, :, envs.feature_names.index("iteration")] == 0).all()


def test_a_dropping_student_is_untouched_by_the_others_training():
    envs = L2TVectorEnv(
        3,
        "cifar10",
        device="cpu",
        data=small_images(),
        batch_size=6,
        student="resnet20",
        tau=1.0,
        max_iters=50,
    )
    envs.reset(seed=0)
    students = envs.run.students
    params = {k: v[1].detach().clone() for k, v in students.params.items()}
    buffers = {k: v[1].clone() for k, v in students.buffers.items()}
    keep = np.ones((3, 6), dtype=bool)
    keep[1] = False
    for _ in range(3):
        _, _, _, _, info = envs.step(keep)
    assert list(info["iteration"]) == [3, 0, 3]
    assert all(torch.equal(students.params[k][1], v) for k, v in params.items())
    assert all(torch.equal(students.buffers[k][1], v) for k, v in buffers.items())
    # ... while the others' statistics did move (the forward passes update them in place).
    assert not all(torch.equal(students.buffers[k][0], v) for k, v in buffers.items())


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"num_envs": 0}, ValueError),
        ({"mode": "mask"}, ValueError),
        ({"optimizer": "adam"}, ValueError),
        ({"tau": 2.0}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    kwargs = {"num_envs": 2, "device": "cpu", **kwargs}
    with pytest.raises(error):
        L2TVectorEnv(task="digits", **kwargs)


def test_bad_actions_and_step_before_reset():
    envs = L2TVectorEnv(2, "digits", device="cpu")
    with pytest.raises(gym.error.ResetNeeded):
        envs.step(np.ones((2, 32)))
    envs.reset(seed=0)
    for bad, error in [
        (np.ones(32), ValueError),
        (np.full((2, 32), 0.5), ValueError),
        (None, TypeError),
        (np.full((2, 32), "a"), TypeError),
    ]:
        with pytest.raises(error):
            envs.step(bad)
    _, _, _, _, info = envs.step(np.ones((2, 32), dtype=np.float32))
    assert (info["iteration"] == 1).all()


def test_text_task_falls_back_to_gymnasiums_sync_vector_env():
    # nn.LSTM has no vmap batching rule, so IMDB registers no native vector env.
    assert gym.spec("L2T-IMDB-v0").vector_entry_point is None
    assert gym.spec("L2T-Digits-v0").vector_entry_point is not None


def test_mlp_stacked_forward_equals_each_student_alone():
    from torch.func import stack_module_state

    from l2t_gym.models import build_student

    models = [build_student("mlp-16-8", (1, 4, 4), 3) for _ in range(4)]
    params, _ = stack_module_state(models)
    x = torch.randn(4, 5, 1, 4, 4)
    shared = torch.randn(7, 1, 4, 4)
    batched = models[0].stacked_forward(params, x)
    common = models[0].stacked_forward(params, shared)
    for i, model in enumerate(models):
        torch.testing.assert_close(batched[i], model(x[i]))
        torch.testing.assert_close(common[i], model(shared))
