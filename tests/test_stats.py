"""The significance tests on inputs whose answers are known or computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from l2t_gym.stats import paired_ttest, welch_ttest


def test_paired_ttest_by_hand():
    # d = a - b = 0, 1, 2, 3, 4: mean 2, sd sqrt(10/4), se sqrt(2.5/5) = sqrt(0.5), t = 2 sqrt 2
    res = paired_ttest([1, 2, 3, 4, 5], [1, 1, 1, 1, 1])
    assert res.diff == 2.0 and res.df == 4 and res.n == (5,)
    assert res.t == pytest.approx(2 * math.sqrt(2))
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(0.5)
    assert (res.low, res.high) == pytest.approx((2 - half, 2 + half))
    # t = 2.83 just beats the 5% critical value for 4 df (2.776): significant, barely.
    assert 0.04 < res.p < 0.05


@pytest.mark.parametrize("seed", range(5))
def test_paired_and_welch_agree_with_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(10, 3, size=12)
    b = a + rng.normal(0.8, 1.0, size=12)
    ours, ref = paired_ttest(a, b), scipy_stats.ttest_rel(a, b)
    assert ours.t == pytest.approx(ref.statistic) and ours.p == pytest.approx(ref.pvalue)
    c = rng.normal(11, 6, size=7)
    ours, ref = welch_ttest(a, c), scipy_stats.ttest_ind(a, c, equal_var=False)
    assert ours.t == pytest.approx(ref.statistic) and ours.p == pytest.approx(ref.pvalue)
    assert ours.n == (12, 7) and ours.low < ours.diff < ours.high


def test_pairing_finds_what_welch_cannot():
    # Students differ a lot from seed to seed; the teacher's effect is small and consistent.
    rng = np.random.default_rng(0)
    students = rng.normal(50, 15, size=10)
    a, b = students - 3 + rng.normal(0, 0.5, 10), students
    assert paired_ttest(a, b).p < 0.001
    assert welch_ttest(a, b).p > 0.3


def test_degenerate_samples():
    same = paired_ttest([3, 4, 5], [3, 4, 5])
    assert (same.t, same.p, same.diff) == (0.0, 1.0, 0.0)
    shifted = paired_ttest([4, 5, 6], [3, 4, 5])
    assert shifted.p == 0.0 and shifted.t == math.inf and shifted.low == shifted.high == 1.0
    assert paired_ttest([3, 4, 5], [4, 5, 6]).t == -math.inf
    assert welch_ttest([2, 2], [2, 2]).p == 1.0


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1, 2, 3], [1, 2], "equal lengths"),
        ([1], [2], "at least 2"),
        ([1, 2, math.nan], [1, 2, 3], "non-finite"),
        ([[1, 2], [3, 4]], [1, 2], "1-D"),
    ],
)
def test_bad_samples(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_ttest(a, b)
