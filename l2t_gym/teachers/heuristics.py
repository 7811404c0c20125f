"""The baseline teachers the paper compares against: NoTeach, RandTeach, SPL and LossRank."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from l2t_gym.teachers.base import Teacher
from l2t_gym.teachers.sampling import sample_keep


class NoTeach(Teacher):
    """Keeps every instance: plain minibatch training, the reference every teacher must beat."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.ones(len(self.rows(obs)), dtype=bool)


class RandTeach(Teacher):
    """Keeps each instance independently with probability ``keep_prob``.

    The paper's control for data *volume*: set ``keep_prob`` to a trained teacher's measured keep
    ratio, and any gain the trained teacher has over RandTeach comes from *which* instances it
    keeps. Draws come from the teacher's own generator (``seed``, or ``reset(seed=...)``).

    :param keep_prob: probability of keeping each instance, in (0, 1].
    :param seed: seeds the teacher's generator.
    :raises ValueError: if ``keep_prob`` is outside (0, 1].
    """

    def __init__(self, keep_prob: float, seed: int | None = None) -> None:
        keep_prob = float(keep_prob)
        if not 0.0 < keep_prob <= 1.0:
            # 0 would never train the student: every episode would end truncated.
            raise ValueError(f"keep_prob must lie in (0, 1], got {keep_prob}")
        super().__init__(seed)
        self.keep_prob = keep_prob

    def act(self, obs: np.ndarray) -> np.ndarray:
        return sample_keep(np.full(len(self.rows(obs)), self.keep_prob), self.rng)


class SelfPaced(Teacher):
    """Self-paced learning (Kumar, Packer and Koller, NeurIPS 2010) as a teacher.

    Rule: keep the instances whose ``loss`` (-log p_y) is below a threshold lambda that grows
    with training progress t = the ``iteration`` feature (clock / T', in [0, 1]), so the student
    starts on the instances it already finds easy and harder ones enter progressively.

    Schedule: geometric from ``start`` to ``end`` over the first ``ramp`` of training::

        lambda(t) = ln C * start * (end / start) ** (t / ramp)      for t < ramp

    and from t = ``ramp`` on every instance is admitted (lambda = inf), SPL's last round
    (``admit_all=False`` holds lambda at ``end`` instead).

    Thresholds are in units of ln C, the loss of a uniform guess over the C classes (C is counted
    from the ``label_*`` columns), so the defaults suit any task. Geometric growth mirrors SPL's
    update of 1/K by a constant factor per round, and like SPL's last round the schedule ends
    with (in practice) every instance admitted:

    * ``start = 1``: an instance is "easy" when the student already beats chance on it; at
      initialisation that is 30-50% of a Digits batch, a real share of the data to start on.
    * ``end = 10``: by the end only instances with p_y < C^-10 are held back, which no healthy
      run has. A threshold that stays near ln C is a trap: a fresh student that gets a whole
      class wrong never sees it, and while it learns the other classes that class's losses
      grow past any modest threshold. With ``end = 3`` most Digits episodes never reached tau.
      No multiple of ln C is safe for two classes, though: on IMDB (C = 2) a fresh student that
      favours one class pushes the other's losses to ~15 > 10 ln 2, and with the threshold held
      at ``end`` none of 10 students ever reached tau; hence ``admit_all``, which changes
      nothing on Digits (identical episodes, seeds 0-19 on both folds: there 10 ln 10 already
      admits every instance) and lets all 10 IMDB students reach tau.
    * ``ramp = 0.3``: with the tasks' defaults keep-all reaches tau in 35-45% of T', so the
      curriculum opens up within the time a plain student needs. (On Digits, 20 seeds per fold:
      SPL reached tau in every episode, at a median 67-68 iterations against keep-all's 42-45,
      keeping 72-77% of candidates: slower than plain training.)

    ``min_keep``: whatever the threshold, the ``min_keep`` lowest-loss instances of each batch are
    kept (ties: earlier position first). The clock only advances when the student trains, and the
    threshold only grows when the clock advances, so a batch-wide "keep nothing" could stall the
    episode until truncation. One instance per batch is the smallest floor that rules that out
    (at least one student iteration per M teacher steps) while leaving the SPL rule otherwise
    unchanged; 0 turns the floor off.

    :param start: threshold at t = 0, in units of ln C; > 0.
    :param end: threshold from t = ``ramp`` on, in units of ln C; >= ``start``.
    :param ramp: fraction of T' over which the threshold grows, in (0, 1].
    :param min_keep: instances kept per batch regardless of the threshold (capped at M), >= 0.
    :param admit_all: admit every instance once the ramp is over (default), or hold the
        threshold at ``end``.
    :raises ValueError: for values outside those ranges.
    """

    def __init__(
        self,
        start: float = 1.0,
        end: float = 10.0,
        ramp: float = 0.3,
        min_keep: int = 1,
        admit_all: bool = True,
    ) -> None:
        start, end, ramp = float(start), float(end), float(ramp)
        if not (math.isfinite(start) and start > 0):
            raise ValueError(f"start must be a positive multiple of ln C, got {start}")
        if not (math.isfinite(end) and end >= start):
            raise ValueError(f"end must be a finite multiple of ln C >= start={start}, got {end}")
        if not 0.0 < ramp <= 1.0:
            raise ValueError(f"ramp must be a fraction of training in (0, 1], got {ramp}")
        if int(min_keep) != min_keep or min_keep < 0:
            raise ValueError(f"min_keep must be an integer >= 0, got {min_keep}")
        super().__init__()
        self.start, self.end, self.ramp, self.min_keep = start, end, ramp, int(min_keep)
        self.admit_all = bool(admit_all)
        self.num_classes: int | None = None

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        self._loss = self.column("loss")
        self._progress = self.column("iteration")
        self.num_classes = sum(n.startswith("label_") for n in self._names())
        if self.num_classes < 2:
            raise ValueError(
                "SelfPaced needs the label_0 .. label_{C-1} features (C >= 2) to scale its "
                f"threshold by ln C; this env's feature_names are {list(self._names())}"
            )

    def threshold(self, progress: float) -> float:
        """The loss threshold lambda at training progress t.

        :param progress: t = clock / T', the ``iteration`` feature.
        :return: lambda, in nats (inf once every instance is admitted).
        :raises RuntimeError: before :meth:`reset` (which tells the teacher C).
        """
        if self.num_classes is None:
            self._names()  # raises: reset has not told us C yet
        assert self.num_classes is not None
        frac = min(max(float(progress), 0.0) / self.ramp, 1.0)
        if frac >= 1.0 and self.admit_all:
            return math.inf
        return math.log(self.num_classes) * self.start * (self.end / self.start) ** frac

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.rows(obs)
        loss = x[:, self._loss]
        keep = loss < self.threshold(float(x[:, self._progress].max()))
        k = min(self.min_keep, len(loss))
        if k and np.count_nonzero(keep) < k:
            keep[np.argsort(loss, kind="stable")[:k]] = True
        return keep


