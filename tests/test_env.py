"""L2TEnv on the embedded Digits task: the MDP contract of GUIDE section 2."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import l2t_gym
from l2t_gym import L2TEnv

M = 32


def make(**kwargs) -> L2TEnv:
    kwargs.setdefault("device", "cpu")
    return L2TEnv("digits", **kwargs)


def run_episode(env, policy, seed):
    obs, info = env.reset(seed=seed)
    trajectory = [(obs, 0.0, False, False, info)]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        trajectory.append((obs, reward, terminated, truncated, info))
        done = terminated or truncated
    return trajectory


def keep_all(obs):
    return np.ones(len(obs), dtype=bool)


def col(env, name):
    return env.feature_names.index(name)


# -- spaces and features --------------------------------------------------------------------
def test_spaces_and_feature_names():
    env = make()
    assert env.action_space == gym.spaces.MultiBinary(M)
    assert env.observation_space.shape == (M, 25) and env.observation_space.dtype == np.float32
    names = env.feature_names
    assert names[:10] == tuple(f"label_{c}" for c in range(10))
    assert names[10:13] == ("iteration", "avg_train_loss", "best_dev_accuracy")
    assert names[13:23] == tuple(f"prob_{c}" for c in range(10))
    assert names[23:] == ("loss", "margin")


def test_feature_columns_are_what_they_say():
    env = make()
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        obs, *_ = env.step(keep_all(obs))
    assert env.observation_space.contains(obs)
    onehot = obs[:, :10]
    assert np.all(onehot.sum(1) == 1) and set(np.unique(onehot)) == {0.0, 1.0}
    y = onehot.argmax(1)
    probs = obs[:, 13:23]
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    p_true = probs[np.arange(M), y]
    np.testing.assert_allclose(obs[:, col(env, "loss")], -np.log(p_true), rtol=1e-4, atol=1e-5)
    others = probs.copy()
    others[np.arange(M), y] = -1
    np.testing.assert_allclose(obs[:, col(env, "margin")], p_true - others.max(1), atol=1e-6)


def test_features_match_the_student_and_the_labels():
    env = make()
    obs, _ = env.reset(seed=4)
    run = env.run
    idx = run.candidate.indices[0]  # the candidate batch just proposed
    data = run.data
    np.testing.assert_array_equal(obs[:, :10].argmax(1), data.y_train_host[idx])
    with torch.no_grad():
        model = run.students.modules[0]
        probs = torch.softmax(model(data.x_train[torch.from_numpy(idx)]), 1).numpy()
    np.testing.assert_allclose(obs[:, 13:23], probs, rtol=1e-5, atol=1e-6)


def test_model_features_move_with_training():
    env = make(tau=1.0, max_iters=200)
    obs, info = env.reset(seed=0)
    first = obs[0, 10:13].copy()
    assert first[0] == 0.0  # iteration
    assert first[1] == pytest.approx(math.log(10))  # no update yet: a uniform guess's loss
    assert first[2] == pytest.approx(info["best_dev_accuracy"])
    losses, best = [], []
    for k in range(1, 41):
        obs, _, _, _, info = env.step(keep_all(obs))
        assert obs[0, 10] == pytest.approx(k / 200)
        assert obs[0, 12] == pytest.approx(info["best_dev_accuracy"])
        losses.append(obs[0, 11])
        best.append(obs[0, 12])
    assert losses[-1] < 0.5 * losses[0]
    assert info["best_dev_accuracy"] > first[2] + 0.3
    assert np.all(np.diff(best) >= 0)


# -- reward and episode end -----------------------------------------------------------------
def test_keep_all_reaches_tau_with_the_paper_reward():
    env = make()
    traj = run_episode(env, keep_all, seed=0)
    obs, reward, terminated, truncated, info = traj[-1]
    assert terminated and not truncated and info["reached_tau"]
    assert info["dev_accuracy"] >= env.tau > traj[-2][4]["best_dev_accuracy"]
    # An independent computation from info: -log(i_tau / T').
    assert reward == pytest.approx(-math.log(info["iteration"] / env.max_iters))
    assert info["iteration"] == info["teacher_step"]  # keep-all: one iteration per step
    assert info["effective_instances"] == M * info["iteration"] == info["instances_seen"]
    assert 0 < info["iteration"] < env.max_iters
    assert all(step[1] == 0.0 for step in traj[:-1])
    assert isinstance(reward, float) and type(terminated) is bool and type(truncated) is bool
    assert info["final_dev_accuracy"] == info["dev_accuracy"]


def test_budget_end_gives_zero_reward():
    env = make(tau=1.0, max_iters=7, report_test=True)
    traj = run_episode(env, keep_all, seed=1)
    _, reward, terminated, truncated, info = traj[-1]
    assert terminated and not truncated and not info["reached_tau"]
    assert reward == 0.0 and info["iteration"] == 7 and len(traj) == 8
    assert 0.0 <= info["test_accuracy"] <= 1.0 and "final_dev_accuracy" in info


def test_report_test_eval_measures_test_accuracy_at_every_dev_evaluation():
    env = make(tau=1.0, max_iters=10, eval_every=3, report_test="eval")
    half = lambda obs: np.arange(len(obs)) % 2 == 0  # noqa: E731
    traj = run_episode(env, half, seed=4)
    first = traj[0][4]
    assert 0.0 <= first["test_accuracy"] <= 1.0 and first["test_seconds"] > 0.0
    for (_, _, _, _, before), (_, _, _, _, after) in zip(traj, traj[1:], strict=False):
        tested = after["test_seconds"] > before["test_seconds"]
        evaluated = after["iteration"] != before["iteration"] and after["iteration"] % 3 == 0
        # T' = 10 is off the grid of 3: the end evaluates once more, dev and test alike.
        assert tested == (evaluated or after["iteration"] == 10), after
        if not tested:
            assert after["test_accuracy"] == before["test_accuracy"]
    # The same final student as report_test=True measures (same seed, same actions).
    end = run_episode(make(tau=1.0, max_iters=10, eval_every=3, report_test=True), half, 4)
    assert traj[-1][4]["test_accuracy"] == end[-1][4]["test_accuracy"]
    assert "test_seconds" not in end[-1][4] and "test_accuracy" not in end[0][4]
    with pytest.raises(ValueError, match="report_test"):
        make(report_test="always")


def test_candidate_cost_charges_the_clock():
    cost = 0.5
    env = make(candidate_cost=cost, max_iters=400)
    half = lambda obs: np.arange(len(obs)) % 2 == 0  # noqa: E731
    traj = run_episode(env, half, seed=2)
    _, reward, terminated, _, info = traj[-1]
    assert terminated and info["reached_tau"]
    clock = info["iteration"] + cost * info["teacher_step"]
    assert info["clock"] == clock
    assert reward == pytest.approx(-math.log(clock / env.max_iters))
    assert traj[-1][0][0, col(env, "iteration")] == pytest.approx(clock / env.max_iters)


def test_dropping_everything_ends_truncated():
    env = make(max_teacher_steps=25)
    traj = run_episode(env, lambda obs: np.zeros(len(obs)), seed=0)
    _, reward, terminated, truncated, info = traj[-1]
    assert truncated and not terminated and reward == 0.0
    assert info["teacher_step"] == 25 and info["iteration"] == 0
    assert info["kept_instances"] == 0 and info["effective_instances"] == 0


def test_dropping_everything_with_candidate_cost_runs_out_of_clock():
    env = make(candidate_cost=1.0, max_iters=10)
    traj = run_episode(env, lambda obs: np.zeros(len(obs)), seed=0)
    _, reward, terminated, truncated, info = traj[-1]
    assert terminated and not truncated and reward == 0.0 and info["teacher_step"] == 10


def test_eval_every_spaces_dev_evaluations():
    env = make(eval_every=5, tau=1.0, max_iters=20)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        obs, *_ = env.step(keep_all(obs))
    assert [it for it, _ in env.run.dev_history[0]] == [0, 5, 10, 15, 20]


# -- the pool -------------------------------------------------------------------------------
def test_keeping_half_doubles_teacher_steps_per_iteration():
    env = make(tau=1.0, max_iters=30)
    half = lambda obs: np.arange(len(obs)) < M // 2  # noqa: E731
    traj = run_episode(env, half, seed=0)
    info = traj[-1][4]
    assert info["iteration"] == 30 and info["teacher_step"] == 60
    assert info["effective_instances"] == 30 * M == info["kept_instances"]
    pools = [step[4]["pool_size"] for step in traj[1:]]
    assert pools[:4] == [16, 0, 16, 0]


def test_pool_is_fifo_across_uneven_keeps():
    env = make(tau=1.0, max_iters=1000)
    obs, _ = env.reset(seed=0)
    kept = [5, 20, 10, 31, 0, 32]
    iterations = []
    for k in kept:
        obs, _, _, _, info = env.step(np.arange(M) < k)
        iterations.append(info["iteration"])
    # Running totals 5, 25, 35 (-> 1 update, 3 left), 34 (-> 2, 2 left), 2, 34 (-> 3, 2 left).
    assert iterations == [0, 0, 1, 2, 2, 3]
    assert info["pool_size"] == 2 and info["effective_instances"] == 3 * M


def test_mask_mode_trains_on_each_kept_subset():
    env = make(mode="mask", tau=1.0, max_iters=100)
    obs, _ = env.reset(seed=0)
    for k, expected_iter in [(5, 1), (0, 1), (32, 2), (1, 3)]:
        obs, _, _, _, info = env.step(np.arange(M) < k)
        assert info["iteration"] == expected_iter and info["pool_size"] == 0
    assert info["effective_instances"] == 5 + 32 + 1


def test_candidate_forward_does_not_change_the_student():
    env = make(tau=1.0, max_iters=1000)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.arange(M) < 4)  # a pool: the next forward keeps no graph
    before = [p.detach().clone() for p in env.run.students.modules[0].parameters()]
    for _ in range(3):
        obs, _, _, _, info = env.step(np.zeros(M))
    assert info["iteration"] == 0
    for a, b in zip(before, env.run.students.modules[0].parameters(), strict=True):
        assert torch.equal(a, b)


# -- determinism ----------------------------------------------------------------------------
def assert_same_trajectory(a, b):
    assert len(a) == len(b)
    for (oa, ra, ta, tra, ia), (ob, rb, tb, trb, ib) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, ta, tra) == (rb, tb, trb)
        assert ia == ib


def test_same_seed_same_actions_same_trajectory():
    def policy_for(seed):
        rng = np.random.default_rng(seed)
        return lambda obs: rng.random(len(obs)) < 0.7

    a = run_episode(make(), policy_for(9), seed=5)
    b = run_episode(make(), policy_for(9), seed=5)
    assert_same_trajectory(a, b)
    c = run_episode(make(), policy_for(9), seed=6)
    assert not np.array_equal(a[0][0], c[0][0])


def test_reset_without_seed_continues_the_stream_and_reseeding_repeats():
    env = make()
    first, _ = env.reset(seed=11)
    second, _ = env.reset()
    assert not np.array_equal(first, second)
    again, _ = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)


def test_splits_see_disjoint_instances():
    teacher, student = make(fold="teacher"), make(fold="student")
    teacher.reset(seed=0)
    student.reset(seed=0)
    t, s = teacher.run.fold, student.run.fold
    assert not set(t.train) & set(s.train)
    assert not set(t.dev) & (set(s.train) | set(t.train) | set(s.dev))


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "action, error",
    [
        (np.ones(M - 1), ValueError),
        (np.ones((1, M)), ValueError),
        (np.full(M, 2), ValueError),
        (np.full(M, -1), ValueError),
        (np.full(M, 0.5), ValueError),
        (np.full(M, np.nan), ValueError),
        (None, TypeError),
        ("keep", TypeError),
        (["a"] * M, TypeError),
        (np.array([object()] * M), TypeError),
    ],
)
def test_bad_actions_raise_and_leave_env_usable(action, error):
    env = make()
    obs, _ = env.reset(seed=0)
    with pytest.raises(error, match=f"shape \\({M},\\)"):
        env.step(action)
    _, _, _, _, info = env.step(np.ones(M, dtype=np.float32))
    assert info["teacher_step"] == 1 and info["iteration"] == 1


@pytest.mark.parametrize("dtype", [bool, np.int8, np.int64, np.float32, np.float64])
def test_accepted_action_dtypes(dtype):
    env = make()
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.ones(M, dtype=dtype))
    assert info["kept_instances"] == M
    env.step(list(np.zeros(M, dtype=int)))


def test_step_before_reset_and_after_the_end():
    env = make(max_teacher_steps=1)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.ones(M))
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step(np.zeros(M))
    assert truncated
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.ones(M))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau": 0.0},
        {"tau": 1.5},
        {"batch_size": 0},
        {"max_iters": -3},
        {"eval_every": 0},
        {"max_teacher_steps": 0},
        {"candidate_cost": -1.0},
        {"candidate_cost": float("nan")},
        {"fold": "train"},
        {"mode": "fast"},
        {"device": "tpu"},
        {"device": "nonsense:device"},
        {"student": "mlp-0"},
        {"student": "vgg16"},
        {"optimizer": "rmsprop"},
        {"dev_fraction": 1.0},
        {"render_mode": "human"},
    ],
)
def test_bad_arguments_raise_at_construction(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)


def test_unknown_task_and_missing_cuda():
    with pytest.raises(ValueError, match="unknown task"):
        L2TEnv("imagenet")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            make(device="cuda")


def test_custom_student_must_be_a_module():
    env = make(student=lambda: "not a module")
    with pytest.raises(TypeError, match="nn.Module"):
        env.reset(seed=0)


def test_diverging_student_ends_the_episode():
    env = make(lr=1e12, tau=1.0)
    traj = run_episode(env, keep_all, seed=0)
    obs, reward, terminated, truncated, info = traj[-1]
    assert info["diverged"] and terminated and not truncated and reward == 0.0
    assert env.observation_space.contains(obs)
    assert not any(step[4]["diverged"] for step in traj[:-1])


# -- registration ---------------------------------------------------------------------------
def test_registered_ids_and_gym_make():
    for env_id in ("L2T-Digits-v0", "L2T-MNIST-v0", "L2T-CIFAR10-v0"):
        assert env_id in gym.registry
    env = gym.make("l2t_gym:L2T-Digits-v0", device="cpu", batch_size=8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, 25) and env.unwrapped.tau == 0.93 and env.unwrapped.max_iters > 0
    assert l2t_gym.L2TEnv is L2TEnv


def test_custom_student_callable_is_seeded():
    factory = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # noqa: E731
    a, _ = make(student=factory).reset(seed=1)
    b, _ = make(student=factory).reset(seed=1)
    np.testing.assert_array_equal(a, b)


def test_candidate_forward_leaves_batchnorm_statistics_alone():
    from l2t_gym.data import RawData

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 12)
    x = rng.normal(size=(120, 3, 8, 8)).astype(np.float32) + y[:, None, None, None] * 0.1
    data = RawData.from_arrays(x, y, x[:20], y[:20], 10)
    env = L2TEnv(
        "cifar10",
        data=data,
        device="cpu",
        batch_size=6,
        student="resnet20",
        tau=1.0,
        max_iters=100,
        augment=False,
    )
    obs, _ = env.reset(seed=0)
    model = env.run.students.modules[0]
    stats = lambda: [b.clone() for b in model.buffers()]  # noqa: E731
    before = stats()
    obs, *_ = env.step(np.zeros(6))  # dropped: the candidate forward must leave no trace
    obs, *_ = env.step(np.arange(6) < 3)
    assert all(torch.equal(a, b) for a, b in zip(before, stats(), strict=True))
    obs, _, _, _, info = env.step(np.arange(6) < 3)  # the pool fills: one update
    assert info["iteration"] == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, stats(), strict=True))
    assert len(before) == 3 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("student", ["mlp-32", "resnet20"])
def test_reusing_the_candidate_graph_equals_a_fresh_forward(student, monkeypatch):
    from l2t_gym.data import RawData
    from l2t_gym.student import StudentRun

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 12)
    x = rng.normal(size=(120, 3, 8, 8)).astype(np.float32) + y[:, None, None, None] * 0.1
    data = RawData.from_arrays(x, y, x[:20], y[:20], 10)

    def trajectory():
        env = L2TEnv(
            "cifar10",
            data=data,
            device="cpu",
            batch_size=6,
            student=student,
            tau=1.0,
            max_iters=8,
            augment=False,
        )
        return run_episode(env, keep_all, seed=3), env.run

    reused, run_a = trajectory()
    propose = StudentRun.propose
    monkeypatch.setattr(StudentRun, "propose", lambda self, keep_graph=True: propose(self, False))
    fresh, run_b = trajectory()
    assert_same_trajectory(reused, fresh)
    for a, b in zip(
        run_a.students.modules[0].state_dict().values(),
        run_b.students.modules[0].state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_stepping_under_no_grad_or_inference_mode(context):
    env = make(tau=1.0, max_iters=5)
    with context():
        traj = run_episode(env, lambda obs: np.arange(len(obs)) % 3 != 0, seed=0)
    assert traj[-1][4]["iteration"] == 5
