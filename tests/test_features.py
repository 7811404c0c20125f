"""g(s), the state features (``l2t_gym.features``): column names and layout, bounds, the combined
features against the student's own softmax, a diverged student's sanitised row, and ``observe``
for one student and for many."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from driver import Driver, first_episodes, keep_all

from l2t_gym.features import (
    EXTRA_FEATURES,
    MODEL_FEATURES,
    ExtraInputs,
    build_features,
    check_extra_features,
    extra_columns,
    feature_bounds,
    feature_names,
    observe,
    scaled_rank,
)
from l2t_gym.student import Candidate

BIG = float(np.finfo(np.float32).max)


# -- columns ----------------------------------------------------------------------------------
def test_the_columns_are_labels_extras_model_features_probabilities_loss_and_margin():
    names = feature_names(10)
    assert len(names) == 25  # the paper's d for 10 classes
    assert names[:10] == tuple(f"label_{c}" for c in range(10))
    assert names[10:13] == ("iteration", "avg_train_loss", "best_dev_accuracy") == MODEL_FEATURES
    assert names[13:23] == tuple(f"prob_{c}" for c in range(10))
    assert names[23:] == ("loss", "margin")
    text = feature_names(2, ("review_length",))
    assert text == (
        "label_0",
        "label_1",
        "review_length",
        *MODEL_FEATURES,
        "prob_0",
        "prob_1",
        "loss",
        "margin",
    )


def test_the_bounds_give_each_column_its_range():
    names = feature_names(3, ("length",))
    low, high = feature_bounds(3, 1, loss_cap=50.0)
    assert low.shape == high.shape == (len(names),) and low.dtype == np.float32
    bounds = dict(zip(names, zip(low.tolist(), high.tolist(), strict=True), strict=True))
    for name in ("label_0", "label_2", "length", "iteration", "best_dev_accuracy", "prob_0"):
        assert bounds[name] == (0.0, 1.0), name
    for name in ("avg_train_loss", "loss"):
        assert bounds[name] == (0.0, 50.0), name
    assert bounds["margin"] == (-1.0, 1.0)
    # No cap (divergence_loss=inf): the largest float32 stands for it, never an infinite bound.
    low, high = feature_bounds(3, 1)
    assert np.isfinite(high).all() and high[names.index("loss")] == BIG


def test_an_instance_loss_is_clipped_at_the_cap():
    logits = np.array([[0.0, 300.0], [1.0, 0.0]], dtype=np.float32)  # p_y = e^-300 for row 0
    out = build_features(logits, np.array([0, 0]), 0.5, 1.0, 0.5, loss_cap=100.0)
    loss = out[:, feature_names(2).index("loss")]
    assert loss[0] == 100.0 and loss[1] == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    uncapped = build_features(logits, np.array([0, 0]), 0.5, 1.0, 0.5)
    assert uncapped[0, feature_names(2).index("loss")] == pytest.approx(300.0)
    # Without a cap, finite logits whose spread passes float32's range give an infinite loss:
    # it is clipped at the largest float32, the column's bound.
    spread = np.array([[3e38, -3e38]], dtype=np.float32)
    with np.errstate(over="ignore"):
        wild = build_features(spread, np.array([1]), 0.5, 1.0, 0.5)
    assert wild[0, feature_names(2).index("loss")] == BIG


# -- build_features ---------------------------------------------------------------------------
def _random_batch(m=16, c=10, k=0, seed=0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(m, c)) * 4).astype(np.float32)
    labels = rng.integers(c, size=m)
    extras = rng.random((m, k)).astype(np.float32) if k else None
    return logits, labels, extras


def test_probabilities_loss_and_margin_are_the_softmax_cross_entropy_and_margin():
    logits, labels, extras = _random_batch(k=2)
    obs = build_features(logits, labels, 0.25, 1.5, 0.75, extras)
    c, names = 10, feature_names(10, ("a", "b"))
    assert obs.shape == (16, len(names)) and obs.dtype == np.float32
    col = {name: j for j, name in enumerate(names)}
    np.testing.assert_array_equal(obs[:, :c], np.eye(c)[labels])
    np.testing.assert_array_equal(obs[:, col["a"] : col["b"] + 1], extras)
    np.testing.assert_array_equal(
        obs[:, col["iteration"] : col["best_dev_accuracy"] + 1],
        np.broadcast_to(np.float32([0.25, 1.5, 0.75]), (16, 3)),
    )
    t_logits, t_labels = torch.from_numpy(logits).double(), torch.from_numpy(labels)
    probs = torch.softmax(t_logits, 1).numpy()
    np.testing.assert_allclose(obs[:, col["prob_0"] : col["prob_9"] + 1], probs, atol=1e-6)
    loss = F.cross_entropy(t_logits, t_labels, reduction="none").numpy()
    np.testing.assert_allclose(obs[:, col["loss"]], loss, rtol=1e-5, atol=1e-6)
    p_true = probs[np.arange(16), labels]
    others = np.where(np.eye(c, dtype=bool)[labels], -np.inf, probs)
    np.testing.assert_allclose(obs[:, col["margin"]], p_true - others.max(1), atol=1e-6)


def test_the_loss_stays_finite_and_exact_where_p_y_underflows():
    logits = np.array([[0.0, 200.0], [300.0, -300.0]], dtype=np.float32)
    obs = build_features(logits, np.array([0, 1]), 0.0, 0.0, 0.0)
    probs, loss, margin = obs[:, 5:7], obs[:, 7], obs[:, 8]
    assert probs[0, 0] == 0.0 and probs[1, 1] == 0.0  # p_y underflows in float32 ...
    np.testing.assert_allclose(loss, [200.0, 600.0], rtol=1e-6)  # ... -log p_y does not
    np.testing.assert_array_equal(margin, [-1.0, -1.0])


def test_model_features_given_per_row_equal_the_same_values_given_once():
    logits, labels, _ = _random_batch(m=5, c=3)
    once = build_features(logits, labels, 0.5, 2.0, 0.3)
    per_row = build_features(logits, labels, np.full(5, 0.5), np.full(5, 2.0), np.full(5, 0.3))
    np.testing.assert_array_equal(once, per_row)


# -- observe ----------------------------------------------------------------------------------
def _candidate(n=3, m=8, c=4, k=1, seed=0, diverged=None):
    rng = np.random.default_rng(seed)
    return Candidate(
        indices=rng.integers(1000, size=(n, m)),
        labels=rng.integers(c, size=(n, m)),
        extras=rng.random((n, m, k)).astype(np.float32) if k else None,
        logits=(rng.normal(size=(n, m, c)) * 3).astype(np.float32),
        avg_train_loss=rng.random(n) + 0.5,
        diverged=np.zeros(n, dtype=bool) if diverged is None else diverged,
    )


def _one(candidate, i):
    """Student i's part of a candidate, as a candidate of one."""
    return Candidate(
        **{
            name: None if getattr(candidate, name) is None else getattr(candidate, name)[i : i + 1]
            for name in Candidate.__slots__
        }
    )


