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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from l2t_gym.student import Candidate

MODEL_FEATURES = ("iteration", "avg_train_loss", "best_dev_accuracy")


def feature_names(num_classes: int, extra_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Column names of the observation, in order (d = 2C + 5 + len(extras))."""
    return (
        *(f"label_{c}" for c in range(num_classes)),
        *extra_names,
        *MODEL_FEATURES,
        *(f"prob_{c}" for c in range(num_classes)),
        "loss",
        "margin",
    )


def feature_bounds(
    num_classes: int, n_extras: int = 0, loss_cap: float = math.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (low, high) of the observation space (see the module docstring for the scale).

    :param loss_cap: the upper bound of the two loss columns (the env's ``divergence_loss``);
        where it is infinite the largest float32 stands for it (an infinite bound would only
        draw checker warnings).
    """
    c = num_classes
    cap = min(float(loss_cap), float(np.finfo(np.float32).max))
    low = np.zeros(2 * c + n_extras + 5, dtype=np.float32)
    low[-1] = -1.0
    high = np.concatenate(
        [np.ones(c), np.ones(n_extras), [1.0, cap, 1.0], np.ones(c), [cap, 1.0]]
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
    if loss_cap < math.inf:
        np.minimum(losses, loss_cap, out=losses)
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
        cap = min(float(loss_cap), float(np.finfo(np.float32).max))
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
