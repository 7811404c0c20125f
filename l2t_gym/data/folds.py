"""The fixed, stratified split of a task's training set into the teacher and student folds.

The paper trains teachers on one half of the training data and teaches fresh students on the
other half; each half holds out its own dev set, which is all the reward ever reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Seed of the fold split. Fixed so that every env, process and machine sees the same folds.
SPLIT_SEED = 20180430
#: The folds of every task's training set, in the order :func:`make_folds` builds them.
FOLDS = ("teacher", "student")


@dataclass(frozen=True)
class Fold:
    """Indices into a task's training set: instances the student trains on, and its dev set."""

    train: np.ndarray
    dev: np.ndarray


def make_folds(labels: np.ndarray, dev_fraction: float, seed: int = SPLIT_SEED) -> dict[str, Fold]:
    """Split instances evenly into a teacher and a student fold, per class, then hold out dev sets.

    Within each class the instances are shuffled once with ``seed``; alternate instances go to the
    teacher and the student fold (odd classes' extras alternate between the folds), and the first
    ``round(dev_fraction * n)`` of each class's share become that fold's dev set. Folds and dev sets
    are disjoint by construction. Index arrays are sorted, so they do not depend on class order.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
    rng = np.random.default_rng(seed)
    parts: dict[str, dict[str, list[np.ndarray]]] = {f: {"train": [], "dev": []} for f in FOLDS}
    for j, c in enumerate(np.unique(labels)):
        members = rng.permutation(np.flatnonzero(labels == c))
        for k, fold in enumerate(FOLDS):
            # Odd-sized classes give their extra instance to the folds in turn, so the two folds
            # differ in size by at most one instance overall.
            share = members[(k + j) % 2 :: 2]
            n_dev = int(round(dev_fraction * len(share)))
            parts[fold]["dev"].append(share[:n_dev])
            parts[fold]["train"].append(share[n_dev:])
    folds = {}
    for fold in FOLDS:
        train = np.sort(np.concatenate(parts[fold]["train"])).astype(np.int64)
        dev = np.sort(np.concatenate(parts[fold]["dev"])).astype(np.int64)
        if len(train) == 0 or len(dev) == 0:
            raise ValueError(
                f"the {fold} fold is empty (train {len(train)}, dev {len(dev)}): "
                f"{len(labels)} instances are too few for dev_fraction={dev_fraction}"
            )
        folds[fold] = Fold(train=train, dev=dev)
    return folds
