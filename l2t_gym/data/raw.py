"""What every dataset loader returns (:class:`RawData`), the error it raises when the files are
not there, and where datasets live by default. Loaders import this module; it imports none."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class RawData:
    """A task's official train and test sets: float32 inputs (N, ...) and int64 labels (N,).

    Build one from your own arrays with :meth:`from_arrays` and pass it to ``L2TEnv(data=...)``
    to run a task on data that needs no loader (compared by identity, so it can key a cache).
    It is treated as read-only: copying an env, or Gymnasium's copy of ``gym.make``'s keyword
    arguments in ``env.spec``, shares it instead of copying it.
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

    def __deepcopy__(self, memo: dict) -> RawData:
        return self

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