class LossRank(Teacher):
    """Online batch selection by loss rank (after Loshchilov and Hutter, 2015).

    Rule: keep the ceil(``keep_ratio`` x M) highest-loss instances of each candidate batch; among
    equal losses the earlier position wins, so decisions are deterministic. Loshchilov and Hutter
    draw instances with probabilities that decay exponentially with loss rank; this is the
    deterministic top-fraction form of that rule.

    :param keep_ratio: fraction of each batch kept, in (0, 1]; at least one instance is always
        kept.
    :raises ValueError: if ``keep_ratio`` is outside (0, 1].
    """

    def __init__(self, keep_ratio: float = 0.5) -> None:
        super().__init__()
        self.keep_ratio = checked_keep_ratio(keep_ratio)

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        self._loss = self.column("loss")

    def act(self, obs: np.ndarray) -> np.ndarray:
        return keep_highest(self.rows(obs)[:, self._loss], self.keep_ratio)


def checked_keep_ratio(keep_ratio: float) -> float:
    """``keep_ratio`` as a float in (0, 1] (a teacher's fraction of each batch kept).

    :raises ValueError: outside (0, 1], naming ``keep_ratio``.
    """
    keep_ratio = float(keep_ratio)
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must lie in (0, 1], got {keep_ratio}")
    return keep_ratio


def keep_highest(scores: np.ndarray, keep_ratio: float) -> np.ndarray:
    """Keep the ceil(``keep_ratio`` x M) highest of M scores, at least one; among equal scores
    the earlier position wins, so the decision is deterministic.

    :param scores: one score per candidate, shape (M,).
    :param keep_ratio: fraction kept, in (0, 1].
    :return: bool keep mask, shape (M,).
    """
    m = len(scores)
    # Rounded first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceil is 8.
    k = max(1, math.ceil(round(keep_ratio * m, 9)))
    keep = np.zeros(m, dtype=bool)
    # A stable sort of -score puts the earlier of two equal scores first.
    keep[np.argsort(-np.asarray(scores), kind="stable")[:k]] = True
    return keep
