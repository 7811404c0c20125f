"""Significance tests for comparing teachers over students.

Teachers are compared on the same student seeds (same initialisation and data order until their
choices differ), so the default test is the paired t-test on per-seed differences; Welch's
t-test is there for runs that are not paired (different seeds, different envs). Both are two-
sided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats


@dataclass(frozen=True)
class TTest:
    """A two-sided t-test of ``mean(a) - mean(b)`` (paired: the mean of the differences).

    ``diff`` is that difference and (``low``, ``high``) its 95% confidence interval; ``t``,
    ``df`` and ``p`` the statistic, degrees of freedom and two-sided p-value; ``n`` the number
    of pairs (paired) or the two sample sizes (Welch).
    """

    kind: str
    diff: float
    low: float
    high: float
    t: float
    df: float
    p: float
    n: tuple[int, ...]


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Paired t-test of ``mean(a - b)``: ``a[i]`` and ``b[i]`` were measured on the same student
    seed.

    :param a: one teacher's costs, one per seed (any unit; at least 2).
    :param b: the other teacher's, on the same seeds, in the same unit.
    :return: the test; ``diff`` and its interval in that unit.
    :raises ValueError: for samples of unequal length, shorter than 2, not 1-D or not finite.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired samples need equal lengths, got {len(x)} and {len(y)}")
    d = x - y
    n = len(d)
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    return _finish("paired", mean, se, n - 1, (n,))


def welch_ttest(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)`` for two independent samples.

    :param a: one sample (at least 2 values).
    :param b: the other (at least 2 values, the same unit).
    :return: the test, with Welch-Satterthwaite degrees of freedom.
    :raises ValueError: for a sample shorter than 2, not 1-D or not finite.
    """
    x, y = _sample(a, "a"), _sample(b, "b")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite; with both variances zero the df is moot (the test is degenerate).
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1)) if se > 0 else math.inf
    return _finish("welch", float(x.mean() - y.mean()), se, df, (len(x), len(y)))


def _finish(kind: str, diff: float, se: float, df: float, n: tuple[int, ...]) -> TTest:
    if se == 0.0:
        # Every difference identical: no spread to test against. Equal means is no evidence of
        # a difference; a constant nonzero difference is as strong as evidence gets.
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        return TTest(kind, diff, diff, diff, t, df, 1.0 if diff == 0.0 else 0.0, n)
    t = diff / se
    p = float(2.0 * _scipy_stats.t.sf(abs(t), df))
    half = float(_scipy_stats.t.ppf(0.975, df)) * se
    return TTest(kind, diff, diff - half, diff + half, t, df, p, n)


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"{name} must be a 1-D sample of at least 2 values, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds non-finite values: {x[~np.isfinite(x)][:3]}")
    return x
