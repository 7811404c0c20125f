"""g(s): the per-instance state features the teacher sees (Fan et al. 2018, section 4.2).

One row per candidate instance, columns in this order:

* data features: the label as a one-hot (C), then task extras scaled to [0, 1] (none for
  images);
* student-model features: ``iteration`` (the episode clock over T', i/T' under the paper's
  reward; it saturates at 1 on the last step of an episode that ran out of clock),
  ``avg_train_loss`` (mean loss of the minibatches trained on so far; ln C, a uniform guess,
  before the first update) and ``best_dev_accuracy``;
* combined features: the predicted class probabilities (C), the instance's ``loss`` -log p_y and
  its ``margin`` p_y - max_{y' != y} p_y'.

Scale: every column lies in [0, 1] (``margin`` in [-1, 1]) but the two losses, which lie in
[0, L]: L is the env's ``divergence_loss`` (by default 100 ln C, about 230 for ten classes), the
average training loss past which a student counts as diverged, and an instance's ``loss`` is
clipped there (a healthy student gives no instance a loss near it: that takes p_y < e^-230). A
diverged student's rows show a uniform guess with ``avg_train_loss`` = L. So every observation is
finite and inside the observation space's bounds, which normalisers (Gymnasium's
``NormalizeObservation``, SB3's ``VecNormalize``) rely on.

Built on the host with NumPy from the candidate batch's logits: the logits are the one thing the
device must hand over anyway, and on M x C values NumPy is several times faster than torch's
per-op dispatch.

Optional columns beyond the paper (the envs' ``extra_features`` argument; none by default) are
appended after these, in the order asked for. :data:`EXTRA_FEATURES` is the one list of them,
each with its definition, source and bounds; :func:`extra_columns` computes them, vectorised
over N students x M rows, from the paper's columns, a few per-episode numbers and the
episode's loss history, which :class:`l2t_gym.episode.Episodes` keeps (:class:`ExtraInputs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from l2t_gym.student import Candidate

MODEL_FEATURES = ("iteration", "avg_train_loss", "best_dev_accuracy")
_F32_MAX = float(np.finfo(np.float32).max)


def feature_names(
    num_classes: int, extra_names: tuple[str, ...] = (), extra_features: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Column names of the observation, in order (d = 2C + 5 + len(extra_names) +
    len(extra_features)): the task's data features ``extra_names`` sit after the labels, the
    optional ``extra_features`` (keys of :data:`EXTRA_FEATURES`) after everything else."""
    return (
        *(f"label_{c}" for c in range(num_classes)),
        *extra_names,
        *MODEL_FEATURES,
        *(f"prob_{c}" for c in range(num_classes)),
        "loss",
        "margin",
        *extra_features,
    )