@pytest.mark.parametrize("k", [0, 1])
def test_observing_n_students_equals_observing_each_alone(k):
    candidate = _candidate(k=k)
    progress, best = np.array([0.0, 0.5, 1.0]), np.array([0.1, 0.6, 0.9])
    together = observe(candidate, progress, best)
    assert together.shape == (3, 8, 2 * 4 + 5 + k) and together.dtype == np.float32
    for i in range(3):
        alone = observe(_one(candidate, i), progress[i : i + 1], best[i : i + 1])
        np.testing.assert_array_equal(together[i], alone[0])
        expected = build_features(
            candidate.logits[i],
            candidate.labels[i],
            progress[i],
            candidate.avg_train_loss[i],
            best[i],
            None if k == 0 else candidate.extras[i],
        )
        np.testing.assert_array_equal(alone[0], expected)


@pytest.mark.parametrize("n", [1, 3])
def test_a_diverged_students_rows_read_as_a_uniform_guess_with_the_loss_cap_as_average(n):
    diverged = np.arange(n) == n - 1
    candidate = _candidate(n=n, k=1, diverged=diverged)
    candidate.logits[n - 1, 0] = np.nan
    candidate.logits[n - 1, 1] = np.inf
    candidate.avg_train_loss[n - 1] = np.inf
    obs = observe(candidate, np.full(n, 0.4), np.full(n, 0.7), loss_cap=60.0)
    names = feature_names(4, ("extra",))
    low, high = feature_bounds(4, 1, loss_cap=60.0)
    assert np.isfinite(obs).all() and (obs >= low).all() and (obs <= high).all()
    bad = obs[n - 1]
    np.testing.assert_array_equal(bad[:, names.index("prob_0") : names.index("prob_3") + 1], 0.25)
    np.testing.assert_allclose(bad[:, names.index("loss")], math.log(4), rtol=1e-6)
    np.testing.assert_array_equal(bad[:, names.index("margin")], 0.0)
    assert (bad[:, names.index("avg_train_loss")] == 60.0).all()
    # Labels, extras and the other model features still say what they say.
    np.testing.assert_array_equal(bad[:, :4], np.eye(4)[candidate.labels[n - 1]])
    np.testing.assert_array_equal(bad[:, 4], candidate.extras[n - 1, :, 0])
    assert (bad[:, names.index("best_dev_accuracy")] == np.float32(0.7)).all()
    for i in range(n - 1):  # the healthy students' rows are untouched
        alone = observe(_one(candidate, i), np.full(1, 0.4), np.full(1, 0.7), loss_cap=60.0)
        np.testing.assert_array_equal(obs[i], alone[0])


