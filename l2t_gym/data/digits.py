"""scikit-learn's digits, the embedded task's data: no file, no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from l2t_gym.data.folds import SPLIT_SEED
from l2t_gym.data.raw import ARRAYS, Origin, RawData


def load_digits(root: Path | None = None, download: bool = False) -> RawData:
    """scikit-learn's 1,797 8x8 digits, shipped with the package: no file, no network.

    The set has no official test split; a stratified fifth is held out with the fixed split seed.
    Pixels (0..16) are scaled to [0, 1] and kept as (N, 1, 8, 8) images.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test[members[: int(round(0.2 * len(members)))]] = True
    return RawData(
        x_train=torch.from_numpy(x[~test]),
        y_train=torch.from_numpy(y[~test]),
        x_test=torch.from_numpy(x[test]),
        y_test=torch.from_numpy(y[test]),
        num_classes=10,
        origin=Origin(names=dict.fromkeys(ARRAYS, "scikit-learn's digits"), input_shape=(1, 8, 8)),
    )