def feature_bounds(
    num_classes: int,
    n_extras: int = 0,
    loss_cap: float = math.inf,
    extra_features: tuple[str, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (low, high) of the observation space (see the module docstring for the scale).

    :param n_extras: the number of the task's data features.
    :param loss_cap: the upper bound of the loss columns (the env's ``divergence_loss``);
        where it is infinite the largest float32 stands for it (an infinite bound would only
        draw checker warnings).
    :param extra_features: the optional columns (keys of :data:`EXTRA_FEATURES`), each bounded
        as its entry says.
    """
    c = num_classes
    cap = min(float(loss_cap), _F32_MAX)
    ranges = [EXTRA_FEATURES[name].bounds for name in extra_features]
    low = np.concatenate([np.zeros(2 * c + n_extras + 4), [-1.0], [lo for lo, _ in ranges]]).astype(
        np.float32
    )
    high = np.concatenate(
        [
            np.ones(c + n_extras),
            [1.0, cap, 1.0],
            np.ones(c),
            [cap, 1.0],
            [cap if hi == LOSS_CAP else hi for _, hi in ranges],
        ]
    ).astype(np.float32)
    return low, high


def build_features(
    logits: np.ndarray,
    labels: np.ndarray,
    iteration: float | np.ndarray,
    avg_train_loss: float | np.ndarray,
    best_dev_accuracy: float | np.ndarray,
    extras: np.ndarray | None = None,
    loss_cap: float = math.inf,
) -> np.ndarray:
    """Return the float32 (M, d) observation for one candidate batch.

    ``logits`` (M, C) are the student's outputs on the batch, ``labels`` (M,) the true classes,
    ``extras`` (M, k) the task's data features, if any. The three model features are scalars,
    or arrays of shape (M,) when the rows come from several students at once. Each instance's
    ``loss`` is clipped at ``loss_cap``.
    """
    m, c = logits.shape
    k = 0 if extras is None else extras.shape[1]
    rows = np.arange(m)
    out = np.zeros((m, 2 * c + k + 5), dtype=np.float32)
    out[rows, labels] = 1.0
    if k:
        out[:, c : c + k] = extras
    base = c + k
    if isinstance(iteration, np.ndarray):  # one row per student: column by column
        out[:, base] = iteration
        out[:, base + 1] = avg_train_loss
        out[:, base + 2] = best_dev_accuracy
    else:  # one student: a single broadcast (each NumPy call costs, see the module doc)
        out[:, base : base + 3] = (iteration, avg_train_loss, best_dev_accuracy)

    # Softmax and -log p_y from the shifted logits: the loss stays finite (and exact) even where
    # p_y underflows to 0 in float32.
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    probs = out[:, base + 3 : base + 3 + c]
    np.divide(e, total, out=probs)
    losses = out[:, -2]
    np.subtract(np.log(total[:, 0]), z[rows, labels], out=losses)
    # Clipped at the cap, and always at float32's largest value: with divergence_loss=inf a
    # still-finite student whose logits spread past float32's range would otherwise show inf.
    np.minimum(losses, min(float(loss_cap), _F32_MAX), out=losses)
    p_true = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    out[:, -1] = p_true - others.max(axis=1)
    return out


def observe(
    candidate: Candidate,
    progress: Sequence[float],
    best_dev_accuracy: Sequence[float],
    loss_cap: float = math.inf,
) -> np.ndarray:
    """The float32 (N, M, d) observations of N students' candidate batches.

    :param candidate: the batches, from :meth:`l2t_gym.student.StudentRun.propose`.
    :param progress: the ``iteration`` feature of each of the N students: its clock over T', at
        most 1.
    :param best_dev_accuracy: each student's best dev accuracy so far (N values).

    :param loss_cap: the env's ``divergence_loss``: instance losses are clipped there.

    A diverged student's features mean nothing, but its observation must still lie in the
    observation space on its usual scale: it is reported as a uniform guess whose average
    training loss is ``loss_cap``.
    """
    logits, avg, labels, extras = (
        candidate.logits,
        candidate.avg_train_loss,
        candidate.labels,
        candidate.extras,
    )
    if any(candidate.diverged):
        bad = np.asarray(candidate.diverged)
        logits = np.where(bad[:, None, None], 0.0, logits).astype(np.float32)
        cap = min(float(loss_cap), _F32_MAX)
        avg = np.where(bad, cap, avg)
    n, m, c = logits.shape
    if n == 1:  # one student: its model features are scalars, broadcast in one assignment
        one = build_features(
            logits[0],
            labels[0],
            float(progress[0]),
            float(avg[0]),
            float(best_dev_accuracy[0]),
            None if extras is None else extras[0],
            loss_cap,
        )
        return one[None]
    # All students' rows in one pass: the model features repeat per row.
    return build_features(
        logits.reshape(n * m, c),
        labels.reshape(-1),
        np.repeat(progress, m),
        np.repeat(avg, m),
        np.repeat(best_dev_accuracy, m),
        None if extras is None else extras.reshape(n * m, -1),
        loss_cap,
    ).reshape(n, m, -1)


# -- optional columns (``extra_features``) ----------------------------------------------------
#: Stands for the env's loss cap (``divergence_loss``) as the upper bound of an optional column.
LOSS_CAP = math.inf


class ExtraInputs(NamedTuple):
    """What the optional columns are computed from, for N students' candidate batches of M.

    :ivar loss: (N, M) the paper's ``loss`` column (already clipped at the loss cap; a diverged
        student's rows already read as a uniform guess).
    :ivar margin: (N, M) the paper's ``margin`` column.
    :ivar kept_instances: (N,) instances each student's teacher has kept so far this episode.
    :ivar instance_budget: T' x M, the episode's instance budget.
    :ivar dev_accuracy_sum: (N,) the sum of the dev accuracies measured so far this episode.
    :ivar dev_evaluations: (N,) how many there were (at least 1: the fresh student's).
    :ivar indices: (N, M) int64, the candidates' positions in the task's training set.
    :ivar irreducible_loss: per training-set instance, float32 (n_train,): see
        :func:`l2t_gym.data.irreducible.irreducible_losses`; None when not asked for.
    :ivar loss_cap: the env's ``divergence_loss``.
    :ivar mean_shown_loss: (N,) float64, the mean ``loss`` of the candidates of each student's
        earlier teacher steps this episode (dropped ones included, this batch excluded); NaN
        before its first step; None when not asked for.
    :ivar last_visit_loss: (N, M) each candidate's ``loss`` when it was last a candidate at a
        teacher step of this episode, NaN at its first visit; None when not asked for.
    """

    loss: np.ndarray
    margin: np.ndarray
    kept_instances: Sequence[int]
    instance_budget: int
    dev_accuracy_sum: Sequence[float]
    dev_evaluations: Sequence[int]
    indices: np.ndarray
    irreducible_loss: np.ndarray | None
    loss_cap: float
    mean_shown_loss: np.ndarray | None
    last_visit_loss: np.ndarray | None


def scaled_rank(values: np.ndarray) -> np.ndarray:
    """Each value's rank within its row, scaled to [0, 1]: 0 for the lowest, 1 for the highest.

    Rank r = (number of strictly lower values) + (number of other equal values) / 2, the
    0-based average rank (ties share the mean of the ranks they span, so the column does not
    depend on the rows' order in the batch), divided by M - 1; a batch of one gets 1.

    :param values: (N, M) finite values.
    :return: float32 (N, M).
    """
    n, m = values.shape
    if m == 1:
        return np.ones(values.shape, dtype=np.float32)
    # 2r = (values below) + (values below or equal, self excluded) = left + right - 1 with
    # left/right the value's insertion points in its sorted row: an integer, so both ways of
    # counting give bit-identical results.
    if n == 1:  # one student: a sort and two binary searches (a few microseconds for M = 32)
        row = values[0]
        ordered = np.sort(row)
        twice = np.searchsorted(ordered, row, "left") + np.searchsorted(ordered, row, "right") - 1
        twice = twice[None]
    else:  # N rows at once: M x M comparisons per student, exact and loop-free
        col, rows = values[:, None, :], values[:, :, None]
        twice = (col < rows).sum(axis=-1) + (col <= rows).sum(axis=-1) - 1
    return (twice / (2 * (m - 1))).astype(np.float32)


def _loss_rank(x: ExtraInputs) -> np.ndarray:
    return scaled_rank(x.loss)


def _margin_rank(x: ExtraInputs) -> np.ndarray:
    return scaled_rank(x.margin)


def _kept_fraction(x: ExtraInputs) -> np.ndarray:
    kept = np.asarray(x.kept_instances, dtype=np.float64)
    return np.minimum(kept / x.instance_budget, 1.0)[:, None]


def _mean_dev_accuracy(x: ExtraInputs) -> np.ndarray:
    total = np.asarray(x.dev_accuracy_sum, dtype=np.float64)
    return (total / np.maximum(np.asarray(x.dev_evaluations), 1))[:, None]


def _irreducible_loss(x: ExtraInputs) -> np.ndarray:
    if x.irreducible_loss is None:
        raise ValueError("irreducible_loss asked for but no per-instance table given")
    cap = min(float(x.loss_cap), _F32_MAX)
    return np.minimum(x.irreducible_loss[x.indices], cap)


def relative_loss(loss: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """loss / (loss + reference), in [0, 1]: 0.5 where the two are equal, where the reference
    is unknown (NaN) and where both are 0; below 0.5 when the loss is the lower one. A ratio,
    so it reads the same at every scale of the losses (they fall by orders of magnitude over a
    run). ``reference`` broadcasts against ``loss`` (N, M); both are finite and non-negative
    (the loss columns are clipped at the loss cap and at float32's largest value). Computed in
    float64; stored as float32, a loss within float32 rounding of the reference reads 0.5."""
    loss = np.asarray(loss, dtype=np.float64)
    total = loss + reference
    out = np.full(total.shape, 0.5)
    # Divided only where the total is positive: NaN > 0 is False, so unknown stays 0.5.
    return np.divide(loss, total, out=out, where=total > 0)


def _loss_vs_mean(x: ExtraInputs) -> np.ndarray:
    if x.mean_shown_loss is None:
        raise ValueError("loss_vs_mean asked for but no mean of the shown losses given")
    return relative_loss(x.loss, x.mean_shown_loss[:, None])


def _loss_change(x: ExtraInputs) -> np.ndarray:
    if x.last_visit_loss is None:
        raise ValueError("loss_change asked for but no last-visit losses given")
    return relative_loss(x.loss, x.last_visit_loss)


class ExtraFeature(NamedTuple):
    """One optional observation column: what it means, where it comes from, its bounds
    ((low, high); a high of :data:`LOSS_CAP` is the env's ``divergence_loss``) and the function
    that computes it, (N, M) or (N, 1) (one value per student, broadcast over its rows)."""

    definition: str
    source: str
    bounds: tuple[float, float]
    compute: Callable[[ExtraInputs], np.ndarray]


#: Every optional column an env can append (``extra_features=(...)``), by name. The one list.
EXTRA_FEATURES: dict[str, ExtraFeature] = {
    "loss_rank": ExtraFeature(
        "the instance's loss rank within its candidate batch, scaled to [0, 1]: 1 for the "
        "highest loss, 0 for the lowest; ties share their average rank; 1 when M = 1 "
        "(see scaled_rank)",
        "the first author's public code (fyabc/RL4Data) gives each instance its loss rank over "
        "the batch size; here 0-based and over M - 1, so both ends are reached",
        (0.0, 1.0),
        _loss_rank,
    ),
    "margin_rank": ExtraFeature(
        "the instance's margin rank within its candidate batch, scaled to [0, 1]: 1 for the "
        "highest margin (the most confidently right), 0 for the lowest; ties and M = 1 as "
        "for loss_rank",
        "as loss_rank, for the paper's margin feature",
        (0.0, 1.0),
        _margin_rank,
    ),
    "kept_fraction": ExtraFeature(
        "instances the teacher has kept so far in the episode over the episode's instance "
        "budget T' x M, clipped at 1 (the same for every row of a batch)",
        "the authors' code counts training progress in accepted instances",
        (0.0, 1.0),
        _kept_fraction,
    ),
    "mean_dev_accuracy": ExtraFeature(
        "the mean of the dev accuracies measured so far in the episode, the fresh student's "
        "first evaluation included (the same for every row of a batch)",
        "the paper's 'historical validation accuracy' (section 4.2) read as an average; the "
        "default columns carry the best so far",
        (0.0, 1.0),
        _mean_dev_accuracy,
    ),
    "irreducible_loss": ExtraFeature(
        "the instance's loss -log p_y under a small model that was not trained on it: "
        "logistic regression cross-fitted on the two halves of the fold's training instances "
        "(never the dev or test set), clipped at the loss cap (see "
        "l2t_gym.data.irreducible)",
        "the irreducible loss of RHO-LOSS (Mindermann et al., ICML 2022), whose reducible "
        "holdout loss is the paper's loss minus this one",
        (0.0, LOSS_CAP),
        _irreducible_loss,
    ),
    "loss_vs_mean": ExtraFeature(
        "the instance's loss against the mean loss of the candidates of the episode's earlier "
        "teacher steps (dropped ones included), as loss / (loss + mean): 0.5 at the mean, "
        "below it for an instance below the mean; 0.5 on the first step (no mean yet; see "
        "relative_loss)",
        "InfoBatch (Qin et al., ICLR 2024) prunes instances whose loss lies below the mean; "
        "its threshold is this column's 0.5, read here as l2t_gym.teachers.InfoBatch reads it",
        (0.0, 1.0),
        _loss_vs_mean,
    ),
    "loss_change": ExtraFeature(
        "the instance's loss against its own loss when it was last a candidate in the episode, "
        "as loss / (loss + last loss): below 0.5 when the student has learned it since, above "
        "when it has forgotten it; 0.5 at its first visit (see relative_loss)",
        "the per-instance loss history: InfoBatch scores an instance by its loss at its last "
        "visit; forgetting events (Toneva et al., ICLR 2019) are the rises",
        (0.0, 1.0),
        _loss_change,
    ),
}


def check_extra_features(value: object) -> tuple[str, ...]:
    """``value`` as a tuple of names of :data:`EXTRA_FEATURES`.

    :raises TypeError: if ``value`` is not a tuple or list of strings.
    :raises ValueError: for an unknown or repeated name.
    """
    available = ", ".join(EXTRA_FEATURES)
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"extra_features must be a tuple of column names (from {available}), got {value!r}"
        )
    unknown = [v for v in value if v not in EXTRA_FEATURES]
    if unknown:
        raise ValueError(f"extra_features: unknown column(s) {unknown}; available: {available}")
    if len(set(value)) != len(value):
        raise ValueError(
            f"extra_features must not repeat a name, got {tuple(value)}; available: {available}"
        )
    return tuple(value)


def extra_columns(names: Sequence[str], inputs: ExtraInputs) -> np.ndarray:
    """The optional columns ``names`` (keys of :data:`EXTRA_FEATURES`), float32 (N, M, k)."""
    n, m = inputs.loss.shape
    out = np.empty((n, m, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, :, j] = EXTRA_FEATURES[name].compute(inputs)
    return out


def append_extra_columns(obs: np.ndarray, names: Sequence[str], inputs: ExtraInputs) -> np.ndarray:
    """The paper's observations (N, M, d) with the optional columns ``names`` after them:
    float32 (N, M, d + k)."""
    return np.concatenate([obs, extra_columns(names, inputs)], axis=2)
