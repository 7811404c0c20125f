"""The MDP contract of GUIDE section 2 (``l2t_gym.episode``), once, over every env.

Each test runs over ``L2TEnv``, ``L2TVectorEnv(1)`` and ``L2TVectorEnv(3)`` through the
``shell`` fixture and ``driver.Driver``; a vector env's sub-envs get seeds s, s+1, s+2, so three
different students obey each rule. Rules only the single env has (it alone takes
``report_test="eval"``; mask mode and Adam are the student run's, see ``test_student.py``) come
last and say so; ``test_vector.py`` checks that the vector env refuses them.
"""

from __future__ import annotations

import copy
import math
import pickle
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from driver import (
    Driver,
    drop_all,
    first_episodes,
    keep_all,
    keep_at_random,
    keep_first,
)

from l2t_gym.episode import check_keep_masks, paper_reward, thresholds_reward

M = 32  # Digits' batch size
#: What every info holds, at every reset and step (GUIDE section 2, and the clock and pool).
INFO_KEYS = {
    "iteration",
    "teacher_step",
    "clock",
    "effective_instances",
    "instances_seen",
    "kept_instances",
    "pool_size",
    "dev_accuracy",
    "best_dev_accuracy",
    "reached_tau",
    "diverged",
}


# -- reward and the end of an episode ---------------------------------------------------------
def test_reaching_tau_ends_the_episode_with_minus_log_of_its_iteration_over_t_prime(shell):
    driver = Driver(shell)
    tau, t_prime = driver.settings.tau, driver.settings.max_iters
    for episode in first_episodes(driver, keep_all, seed=0):
        last, before = episode[-1], episode[-2]
        info = last.info
        assert last.terminated and not last.truncated and info["reached_tau"]
        assert info["dev_accuracy"] >= tau > before.info["best_dev_accuracy"]
        assert 0 < info["iteration"] < t_prime
        assert last.reward == pytest.approx(-math.log(info["iteration"] / t_prime), rel=1e-12)
        assert last.reward > 0.0
        assert all(step.reward == 0.0 for step in episode[:-1])
        # Keep-all: one student iteration per teacher step, every instance seen is trained on.
        assert info["iteration"] == info["teacher_step"] == len(episode) - 1
        assert info["effective_instances"] == M * info["iteration"] == info["instances_seen"]
        assert info["final_dev_accuracy"] == info["dev_accuracy"]


def test_running_out_of_iterations_ends_the_episode_with_reward_zero(shell):
    driver = Driver(shell, tau=1.0, max_iters=7, eval_every=3, report_test=True)
    episodes = first_episodes(driver, keep_all, seed=1)
    for i, episode in enumerate(episodes):
        last = episode[-1]
        assert last.terminated and not last.truncated and not last.info["reached_tau"]
        assert last.reward == 0.0 and last.info["iteration"] == 7 and len(episode) == 8
        # T' = 7 is off the grid of 3: the end measures the final student once more.
        assert driver.run.dev_history[i][-1] == (7, last.info["final_dev_accuracy"])
        assert [it for it, _ in driver.run.dev_history[i]] == [0, 3, 6, 7]
        assert 0.0 <= last.info["test_accuracy"] <= 1.0
        assert all("test_accuracy" not in step.info for step in episode[:-1])
    # Three students, three final students: the info is each sub-env's own.
    if driver.n > 1:
        assert len({e[-1].info["final_dev_accuracy"] for e in episodes}) > 1


