"""What only the vector env, ``L2TVectorEnv``, has: ``gym.make_vec``, batched spaces, the
dict-of-arrays info, next-step autoreset, per-sub-env seeds, its refusals, and N students
stepping together as N single envs do.

The MDP itself is tested once over every env in ``test_episode.py``; that stacked students
update as modules do is tested on the student run in ``test_student.py``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import l2t_gym
from l2t_gym import TASKS, L2TEnv
from l2t_gym.vector import L2TVectorEnv


def test_make_vec_builds_the_native_vector_env_for_every_stackable_task():
    for task, spec in TASKS.items():
        entry = gym.spec(spec.env_id).vector_entry_point
        assert (entry == "l2t_gym.vector:L2TVectorEnv") == spec.stacked, task
    envs = gym.make_vec("L2T-Digits-v0", num_envs=4, device="cpu", batch_size=8)
    assert isinstance(envs, L2TVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.single_observation_space.shape == (8, 25)
    assert envs.observation_space.shape == (4, 8, 25)
    assert envs.single_action_space == gym.spaces.MultiBinary(8)
    # Gymnasium batches MultiBinary(M) as a 0/1 Box of int8.
    assert envs.action_space.shape == (4, 8) and envs.action_space.contains(
        np.ones((4, 8), dtype=np.int8)
    )
    obs, info = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)


def test_the_info_is_a_dict_of_arrays_with_gymnasiums_key_masks():
    envs = L2TVectorEnv(3, "digits", device="cpu", max_teacher_steps=2)
    _, info = envs.reset(seed=0)
    keys = [k for k in info if not k.startswith("_")]
    assert "iteration" in keys and "final_dev_accuracy" not in keys
    for key in keys:
        assert info[key].shape == (3,) and info[f"_{key}"].all(), key
    keep = np.zeros((3, 32), dtype=bool)
    _, rewards, terminated, truncated, info = envs.step(keep)
    assert rewards.shape == terminated.shape == truncated.shape == (3,)
    assert rewards.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_
    assert "final_dev_accuracy" not in info
    _, _, _, truncated, info = envs.step(keep)
    assert truncated.all() and info["_final_dev_accuracy"].all()


def test_the_end_of_an_episode_is_reported_only_for_the_sub_envs_that_ended():
    envs = L2TVectorEnv(3, "digits", device="cpu", max_iters=2, tau=1.0)
    envs.reset(seed=0)
    keep = np.zeros((3, 32), dtype=bool)
    keep[1] = True  # sub-env 1 trains to T' = 2; the others drop everything and go on
    envs.step(keep)
    _, _, terminated, truncated, info = envs.step(keep)
    assert terminated.tolist() == [False, True, False] and not truncated.any()
    assert info["_final_dev_accuracy"].tolist() == [False, True, False]
    assert np.isnan(info["final_dev_accuracy"][[0, 2]]).all()
    assert info["final_dev_accuracy"][1] == info["dev_accuracy"][1]
    _, _, _, _, info = envs.step(keep)  # 1 resets; 0 and 2 keep their episodes
    assert info["iteration"].tolist() == [0, 0, 0] and info["teacher_step"].tolist() == [3, 0, 3]


def test_next_step_autoreset_starts_a_new_student_and_ignores_that_steps_action():
    envs = L2TVectorEnv(2, "digits", device="cpu", max_iters=3, tau=1.0)
    envs.reset(seed=0)
    keep = np.ones((2, 32), dtype=bool)
    for _ in range(2):
        _, _, terminated, _, _ = envs.step(keep)
        assert not terminated.any()
    _, rewards, terminated, _, info = envs.step(keep)
    assert terminated.all() and (rewards == 0).all() and info["_final_dev_accuracy"].all()
    obs, rewards, terminated, truncated, info = envs.step(keep)  # the reset step
    assert not (terminated | truncated).any() and (rewards == 0).all()
    assert (info["iteration"] == 0).all() and (info["teacher_step"] == 0).all()
    assert (obs[:, :, envs.feature_names.index("iteration")] == 0).all()
    _, _, _, _, info = envs.step(keep)  # the new episode's first step
    assert (info["iteration"] == 1).all()


def test_sub_env_i_gets_seed_plus_i_or_the_seed_listed_for_it():
    envs = L2TVectorEnv(3, "digits", device="cpu")
    single = L2TEnv("digits", device="cpu")
    from_one, _ = envs.reset(seed=7)
    for i in range(3):
        np.testing.assert_array_equal(from_one[i], single.reset(seed=7 + i)[0])
    from_list, _ = envs.reset(seed=[9, 7, None])
    np.testing.assert_array_equal(from_list[0], single.reset(seed=9)[0])
    np.testing.assert_array_equal(from_list[1], from_one[0])
    with pytest.raises(ValueError, match="expected 3 seeds"):
        envs.reset(seed=[1, 2])


def lockstep(task, n, steps, keep_prob, seed=10, first_keeps_all=False, rewards=None, **kwargs):
    """Drive a vector env and n single envs with the same seeds and actions; return the worst
    observation difference and how many episodes ended (the single envs reset as next-step
    autoreset does). The single envs' rewards are appended to ``rewards`` if given."""
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
                reward, term, trunc = 0.0, False, False
                done[i] = False
            else:
                obs, reward, term, trunc, info = env.step(actions[i])
                done[i] = term or trunc
                ended += done[i]
                assert info["iteration"] == vinfo["iteration"][i]
                assert info["teacher_step"] == vinfo["teacher_step"][i]
                assert info["pool_size"] == vinfo["pool_size"][i]
                if "tau_clocks" in info:
                    np.testing.assert_array_equal(info["tau_clocks"], vinfo["tau_clocks"][i])
                    assert info["taus_reached"] == vinfo["taus_reached"][i]
            assert (term, trunc) == (vterm[i], vtrunc[i])
            assert reward == pytest.approx(vrew[i], abs=1e-9)
            if rewards is not None:
                rewards.append(reward)
            worst = max(worst, float(np.abs(obs - vobs[i]).max()))
    return worst, ended


