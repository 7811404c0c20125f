"""Datasets as normalised CPU tensors. Each loader returns a :class:`RawData`; nothing here knows
about folds, devices or environments."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2t_gym.data.folds import SPLIT_SEED


@dataclass(frozen=True, eq=False)
class RawData:
    """A task's official train and test sets: float32 inputs (N, ...) and int64 labels (N,).

    Build one from your own arrays with :meth:`from_arrays` and pass it to ``L2TEnv(data=...)``
    to run a task on data that needs no loader (compared by identity, so it can key a cache).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    #: Per-instance data features the teacher sees after the label one-hot (e.g. normalised
    #: review length), float32 (N, len(extra_names)); None when the task has none.
    extras_train: torch.Tensor | None = None
    extra_names: tuple[str, ...] = ()
    #: Number of token ids (padding and unknown included) for text inputs; None for images.
    vocab_size: int | None = None

    @classmethod
    def from_arrays(
        cls,
        x_train: np.ndarray | torch.Tensor,
        y_train: np.ndarray | torch.Tensor,
        x_test: np.ndarray | torch.Tensor,
        y_test: np.ndarray | torch.Tensor,
        num_classes: int,
    ) -> RawData:
        """Check and convert arrays: float inputs to float32 (already normalised as the student
        expects), integer inputs (token ids) to int64, labels to int64 in [0, num_classes)."""
        xs = [_as_input(x) for x in (x_train, x_test)]
        ys = [torch.as_tensor(np.asarray(y)).long() for y in (y_train, y_test)]
        for name, x, y in (("train", xs[0], ys[0]), ("test", xs[1], ys[1])):
            if y.dim() != 1 or x.dim() < 2 or len(x) != len(y) or len(y) == 0:
                raise ValueError(
                    f"{name}: expected inputs (N, ...) and labels (N,) with N > 0, got "
                    f"{tuple(x.shape)} and {tuple(y.shape)}"
                )
            if y.min() < 0 or y.max() >= num_classes:
                raise ValueError(
                    f"{name} labels must lie in [0, {num_classes}), got "
                    f"[{int(y.min())}, {int(y.max())}]"
                )
        if xs[0].shape[1:] != xs[1].shape[1:]:
            raise ValueError(
                f"train and test inputs differ in shape: {tuple(xs[0].shape[1:])} "
                f"vs {tuple(xs[1].shape[1:])}"
            )
        return cls(xs[0].contiguous(), ys[0], xs[1].contiguous(), ys[1], int(num_classes))


def _as_input(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x))
    return t.long() if not (t.is_floating_point() or t.is_complex()) else t.float()


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not (or was not allowed to) be downloaded."""


def default_root() -> Path:
    """Where datasets live unless ``data_root`` says otherwise: ``$L2T_DATA``, else a user cache."""
    env = os.environ.get("L2T_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "l2t_gym"


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
    )


def _vision_loaders() -> dict[str, Callable[[Path, bool], RawData]]:
    from l2t_gym.data.vision import load_cifar10, load_mnist

    return {"mnist": load_mnist, "cifar10": load_cifar10}


def load_raw(name: str, root: Path | None, download: bool) -> RawData:
    """Load dataset ``name`` ("digits", "mnist", "cifar10", "imdb") from ``root`` (None:
    default_root())."""
    if name == "digits":
        return load_digits()
    if name == "imdb":
        from l2t_gym.data.imdb import load_imdb  # lazily: only the text task needs it

        return load_imdb(Path(root) if root is not None else default_root(), download)
    loaders = _vision_loaders()
    if name not in loaders:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of digits, imdb, {', '.join(loaders)}"
        )
    return loaders[name](Path(root) if root is not None else default_root(), download)