def test_the_candidate_cost_charges_the_clock_and_the_reward_reads_the_clock(shell):
    cost = 0.5
    driver = Driver(shell, candidate_cost=cost, max_iters=400)
    t_prime = driver.settings.max_iters
    for episode in first_episodes(driver, keep_first(M // 2), seed=2):
        last = episode[-1]
        info = last.info
        assert last.terminated and info["reached_tau"]
        clock = info["iteration"] + cost * info["teacher_step"]
        assert info["clock"] == clock > info["iteration"]
        assert last.reward == pytest.approx(-math.log(clock / t_prime), rel=1e-12)
        assert last.obs[0, driver.column("iteration")] == pytest.approx(clock / t_prime)


def test_dropping_everything_with_a_candidate_cost_runs_out_of_clock(shell):
    driver = Driver(shell, candidate_cost=1.0, max_iters=10)
    for episode in first_episodes(driver, drop_all, seed=0):
        last = episode[-1]
        assert last.terminated and not last.truncated and last.reward == 0.0
        assert last.info["teacher_step"] == 10 and last.info["iteration"] == 0
        assert last.info["clock"] == 10.0


def test_dropping_everything_is_truncated_after_max_teacher_steps(shell):
    driver = Driver(shell, max_teacher_steps=5)
    for episode in first_episodes(driver, drop_all, seed=0):
        last = episode[-1]
        assert last.truncated and not last.terminated and last.reward == 0.0
        assert len(episode) == 6 and last.info["teacher_step"] == 5
        assert last.info["iteration"] == 0 and last.info["kept_instances"] == 0
        assert last.info["effective_instances"] == 0
        assert not any(step.truncated for step in episode[:-1])


def test_a_diverging_student_ends_its_episode_with_reward_zero_and_a_finite_observation(shell):
    driver = Driver(shell, lr=1e10, tau=1.0)
    for episode in first_episodes(driver, keep_all, seed=0):
        last = episode[-1]
        assert last.info["diverged"] and last.terminated and not last.truncated
        assert last.reward == 0.0
        assert len(episode) <= 5  # within a few steps, long before T' = 100
        assert driver.single_observation_space.contains(last.obs)
        assert not any(step.info["diverged"] for step in episode[:-1])


def test_dev_accuracy_is_measured_every_eval_every_iterations(shell):
    driver = Driver(shell, eval_every=5, tau=1.0, max_iters=20)
    episodes = first_episodes(driver, keep_all, seed=0)
    for i, episode in enumerate(episodes):
        assert [it for it, _ in driver.run.dev_history[i]] == [0, 5, 10, 15, 20]
        # Between evaluations the info repeats the last one.
        accuracies = [step.info["dev_accuracy"] for step in episode]
        assert accuracies[1:5] == [accuracies[0]] * 4
        assert accuracies[5] == driver.run.dev_history[i][1][1]


# -- the pool ---------------------------------------------------------------------------------
def test_keeping_half_of_every_batch_doubles_the_teacher_steps_per_iteration(shell):
    driver = Driver(shell, tau=1.0, max_iters=20)
    for episode in first_episodes(driver, keep_first(M // 2), seed=0):
        info = episode[-1].info
        assert info["iteration"] == 20 and info["teacher_step"] == 40
        assert info["effective_instances"] == 20 * M == info["kept_instances"]
        assert [step.info["pool_size"] for step in episode[1:5]] == [16, 0, 16, 0]


def test_the_pool_carries_what_was_kept_across_uneven_keeps(shell):
    driver = Driver(shell, tau=1.0, max_iters=1000)
    driver.reset(seed=0)
    iterations, pools = [], []
    for k in [5, 20, 10, 31, 0, 32]:
        *_, infos = driver.step(np.broadcast_to(np.arange(M) < k, (driver.n, M)))
        iterations.append([info["iteration"] for info in infos])
        pools.append([info["pool_size"] for info in infos])
    # Running totals 5, 25, 35 (one update, 3 left), 34 (two, 2 left), 2, 34 (three, 2 left).
    assert iterations == [[it] * driver.n for it in [0, 0, 1, 2, 2, 3]]
    assert pools == [[p] * driver.n for p in [5, 25, 3, 2, 2, 2]]
    assert all(info["effective_instances"] == 3 * M for info in infos)


# -- actions ----------------------------------------------------------------------------------
def _with_values(value):
    return lambda shape: np.full(shape, value)


BAD_ACTIONS = {
    "one too few": (lambda shape: np.ones((*shape[:-1], shape[-1] - 1)), ValueError),
    "one dimension too many": (lambda shape: np.ones((1, *shape)), ValueError),
    "a 2": (_with_values(2), ValueError),
    "a -1": (_with_values(-1), ValueError),
    "a 0.5": (_with_values(0.5), ValueError),
    "NaN": (_with_values(np.nan), ValueError),
    "None": (lambda shape: None, TypeError),
    "a string": (lambda shape: "keep", TypeError),
    "strings": (lambda shape: np.full(shape, "a"), TypeError),
    "objects": (lambda shape: np.full(shape, object()), TypeError),
    # Bytes are not keep decisions, whichever bytes-like type holds them.
    "bytes": (lambda shape: b"\x01" * int(np.prod(shape)), TypeError),
    "a bytearray": (lambda shape: bytearray(b"\x01" * int(np.prod(shape))), TypeError),
    "a memoryview": (lambda shape: memoryview(b"\x01" * int(np.prod(shape))), TypeError),
    # A masked entry decides nothing; a fully masked array used to read as keep-all.
    "a fully masked array": (lambda shape: np.ma.masked_all(shape), TypeError),
    "a partly masked array": (
        lambda shape: np.ma.array(np.ones(shape), mask=np.arange(np.prod(shape)) % 2 == 0),
        TypeError,
    ),
    "a ragged list": (
        lambda shape: [[1] * shape[-1]] * (int(np.prod(shape[:-1])) - 1) + [[1] * 3],
        ValueError,
    ),
    "a torch tensor of 2s": (lambda shape: torch.full(shape, 2.0, requires_grad=True), ValueError),
}


@pytest.mark.parametrize("bad", list(BAD_ACTIONS))
def test_a_bad_action_raises_saying_what_was_expected_and_the_env_stays_usable(shell, bad):
    make_action, error = BAD_ACTIONS[bad]
    driver = Driver(shell)
    driver.reset(seed=0)
    shape = driver.action_shape
    with pytest.raises(error, match=f"keep masks? of shape {re.escape(str(shape))}"):
        driver.step_as_is(make_action(shape))
    *_, infos = driver.step(np.ones((driver.n, M), dtype=np.float32))
    assert all(info["teacher_step"] == 1 and info["iteration"] == 1 for info in infos)


@pytest.mark.parametrize(
    "dtype", [bool, np.int8, np.int64, np.float32, np.float64, "list", "tensor", "masked"]
)
def test_keep_masks_of_bool_int_float_or_a_list_are_accepted(shell, dtype):
    driver = Driver(shell)
    driver.reset(seed=0)
    mask = np.arange(M) % 3 != 0
    action = np.broadcast_to(mask, driver.action_shape)
    if dtype == "list":
        action = action.tolist()
    elif dtype == "tensor":  # torch's, with a gradient: a policy's output as it comes
        action = torch.tensor(action, dtype=torch.float32, requires_grad=True)
    elif dtype == "masked":  # a masked array with nothing masked is its data
        action = np.ma.array(action, mask=False)
    else:
        action = action.astype(dtype)
    *_, info = driver.step_as_is(action)
    kept = info["kept_instances"]
    assert np.all(np.asarray(kept) == mask.sum())


def test_check_keep_masks_returns_bool_masks_equal_to_the_ones_given():
    action = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    masks = check_keep_masks(action, (2, 3))
    assert masks.dtype == np.bool_
    np.testing.assert_array_equal(masks, action == 1)


def test_step_before_the_first_reset_needs_a_reset(shell):
    driver = Driver(shell)
    with pytest.raises(gym.error.ResetNeeded):
        driver.step(np.ones((driver.n, M)))


# -- info -------------------------------------------------------------------------------------
def test_the_info_counts_steps_instances_and_accuracies(shell):
    driver = Driver(shell, tau=1.0, max_iters=15)
    policy = keep_at_random(0.6, seed=3)
    obs, infos = driver.reset(seed=4)
    for i, info in enumerate(infos):
        assert set(info) == INFO_KEYS
        assert info["iteration"] == info["teacher_step"] == info["instances_seen"] == 0
        assert info["kept_instances"] == info["effective_instances"] == info["pool_size"] == 0
        assert info["clock"] == 0.0 and not info["reached_tau"] and not info["diverged"]
        assert info["dev_accuracy"] == info["best_dev_accuracy"]
        assert driver.run.dev_history[i] == [(0, info["dev_accuracy"])]
    kept = np.zeros(driver.n, dtype=int)
    for step in range(1, 16):
        keep = policy(obs)
        kept += keep.sum(axis=1)
        obs, _, terminated, truncated, infos = driver.step(keep)
        if (terminated | truncated).any():
            break
        for i, info in enumerate(infos):
            assert set(info) == INFO_KEYS  # the end's keys only at the end
            assert info["teacher_step"] == step and info["instances_seen"] == M * step
            assert info["kept_instances"] == kept[i]
            # Paper mode: whatever was kept has been trained on or waits in the pool.
            assert info["effective_instances"] == M * info["iteration"]
            assert info["kept_instances"] == info["effective_instances"] + info["pool_size"]
            assert info["clock"] == info["iteration"]
            history = [acc for _, acc in driver.run.dev_history[i]]
            assert info["dev_accuracy"] == history[-1]
            assert info["best_dev_accuracy"] == max(history)
    assert all(info["iteration"] > 3 for info in infos)


def test_paper_reward_is_zero_at_t_prime_and_grows_as_tau_comes_sooner():
    assert paper_reward(100.0, 100) == 0.0
    assert paper_reward(50.0, 100) == pytest.approx(math.log(2))
    assert paper_reward(10.0, 100) > paper_reward(20.0, 100) > 0.0


# -- determinism ------------------------------------------------------------------------------
def _same_episodes(a, b):
    assert len(a) == len(b)
    for episode_a, episode_b in zip(a, b, strict=True):
        assert len(episode_a) == len(episode_b)
        for x, y in zip(episode_a, episode_b, strict=True):
            np.testing.assert_array_equal(x.obs, y.obs)
            assert (x.reward, x.terminated, x.truncated, x.info) == (
                y.reward,
                y.terminated,
                y.truncated,
                y.info,
            )


def test_the_same_seed_and_actions_give_the_same_episodes(shell):
    def play(seed):
        return first_episodes(Driver(shell, max_iters=30), keep_at_random(0.7, seed=9), seed)

    a, b = play(5), play(5)
    _same_episodes(a, b)
    assert all(len(episode) > 5 for episode in a)
    assert not np.array_equal(a[0][0].obs, play(6)[0][0].obs)


def test_a_reset_without_a_seed_continues_the_stream_and_reseeding_repeats(shell):
    driver = Driver(shell)
    first, _ = driver.reset(seed=11)
    second, _ = driver.reset()
    assert all(not np.array_equal(first[i], second[i]) for i in range(driver.n))
    again, _ = driver.reset(seed=11)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_the_student_trains_under_no_grad_and_inference_mode(shell, context):
    driver = Driver(shell, tau=1.0, max_iters=5)
    with context():
        episodes = first_episodes(driver, keep_first(2 * M // 3), seed=0)
    assert all(episode[-1].info["iteration"] == 5 for episode in episodes)


# -- always safe to hold ----------------------------------------------------------------------
def _play_on(driver, keeps):
    out = []
    for keep in keeps:
        obs, rewards, *_ = driver.step(keep)
        out.append(obs)
    return out


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_taken_at_any_step_continues_as_the_original_would(shell, how):
    # Copied before the first reset, after it, after steps with and without a pending candidate
    # graph (keep-all reuses it), mid-pool and right after an episode ended: every copy plays the
    # next steps exactly as the original does.
    def duplicate(env):
        return copy.deepcopy(env) if how == "deepcopy" else pickle.loads(pickle.dumps(env))

    driver = Driver(shell, tau=1.0, max_iters=6)
    rng = np.random.default_rng(5)
    keeps = [np.broadcast_to(np.arange(M) < k, (driver.n, M)) for k in (32, 20, 32, 12, 32, 32)]
    keeps += [rng.random((driver.n, M)) < 0.7 for _ in range(8)]
    twin = copy.copy(driver)
    twin.env = duplicate(driver.env)  # before the first reset
    for d in (driver, twin):
        d.reset(seed=0)
    for t, keep in enumerate(keeps):
        if t % 2 == 0:
            twin = copy.copy(driver)
            twin.env = duplicate(driver.env)
        a, ra, ta, ua, _ = driver.step(keep)
        b, rb, *_ = twin.step(keep)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ra, rb)
        if shell == "single" and (ta[0] or ua[0]):  # the vector env resets itself
            driver.reset()
            twin.reset()


def test_a_copied_env_shares_the_dataset_instead_of_copying_it(shell):
    driver = Driver(shell)
    driver.reset(seed=0)
    twin = copy.deepcopy(driver.env)
    assert twin.unwrapped.run.data is driver.env.unwrapped.run.data
    assert (
        pickle.loads(pickle.dumps(driver.env)).unwrapped.run.data is driver.env.unwrapped.run.data
    )


# -- divergence --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"lr": 1e6}, {"lr": 1e4, "optimizer": "adam"}, {"lr": 1e10}])
def test_a_student_that_explodes_ends_its_episode_as_diverged_finite_or_not(shell, kwargs):
    if shell != "single" and "optimizer" in kwargs:
        pytest.skip("the vector env trains with SGD only")
    driver = Driver(shell, **kwargs)
    episodes = first_episodes(driver, keep_all, seed=0)
    for steps in episodes:
        last = steps[-1]
        assert last.terminated and not last.truncated and last.reward == 0.0
        assert last.info["diverged"] and not last.info["reached_tau"]
        assert last.info["iteration"] <= 3  # not the whole budget (T' = 100)
        for step in steps:  # finite and inside the space, to the last observation
            assert np.isfinite(step.obs).all() and driver.single_observation_space.contains(
                step.obs
            )


def test_divergence_loss_sets_where_a_finite_explosion_counts_as_divergence():
    # lr 1e4 makes the Digits student's average loss pass 100 ln 10 at once: with the rule set
    # out of reach only a non-finite loss would end the episode, and this one stays finite.
    ended = first_episodes(Driver("single", lr=1e4), keep_all, seed=0)[0][-1]
    assert ended.info["diverged"] and ended.info["iteration"] <= 3
    kept_on = first_episodes(Driver("single", lr=1e4, divergence_loss=math.inf), keep_all, seed=0)
    assert kept_on[0][-1].info["iteration"] > 3


def test_observations_stay_on_their_scale_through_healthy_and_diverged_episodes(shell):
    # What a normaliser sees: every column within the space's finite bounds, and the losses at
    # most divergence_loss, whatever the student does.
    for kwargs in ({}, {"lr": 1e8}):
        driver = Driver(shell, max_iters=20, **kwargs)
        for steps in first_episodes(driver, keep_at_random(0.7, seed=1), seed=2):
            for step in steps:
                assert driver.single_observation_space.contains(step.obs), kwargs
    low, high = driver.single_observation_space.low, driver.single_observation_space.high
    assert np.isfinite(low).all() and np.isfinite(high).all() and high.max() < 1e3


# -- reward="thresholds" ---------------------------------------------------------------------
WEIGHTS = (1 / 6, 1 / 3, 1 / 2)


def first_clocks(episode, taus) -> list[float]:
    """From the record alone: the clock of the first step (not the reset) whose dev accuracy
    reached each of ``taus``, NaN if none did."""
    return [
        next((s.info["clock"] for s in episode[1:] if s.info["dev_accuracy"] >= tau), math.nan)
        for tau in taus
    ]


def as_info(clocks, t_prime) -> list[float]:
    """``info["tau_clocks"]`` shows T' for a threshold not reached."""
    return [t_prime if math.isnan(c) else c for c in clocks]


def weighted_minus_logs(clocks, weights, t_prime) -> float:
    terms = zip(weights, clocks, strict=True)
    return sum(w * -math.log(c / t_prime) for w, c in terms if not math.isnan(c))


def test_thresholds_pay_the_weighted_minus_logs_of_the_first_clocks_at_the_highest_tau(shell):
    driver = Driver(shell, reward="thresholds")
    taus, t_prime = (0.85, 0.90, 0.93), driver.settings.max_iters
    assert driver.settings.taus == taus and driver.settings.tau == 0.93
    for episode in first_episodes(driver, keep_all, seed=0):
        last, info = episode[-1], episode[-1].info
        clocks = first_clocks(episode, taus)
        assert last.terminated and not last.truncated and info["reached_tau"]
        assert info["dev_accuracy"] >= 0.93 and clocks[2] == info["clock"] < t_prime
        np.testing.assert_array_equal(info["tau_clocks"], clocks)
        assert (
            info["tau_clocks"].dtype == np.float64
            and info["taus_reached"] == 3
            and clocks[0] <= clocks[1] <= clocks[2]
        )
        assert last.reward == pytest.approx(weighted_minus_logs(clocks, WEIGHTS, t_prime))
        assert last.reward > 0.0 and all(step.reward == 0.0 for step in episode[:-1])
        # The clocks show up as they are reached, NaN before.
        for step in episode[:-1]:
            reached = [c <= step.info["clock"] for c in clocks]
            assert step.info["taus_reached"] == sum(reached)
            shown = [c if r else t_prime for c, r in zip(clocks, reached, strict=True)]
            np.testing.assert_array_equal(step.info["tau_clocks"], shown)


def test_thresholds_never_reached_add_nothing_and_t_prime_ends_the_episode(shell):
    taus, weights = (0.5, 0.8, 1.0), (1.0, 2.0, 3.0)
    driver = Driver(shell, reward="thresholds", taus=taus, tau_weights=weights, max_iters=40)
    for episode in first_episodes(driver, keep_all, seed=1):
        last, info = episode[-1], episode[-1].info
        clocks = first_clocks(episode, taus)
        assert last.terminated and not info["reached_tau"] and info["iteration"] == 40
        assert not math.isnan(clocks[1]) and math.isnan(clocks[2])  # 0.5 and 0.8, never 1.0
        np.testing.assert_array_equal(info["tau_clocks"], as_info(clocks, 40))
        assert info["taus_reached"] == 2
        expected = -math.log(clocks[0] / 40) - 2 * math.log(clocks[1] / 40)
        assert last.reward == pytest.approx(expected) and last.reward > 0.0
        assert all(step.reward == 0.0 for step in episode[:-1])


def test_thresholds_reached_before_a_truncation_are_paid_at_the_truncation(shell):
    steps = iter(range(10**6))
    train_then_drop = lambda obs: np.full(obs.shape[:2], next(steps) < 15)  # noqa: E731
    driver = Driver(
        shell, reward="thresholds", taus=(0.5, 1.0), tau_weights=(2.0, 1.0), max_teacher_steps=30
    )
    for episode in first_episodes(driver, train_then_drop, seed=2):
        last, info = episode[-1], episode[-1].info
        clock = first_clocks(episode, (0.5,))[0]
        assert last.truncated and not last.terminated and len(episode) == 31
        assert 1 <= clock <= 15 and info["taus_reached"] == 1
        assert last.reward == pytest.approx(2 * -math.log(clock / 100))
        assert all(step.reward == 0.0 for step in episode[:-1])


def test_thresholds_reached_before_a_divergence_are_paid_when_it_ends_the_episode(shell):
    # lr 1e10 explodes the student within a few steps; its first dev evaluation still finds
    # some instances right, past a threshold of 1%.
    driver = Driver(shell, reward="thresholds", taus=(0.01, 1.0), tau_weights=(1.0, 1.0), lr=1e10)
    for episode in first_episodes(driver, keep_all, seed=0):
        last, info = episode[-1], episode[-1].info
        clock = first_clocks(episode, (0.01,))[0]
        assert info["diverged"] and last.terminated and not info["reached_tau"]
        assert clock == 1.0 and info["taus_reached"] == 1
        assert last.reward == pytest.approx(-math.log(1 / 100))
        assert all(step.reward == 0.0 for step in episode[:-1])


def test_the_paper_reward_is_thresholds_reward_of_tau_alone_and_its_info_has_no_tau_clocks():
    env = Driver("single")
    episode = first_episodes(env, keep_all, seed=3)[0]
    assert set(episode[-1].info) == INFO_KEYS | {"final_dev_accuracy"}
    clock = episode[-1].info["clock"]
    assert thresholds_reward([clock], [1.0], 100) == paper_reward(clock, 100) == episode[-1].reward
    assert thresholds_reward([100.0, 5.0], [1.0, 0.5], 100) == 0.5 * paper_reward(5.0, 100)
    reward = thresholds_reward([100.0], [1.0], 100)
    assert reward == 0.0 and math.copysign(1.0, reward) == 1.0  # +0.0, as the paper's


# -- rules only the single env has --------------------------------------------------------------
def test_report_test_eval_measures_test_accuracy_at_every_dev_evaluation():
    # Single env only: the vector env reports test accuracy at the end (report_test=True).
    def play(report_test):
        driver = Driver("single", tau=1.0, max_iters=10, eval_every=3, report_test=report_test)
        return first_episodes(driver, keep_first(M // 2), seed=4)[0]

    episode = play("eval")
    first = episode[0].info
    assert 0.0 <= first["test_accuracy"] <= 1.0 and first["test_seconds"] > 0.0
    for before, after in zip(episode, episode[1:], strict=False):
        b, a = before.info, after.info
        tested = a["test_seconds"] > b["test_seconds"]
        evaluated = a["iteration"] != b["iteration"] and a["iteration"] % 3 == 0
        # T' = 10 is off the grid of 3: the end evaluates once more, dev and test alike.
        assert tested == (evaluated or a["iteration"] == 10), a
        if not tested:
            assert a["test_accuracy"] == b["test_accuracy"]
    # The same final student as report_test=True measures (same seed, same actions).
    at_end = play(True)
    assert episode[-1].info["test_accuracy"] == at_end[-1].info["test_accuracy"]
    assert "test_seconds" not in at_end[-1].info and "test_accuracy" not in at_end[0].info