# -- the features of an env's student ---------------------------------------------------------
def test_the_observation_reads_the_students_own_softmax_on_the_candidate_batch():
    driver = Driver("single")
    obs, _ = driver.reset(seed=4)
    for step in range(4):
        if step:
            obs, *_ = driver.step(np.arange(32)[None] % (step + 1) != 0)
        run = driver.run
        idx = torch.from_numpy(run.candidate.indices[0])  # the batch just proposed
        x, y = run.data.x_train[idx], run.data.y_train[idx]
        with torch.no_grad():
            logits = run.students.modules[0](x)
        np.testing.assert_array_equal(obs[0, :, :10].argmax(1), y.numpy())
        probs = torch.softmax(logits, 1).numpy()
        np.testing.assert_allclose(obs[0, :, 13:23], probs, rtol=1e-5, atol=1e-6)
        loss = F.cross_entropy(logits, y, reduction="none").numpy()
        np.testing.assert_allclose(obs[0, :, driver.column("loss")], loss, rtol=1e-5, atol=1e-5)


def test_the_model_features_follow_the_students_run(shell):
    driver = Driver(shell, tau=1.0, max_iters=40)
    iteration, loss, best = (driver.column(name) for name in MODEL_FEATURES)
    obs, infos = driver.reset(seed=0)
    assert (obs[:, :, iteration] == 0.0).all()
    assert np.allclose(obs[:, :, loss], math.log(10))  # before any update: a uniform guess
    first = obs[:, 0, best].copy()
    assert first.tolist() == pytest.approx([info["best_dev_accuracy"] for info in infos])
    losses = []
    for k in range(1, 31):
        obs, *_, infos = driver.step(np.ones((driver.n, 32)))
        for i, info in enumerate(infos):
            assert (obs[i, :, iteration] == np.float32(k / 40)).all()
            assert (obs[i, :, best] == np.float32(info["best_dev_accuracy"])).all()
            # Mean of the minibatch losses so far, as the run's loss sum says.
            assert obs[i, 0, loss] == pytest.approx(float(driver.run.loss_sum[i]) / k, rel=1e-5)
        losses.append(obs[:, 0, loss])
    assert (losses[-1] < 0.75 * losses[0]).all()  # the student learns, the mean falls
    assert (obs[:, 0, best] > first + 0.3).all()


def test_the_iteration_feature_saturates_at_one_when_the_clock_runs_past_t_prime(shell):
    driver = Driver(shell, tau=1.0, max_iters=10, candidate_cost=0.3)
    for episode in first_episodes(driver, keep_all, seed=0):
        last = episode[-1]
        assert last.info["clock"] > 10  # 8 iterations + 0.3 x 8 candidate batches
        assert (last.obs[:, driver.column("iteration")] == 1.0).all()
        before = episode[-2]
        assert before.obs[0, driver.column("iteration")] == pytest.approx(before.info["clock"] / 10)


# -- optional columns (extra_features) --------------------------------------------------------
ALL_EXTRAS = tuple(EXTRA_FEATURES)


def test_optional_columns_follow_the_papers_in_the_order_given_and_have_their_bounds():
    names = feature_names(3, ("length",), ("kept_fraction", "loss_rank", "irreducible_loss"))
    assert names[: len(feature_names(3, ("length",)))] == feature_names(3, ("length",))
    assert names[-3:] == ("kept_fraction", "loss_rank", "irreducible_loss")
    low, high = feature_bounds(3, 1, 50.0, ("kept_fraction", "loss_rank", "irreducible_loss"))
    plain_low, plain_high = feature_bounds(3, 1, 50.0)
    np.testing.assert_array_equal(low[:-3], plain_low)
    np.testing.assert_array_equal(high[:-3], plain_high)
    assert low[-3:].tolist() == [0.0, 0.0, 0.0] and high[-3:].tolist() == [1.0, 1.0, 50.0]
    for name, entry in EXTRA_FEATURES.items():  # each documents itself
        assert entry.definition and entry.source, name


