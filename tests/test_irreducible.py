"""The irreducible losses behind the optional ``irreducible_loss`` column
(``l2t_gym.data.irreducible``): the fold's training instances only, cross-fitted, deterministic,
fitted once per dataset and fold in a process, and read by the env as a gather."""

from __future__ import annotations

import numpy as np
import torch
from driver import Driver

from l2t_gym.data import irreducible, load_raw
from l2t_gym.data.irreducible import (
    cross_fit_halves,
    fit_linear,
    instance_losses,
    irreducible_losses,
)
from l2t_gym.data.raw import RawData
from l2t_gym.settings import Settings


def _table(data: RawData | None = None, fold: str = "teacher"):
    settings = Settings.resolve("digits", device="cpu", data=data, fold=fold)
    device_data = settings.load_data()
    f = settings.fold_of(device_data)
    return irreducible_losses(device_data, f), f, device_data


def test_only_the_folds_training_instances_are_scored():
    table, fold, _ = _table()
    assert table.dtype == np.float32 and not table.flags.writeable
    assert np.isfinite(table[fold.train]).all() and (table[fold.train] >= 0).all()
    assert np.isnan(np.delete(table, fold.train)).all()  # dev set and the other fold: never


def test_changing_the_dev_and_test_instances_changes_nothing():
    raw = load_raw("digits", None, False)
    _, fold, _ = _table()
    x = raw.x_train.numpy().copy()
    x[fold.dev] = np.random.default_rng(0).random(x[fold.dev].shape)  # dev inputs replaced
    other_fold = np.setdiff1d(np.arange(len(x)), np.concatenate([fold.train, fold.dev]))
    x[other_fold] = 0.0  # and the other fold's
    changed = RawData.from_arrays(
        x, raw.y_train.numpy(), raw.x_test.numpy()[::-1].copy() * 0.5, raw.y_test.numpy(), 10
    )
    original, _, _ = _table()
    table, _, _ = _table(changed)
    np.testing.assert_array_equal(table[fold.train], original[fold.train])


def test_each_half_is_scored_by_the_model_fitted_on_the_other_half():
    table, fold, data = _table()
    first, second = cross_fit_halves(fold.train, data.y_train_host)
    assert len(np.intersect1d(first, second)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([first, second])), fold.train)
    # stratified: each class splits evenly
    counts = [np.bincount(data.y_train_host[h], minlength=10) for h in (first, second)]
    assert np.abs(counts[0] - counts[1]).max() <= 1
    for fit_on, scored in ((second, first), (first, second)):
        model = fit_linear(data.x_train[fit_on], data.y_train[fit_on], 10, None)
        losses = instance_losses(model, data.x_train[scored], data.y_train[scored])
        np.testing.assert_array_equal(table[scored], losses)
        own = fit_linear(data.x_train[scored], data.y_train[scored], 10, None)
        # A model that trained on the instances would give them lower losses: not what we use.
        assert instance_losses(own, data.x_train[scored], data.y_train[scored]).mean() < (
            losses.mean()
        )


def test_the_losses_are_deterministic_and_leave_torchs_generator_alone():
    first, fold, data = _table(fold="student")
    irreducible._CACHE.clear()
    state = torch.random.get_rng_state()
    again = irreducible_losses(data, fold)
    assert again is not first
    np.testing.assert_array_equal(again, first)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_a_second_env_in_the_process_does_not_refit():
    one = Driver("single", extra_features=("irreducible_loss",))
    one.reset(seed=0)
    fits = irreducible.fits
    two = Driver("vector-3", extra_features=("irreducible_loss",))
    two.reset(seed=1)
    assert irreducible.fits == fits
    assert one.env._episodes._irreducible is two.env._episodes._irreducible


def test_the_env_column_is_the_table_gathered_by_index_and_capped(shell):
    cap = 2.5  # above a fresh student's average loss (ln 10), below some irreducible losses
    driver = Driver(shell, divergence_loss=cap, extra_features=("irreducible_loss", "loss_rank"))
    column = driver.column("irreducible_loss")
    obs, _ = driver.reset(seed=2)
    table, _, _ = _table()
    capped = False
    for _ in range(8):
        indices = driver.run.candidate.indices
        np.testing.assert_array_equal(obs[:, :, column], np.minimum(table[indices], cap))
        capped |= bool((table[indices] > cap).any())
        obs, _, terminated, *_ = driver.step(np.ones((driver.n, 32)))
        assert not terminated.any()
    assert capped  # the cap did something


def test_the_text_model_learns_from_token_ids_and_ignores_padding():
    # Two classes told apart by one word each (ids 5 and 6) among shared filler words (ids
    # 2-4), with padding (id 0) at the end of each review, as the IMDB loader lays them out.
    rng = np.random.default_rng(0)
    n, length = 400, 12
    y = np.arange(n) % 2
    x = rng.integers(2, 5, size=(n, length))
    x[np.arange(n), rng.integers(0, 6, n)] = 5 + y
    x[:, 8:] = 0
    x, y = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    model = fit_linear(x[:200], y[:200], num_classes=2, vocab_size=7)
    held_out = instance_losses(model, x[200:], y[200:])
    assert held_out.mean() < 0.8 * np.log(2)  # below a uniform guess on unseen reviews
    with torch.inference_mode():
        accuracy = (model(x[200:]).argmax(1) == y[200:]).float().mean()
        assert accuracy > 0.85  # (0.92 here: 200 short reviews, a linear model)
        padded = torch.cat([x[200:], torch.zeros(200, 20, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model(padded), model(x[200:]))