def test_digits_students_equal_separate_envs_across_episodes_and_autoresets():
    worst, ended = lockstep("digits", 3, 150, 0.6, device="cpu", max_iters=40)
    assert ended >= 3  # episodes ended and sub-envs were reset along the way
    assert worst < 1e-4


def test_thresholds_rewards_and_clocks_equal_separate_envs_across_episodes():
    # T' = 40 is short of 0.93 for most students: episodes end at T' with some thresholds
    # reached and some not, and at the highest, with every threshold reached.
    rewards = []
    _, ended = lockstep(
        "digits", 3, 150, 0.6, rewards=rewards, device="cpu", max_iters=40, reward="thresholds"
    )
    assert ended >= 3
    assert sum(r > 0 for r in rewards) >= 3


def test_batchnorm_students_with_augmentation_equal_separate_envs(small_images):
    # Each sub-env's augmentation stream is seeded as a single env's is. A small rate and a few
    # steps: ResNet training at lr 0.1 amplifies float-level differences (a ReLU that flips on
    # one pixel), so trajectories part ways even though each step is right. One student reuses
    # its candidate pass while the others train from their pools, in the same update.
    worst, _ = lockstep(
        "cifar10",
        3,
        4,
        0.5,
        first_keeps_all=True,
        device="cpu",
        data=small_images,
        batch_size=6,
        student="resnet20",
        eval_every=2,
        augment=True,
        max_iters=50,
        lr=0.01,
    )
    assert worst < 1e-3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"num_envs": 0}, "num_envs must be an integer >= 1"),
        ({"num_envs": 1.5}, "num_envs must be an integer >= 1"),
        ({"mode": "mask"}, "mode='paper' only"),
        ({"optimizer": "adam"}, "optimizer='sgd' only"),
        ({"channels_last": True}, "channels_last is not supported"),
        ({"precision": "bf16", "student": "resnet20"}, "precision='bf16'.*MLP student"),
        ({"compile": True, "student": "resnet20"}, "compile=True is not supported"),
        ({"report_test": "eval"}, "report_test='eval' is not supported"),
        ({"tau": 2.0}, "tau"),
    ],
)
def test_what_stacked_students_cannot_honour_is_refused_with_a_pointer(small_images, kwargs, words):
    kwargs = {"num_envs": 2, "device": "cpu", "data": small_images, "batch_size": 8, **kwargs}
    with pytest.raises((TypeError, ValueError), match=words):  # 1.5 students: a TypeError
        L2TVectorEnv(task="cifar10", **kwargs)


def test_the_text_task_falls_back_to_gymnasiums_sync_vector_env(imdb_root):
    # nn.LSTM has no vmap batching rule: gym.make_vec steps one L2TEnv per sub-env.
    envs = gym.make_vec(
        "L2T-IMDB-v0", num_envs=2, data_root=imdb_root, download=False, device="cpu", batch_size=8
    )
    assert type(envs) is SyncVectorEnv
    assert all(isinstance(env.unwrapped, L2TEnv) for env in envs.envs)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 8, len(l2t_gym.feature_names(2, ("review_length",))))
    obs, rewards, terminated, truncated, info = envs.step(np.ones((2, 8), dtype=bool))
    assert envs.observation_space.contains(obs) and rewards.shape == (2,)
    assert info["iteration"].tolist() == [1, 1] and info["kept_instances"].tolist() == [8, 8]
    assert not np.array_equal(obs[0], obs[1])  # two students, seeds 0 and 1