def test_scaled_rank_gives_ties_their_average_rank_and_a_batch_of_one_a_rank_of_one():
    ranks = scaled_rank(np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]))
    np.testing.assert_allclose(ranks[0], [1 / 3, 2.5 / 3, 2.5 / 3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(ranks[1], 0.5)
    assert scaled_rank(np.array([[7.0], [-1.0]])).tolist() == [[1.0], [1.0]]
    shuffled = scaled_rank(np.array([[3.0, 0.0, 1.0, 3.0]]))  # the order of rows does not matter
    np.testing.assert_allclose(shuffled[0], [2.5 / 3, 0.0, 1 / 3, 2.5 / 3], rtol=1e-6)


def _inputs(**changes):
    base = dict(
        loss=np.array([[0.5, 2.0, 0.1], [1.0, 1.0, 3.0]]),
        margin=np.array([[0.3, -0.4, 0.9], [0.0, 0.2, 0.2]]),
        kept_instances=[30, 900],
        instance_budget=10 * 3,
        dev_accuracy_sum=[1.5, 0.25],
        dev_evaluations=[3, 1],
        indices=np.array([[0, 2, 4], [4, 1, 3]]),
        irreducible_loss=np.float32([0.5, 9.0, 2.0, np.nan, 100.0]),
        loss_cap=20.0,
        mean_shown_loss=np.array([1.5, np.nan]),  # student 1 is at its first step
        last_visit_loss=np.array([[0.5, 6.0, np.nan], [0.0, 3.0, 0.0]]),
    )
    return ExtraInputs(**{**base, **changes})


def test_each_optional_column_is_its_definition_on_a_hand_made_batch():
    out = extra_columns(ALL_EXTRAS, _inputs())
    assert out.shape == (2, 3, len(ALL_EXTRAS)) and out.dtype == np.float32
    col = {name: out[:, :, j] for j, name in enumerate(ALL_EXTRAS)}
    # Loss rank: 1 for the highest loss; the tied losses of student 1 share ranks 0 and 1.
    np.testing.assert_array_equal(col["loss_rank"], [[0.5, 1.0, 0.0], [0.25, 0.25, 1.0]])
    # Margin rank: 1 for the highest margin.
    np.testing.assert_array_equal(col["margin_rank"], [[0.5, 0.0, 1.0], [0.0, 0.75, 0.75]])
    # Kept so far over T' x M = 30, clipped at 1; the same on every row of a student.
    np.testing.assert_array_equal(col["kept_fraction"], [[1.0] * 3, [1.0] * 3])
    few = extra_columns(("kept_fraction",), _inputs(kept_instances=[6, 0]))
    np.testing.assert_allclose(few[:, :, 0], [[0.2] * 3, [0.0] * 3])
    np.testing.assert_allclose(col["mean_dev_accuracy"], [[0.5] * 3, [0.25] * 3])
    # Per instance, looked up by index, clipped at the loss cap (100 -> 20).
    np.testing.assert_array_equal(col["irreducible_loss"], [[0.5, 2.0, 20.0], [20.0, 9.0, np.nan]])
    # loss / (loss + mean shown so far): 0.5 / 2, 2 / 3.5, 0.1 / 1.6; no mean yet gives 0.5.
    np.testing.assert_allclose(
        col["loss_vs_mean"], [[0.25, 2 / 3.5, 0.1 / 1.6], [0.5, 0.5, 0.5]], rtol=1e-6
    )
    # loss / (loss + last visit's): unchanged 0.5, learned 0.25, first visit 0.5; a loss that
    # rose from 0 gives 1, a loss that was and is 0 gives 0.5.
    np.testing.assert_allclose(col["loss_change"], [[0.5, 0.25, 0.5], [1.0, 0.25, 1.0]], rtol=1e-6)
    zero = extra_columns(
        ("loss_change", "loss_vs_mean"),
        _inputs(loss=np.zeros((2, 3)), mean_shown_loss=np.array([0.0, 1.0])),
    )
    # A loss now 0: learned (0) where the last one was positive, 0.5 where it was 0 or unknown.
    np.testing.assert_array_equal(zero[:, :, 0], [[0.0, 0.0, 0.5], [0.5, 0.0, 0.5]])
    np.testing.assert_array_equal(zero[:, :, 1], [[0.5] * 3, [0.0] * 3])
    with pytest.raises(ValueError, match="loss_change"):
        extra_columns(("loss_change",), _inputs(last_visit_loss=None))
    with pytest.raises(ValueError, match="loss_vs_mean"):
        extra_columns(("loss_vs_mean",), _inputs(mean_shown_loss=None))


def test_check_extra_features_refuses_what_is_not_a_tuple_of_known_unique_names():
    assert check_extra_features(["loss_rank", "kept_fraction"]) == ("loss_rank", "kept_fraction")
    assert check_extra_features(()) == ()
    with pytest.raises(TypeError, match="extra_features.*loss_rank, margin_rank"):
        check_extra_features("loss_rank")
    with pytest.raises(TypeError, match="extra_features"):
        check_extra_features((1,))
    with pytest.raises(ValueError, match="extra_features.*'rank'.*available: loss_rank"):
        check_extra_features(("rank",))
    with pytest.raises(ValueError, match="extra_features.*repeat"):
        check_extra_features(("loss_rank", "loss_rank"))


def test_the_default_observation_is_the_papers_and_extras_only_add_columns():
    plain = Driver("single")
    extended = Driver("single", extra_features=ALL_EXTRAS)
    assert extended.feature_names == (*plain.feature_names, *ALL_EXTRAS)
    assert plain.env.observation_space.shape == (32, 25)
    assert extended.env.observation_space.shape == (32, 25 + len(ALL_EXTRAS))
    a, _ = plain.reset(seed=3)
    b, _ = extended.reset(seed=3)
    for _ in range(3):
        np.testing.assert_array_equal(a, b[..., :25])
        a, *_ = plain.step(np.ones((1, 32)))
        b, *_ = extended.step(np.ones((1, 32)))


def test_kept_fraction_and_mean_dev_accuracy_follow_the_episode(shell):
    driver = Driver(shell, max_iters=20, eval_every=2, tau=1.0, extra_features=ALL_EXTRAS)
    kept, mean_dev = driver.column("kept_fraction"), driver.column("mean_dev_accuracy")
    loss, loss_rank = driver.column("loss"), driver.column("loss_rank")
    obs, _ = driver.reset(seed=1)
    assert (obs[:, :, kept] == 0.0).all()
    total = np.zeros(driver.n)
    for step in range(1, 9):
        keep = np.arange(32)[None].repeat(driver.n, 0) < 4 * step + np.arange(driver.n)[:, None]
        total += keep.sum(1)
        obs, *_ = driver.step(keep)
        for i in range(driver.n):
            np.testing.assert_allclose(obs[i, :, kept], total[i] / (20 * 32), rtol=1e-6)
            history = [acc for _, acc in driver.run.dev_history[i]]
            np.testing.assert_allclose(obs[i, :, mean_dev], np.mean(history), rtol=1e-6)
            ranks = scaled_rank(obs[i : i + 1, :, loss])[0]
            np.testing.assert_allclose(obs[i, :, loss_rank], ranks)
    # Several evaluations were averaged, and their mean differs from the best so far.
    assert all(len(h) >= 3 for h in driver.run.dev_history)
    assert (obs[:, 0, mean_dev] < obs[:, 0, driver.column("best_dev_accuracy")]).all()


def test_loss_vs_mean_and_loss_change_read_the_episodes_loss_history(shell):
    driver = Driver(shell, max_iters=30, tau=1.0, extra_features=("loss_vs_mean", "loss_change"))
    loss, vs_mean, change = (driver.column(c) for c in ("loss", "loss_vs_mean", "loss_change"))
    obs, _ = driver.reset(seed=4)
    n = driver.n
    assert (obs[:, :, vs_mean] == 0.5).all() and (obs[:, :, change] == 0.5).all()
    shown = [[] for _ in range(n)]  # every loss shown at a step, per student
    last = [{} for _ in range(n)]  # instance -> its loss at its last step
    revisits = 0
    for step in range(40):  # Digits' teacher fold has a few hundred instances: some come back
        idx = driver.run.candidate.indices
        for i in range(n):
            shown[i].extend(obs[i, :, loss].tolist())
            last[i].update(zip(idx[i].tolist(), obs[i, :, loss].tolist(), strict=True))
        keep = np.arange(32)[None].repeat(n, 0) % 3 == step % 3
        obs, *_ = driver.step(keep)
        idx = driver.run.candidate.indices
        for i in range(n):
            now = obs[i, :, loss].astype(np.float64)
            mean = np.mean(shown[i])
            np.testing.assert_allclose(obs[i, :, vs_mean], now / (now + mean), rtol=1e-5)
            before = np.array([last[i].get(j, np.nan) for j in idx[i].tolist()])
            seen = ~np.isnan(before)
            revisits += seen.sum()
            expected = np.where(seen, now / (now + np.where(seen, before, 1.0)), 0.5)
            np.testing.assert_allclose(obs[i, :, change], expected, rtol=1e-5)
    assert revisits > 0
    # A new episode forgets the history.
    obs, _ = driver.reset(seed=5)
    assert (obs[:, :, vs_mean] == 0.5).all() and (obs[:, :, change] == 0.5).all()


def test_the_loss_history_starts_afresh_with_each_autoreset_episode():
    # Three students that keep different shares end their episodes at different steps. The
    # step after an end restarts that student (its action ignored, its last batch never acted
    # on) with an empty history, and leaves the others' alone.
    extra = ("loss_vs_mean", "loss_change")
    driver = Driver("vector-3", max_iters=6, tau=1.0, extra_features=extra)
    loss, vs_mean, change = (driver.column(c) for c in ("loss", *extra))
    obs, _ = driver.reset(seed=9)
    shown = [[] for _ in range(3)]
    last = [{} for _ in range(3)]
    restarting, restarts = [False] * 3, 0
    share = np.array([32, 16, 6])[:, None]
    for _ in range(60):
        idx = driver.run.candidate.indices
        for i in range(3):
            if not restarting[i]:
                shown[i].extend(obs[i, :, loss].tolist())
                last[i].update(zip(idx[i].tolist(), obs[i, :, loss].tolist(), strict=True))
        obs, _, terminated, truncated, _ = driver.step(np.arange(32)[None] < share)
        idx = driver.run.candidate.indices
        for i in range(3):
            if restarting[i]:
                shown[i], last[i], restarting[i] = [], {}, False
            now = obs[i, :, loss].astype(np.float64)
            mean = np.mean(shown[i]) if shown[i] else np.nan
            expected = now / (now + mean) if shown[i] else np.full(32, 0.5)
            np.testing.assert_allclose(obs[i, :, vs_mean], expected, rtol=1e-6)
            before = np.array([last[i].get(j, np.nan) for j in idx[i].tolist()])
            seen = ~np.isnan(before)
            expected = np.where(seen, now / (now + np.where(seen, before, 1.0)), 0.5)
            np.testing.assert_allclose(obs[i, :, change], expected, rtol=1e-6)
            if terminated[i] or truncated[i]:
                restarting[i] = True
                restarts += 1
    assert min(restarts, *(len(s) for s in shown)) > 0 and restarts >= 6


def test_the_single_and_the_vector_env_give_the_same_optional_columns():
    single = Driver("single", extra_features=ALL_EXTRAS)
    vector = Driver("vector-1", extra_features=ALL_EXTRAS)
    a, _ = single.reset(seed=7)
    b, _ = vector.reset(seed=7)
    for step in range(6):
        np.testing.assert_allclose(
            a[..., -len(ALL_EXTRAS) :], b[..., -len(ALL_EXTRAS) :], atol=1e-5
        )
        keep = np.arange(32)[None] % (step + 2) != 0
        a, *_ = single.step(keep)
        b, *_ = vector.step(keep)


def test_optional_columns_of_a_diverged_student_stay_inside_the_bounds(shell):
    driver = Driver(shell, lr=1e8, extra_features=ALL_EXTRAS)
    space = driver.single_observation_space
    obs, _ = driver.reset(seed=0)
    diverged = False
    for _ in range(6):
        obs, _, terminated, truncated, infos = driver.step(np.ones((driver.n, 32)))
        for i in range(driver.n):
            assert space.contains(obs[i]), i
        diverged |= any(info.get("diverged", False) for info in infos)
        if driver.shell == "single" and (terminated[0] or truncated[0]):
            obs, _ = driver.reset()
            assert space.contains(obs[0])
    assert diverged


def test_scaled_rank_of_one_row_equals_its_rank_among_many_rows():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.integers(0, 6, size=(3, 9)).astype(np.float32)  # many ties
        together = scaled_rank(values)
        for i in range(3):
            np.testing.assert_array_equal(scaled_rank(values[i : i + 1])[0], together[i])
