"""Today's online data-selection methods as teachers: RHO-LOSS, InfoBatch and Selective-Backprop.

Each method was published as a change to a training loop; here each is a :class:`Teacher`
that sees what every teacher sees (the candidate batch's feature rows, found by name) and
answers with a keep mask. Where a method does more than choose instances (InfoBatch rescales
gradients), the docstring says what the mask form leaves out. Every rule is written from the
paper's description; adaptations to the teacher's view are named in each docstring.

Each teacher exposes the parameter that sets how much it keeps (RhoLoss ``keep_ratio``,
InfoBatch ``prune_ratio``, SelectiveBackprop ``beta``), so a comparison can run it at a learned
teacher's keep ratio or sweep it on the teacher fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from l2t_gym.teachers.base import Teacher
from l2t_gym.teachers.heuristics import checked_keep_ratio, keep_highest
from l2t_gym.teachers.sampling import sample_keep

#: The column of the irreducible loss, the loss of a model trained on held-out data.
IRREDUCIBLE_LOSS = "irreducible_loss"


class RhoLoss(Teacher):
    """RHO-LOSS (Mindermann et al., "Prioritized Training on Points that are Learnable, Worth
    Learning, and Not Yet Learnt", ICML 2022) as a teacher.

    Rule: keep the ceil(``keep_ratio`` x M) instances of each candidate batch with the highest
    *reducible* loss, ``loss`` - ``irreducible_loss`` (nats; ties: earlier position first):
    the student's loss on the instance minus the loss of a model trained on held-out data.
    High student loss alone also selects noisy and unlearnable instances; subtracting what a
    model that has seen similar data still gets wrong leaves the instances that are learnable
    and not yet learnt.

    The paper selects n_b = 32 of n_B = 320 candidates, a tenth; hence ``keep_ratio = 0.1``.

    Needs the ``irreducible_loss`` column (``required_features``): build the env with
    ``extra_features=("irreducible_loss",)``.

    :param keep_ratio: fraction of each batch kept, in (0, 1]; at least one instance is kept.
    :raises ValueError: if ``keep_ratio`` is outside (0, 1]; at :meth:`reset`, if the env has no
        ``irreducible_loss`` column.
    """

    required_features = (IRREDUCIBLE_LOSS,)

    def __init__(self, keep_ratio: float = 0.1) -> None:
        super().__init__()
        self.keep_ratio = checked_keep_ratio(keep_ratio)

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        if IRREDUCIBLE_LOSS not in self._names():
            raise ValueError(
                f"RhoLoss needs the {IRREDUCIBLE_LOSS!r} observation column, which this env "
                f"lacks; build the env with extra_features=({IRREDUCIBLE_LOSS!r},). Its "
                f"feature_names: {list(self._names())}"
            )
        self._loss = self.column("loss")
        self._irreducible = self.column(IRREDUCIBLE_LOSS)

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.rows(obs)
        reducible = x[:, self._loss].astype(np.float64) - x[:, self._irreducible]
        return keep_highest(reducible, self.keep_ratio)


class InfoBatch(Teacher):
    """InfoBatch (Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
    Pruning", ICLR 2024) as a teacher.

    Rule: an instance whose ``loss`` lies below the running mean loss is dropped with
    probability ``prune_ratio`` r; every other instance is kept. Once training progress t (the
    ``iteration`` feature, clock / T') reaches 1 - ``anneal`` every instance is kept (the
    paper's annealing: the last delta of training sees the full data). Draws come from the
    teacher's own generator.

    Adaptation, the running mean: InfoBatch scores each instance by its loss at its last
    visit and prunes against the mean score of the previous epoch. A teacher sees candidates,
    not epochs, so here the threshold is the mean of every candidate loss shown earlier in the
    episode (dropped ones included, this batch excluded), and each instance is judged by its
    current loss. The first batch of an episode has no mean yet and is kept whole, as
    InfoBatch's first epoch prunes nothing.

    What a keep mask cannot say: InfoBatch scales the gradient of the kept below-mean instances
    by 1 / (1 - r), so that the expected gradient equals full-data training. A mask only keeps
    or drops, so those instances enter the student's minibatch with weight 1, and the expected
    gradient is biased toward the high-loss instances (the below-mean share of the data is
    under-weighted by the factor 1 - r). The rule is InfoBatch's selection without its
    unbiasing.

    Defaults are the paper's: r = 0.5 and delta = 0.125 (annealing after 0.875 of training).

    :param prune_ratio: r, the probability of dropping a below-mean instance, in [0, 1).
    :param anneal: delta, the final fraction of training that keeps every instance, in [0, 1].
    :param seed: seeds the teacher's generator.
    :raises ValueError: for values outside those ranges, naming the parameter.
    """

    def __init__(
        self, prune_ratio: float = 0.5, anneal: float = 0.125, seed: int | None = None
    ) -> None:
        prune_ratio, anneal = float(prune_ratio), float(anneal)
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(f"prune_ratio must lie in [0, 1), got {prune_ratio}")
        if not 0.0 <= anneal <= 1.0:
            raise ValueError(f"anneal must be a fraction of training in [0, 1], got {anneal}")
        super().__init__(seed)
        self.prune_ratio, self.anneal = prune_ratio, anneal
        self._loss_sum, self._loss_count = 0.0, 0

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        self._loss = self.column("loss")
        self._progress = self.column("iteration")
        self._loss_sum, self._loss_count = 0.0, 0

    @property
    def mean_loss(self) -> float:
        """The running mean of every candidate loss shown so far this episode, in nats (NaN
        before the first batch)."""
        return self._loss_sum / self._loss_count if self._loss_count else math.nan

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = self.rows(obs)
        loss = x[:, self._loss].astype(np.float64)
        # One draw per candidate in every batch, so the stream does not depend on the losses.
        drop = self.rng.random(len(loss)) < self.prune_ratio
        keep = np.ones(len(loss), dtype=bool)
        annealing = float(x[:, self._progress].max()) >= 1.0 - self.anneal
        if self._loss_count and not annealing:
            keep = ~(drop & (loss < self.mean_loss))
        self._loss_sum += float(loss.sum())
        self._loss_count += len(loss)
        return keep


class SelectiveBackprop(Teacher):
    """Selective-Backprop (Jiang et al., "Accelerating Deep Learning by Focusing on the Biggest
    Losers", 2019) as a teacher.

    Rule: keep each instance independently with probability F(``loss``) ** ``beta``, where F is
    the empirical CDF of the last ``history`` candidate losses shown (this batch's included, as
    the newest): F(l) = (number of remembered losses <= l) / (number remembered). Draws come
    from the teacher's own generator.

    For a continuous loss distribution F(loss) is uniform, so the expected keep ratio is
    E[U ** beta] = 1 / (1 + beta): ``beta`` 1, 2, 3 keep about 1/2, 1/3, 1/4, the selectivities
    the paper relates them to; ``beta = 1/r - 1`` keeps about a fraction r. That holds for a
    steady loss distribution: while a student learns, the remembered older losses are higher
    than the new ones, F of a new loss is lower, and it keeps less (on Digits with the task's
    defaults, beta = 1 kept about 0.33 and beta = 2 about 0.21). Default
    ``beta = 1`` (about half) and ``history = 1024`` losses. The paper's code also puts a floor
    on the probability; this rule has none (the highest loss of each batch has F = 1 only if
    no remembered loss is higher, so with beta > 0 a batch can be dropped whole).

    :param beta: the selectivity exponent, >= 0 (0 keeps everything).
    :param history: how many recent losses F is computed from, >= 1.
    :param seed: seeds the teacher's generator.
    :raises ValueError: for values outside those ranges, naming the parameter.
    """

    def __init__(self, beta: float = 1.0, history: int = 1024, seed: int | None = None) -> None:
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= 0.0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta}")
        if int(history) != history or history < 1:
            raise ValueError(f"history must be an integer >= 1, got {history}")
        super().__init__(seed)
        self.beta, self.history = beta, int(history)
        self._clear()

    def reset(self, feature_names: Sequence[str], *, seed: int | None = None) -> None:
        super().reset(feature_names, seed=seed)
        self._loss = self.column("loss")
        self._clear()

    def _clear(self) -> None:
        # A ring of the last `history` losses; assigned anew so spawned copies share nothing.
        self._ring = np.zeros(self.history)
        self._filled, self._next = 0, 0

    def remember(self, losses: np.ndarray) -> None:
        """Add losses to the history, the oldest forgotten beyond ``history``.

        :param losses: candidate losses in nats, shape (M,), in the order shown.
        """
        losses = np.asarray(losses, dtype=np.float64)[-self.history :]
        slots = (self._next + np.arange(len(losses))) % self.history
        self._ring[slots] = losses
        self._next = int((self._next + len(losses)) % self.history)
        self._filled = min(self._filled + len(losses), self.history)

    def cdf(self, losses: np.ndarray) -> np.ndarray:
        """F: the fraction of the remembered losses at or below each loss.

        :param losses: losses in nats, shape (M,).
        :return: float64 values in [0, 1], shape (M,); all 1 while nothing is remembered.
        """
        if not self._filled:
            return np.ones(len(losses))
        remembered = np.sort(self._ring[: self._filled])
        return np.searchsorted(remembered, losses, side="right") / self._filled

    def act(self, obs: np.ndarray) -> np.ndarray:
        loss = self.rows(obs)[:, self._loss].astype(np.float64)
        self.remember(loss)
        return sample_keep(self.cdf(loss) ** self.beta, self.rng)
