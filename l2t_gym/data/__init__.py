"""Data: datasets as tensors on the device, loaded once per process and split into folds."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2t_gym.data.folds import SPLIT_SEED, SPLITS, Fold, make_folds
from l2t_gym.data.sources import DatasetNotFoundError, RawData, default_root, load_raw

__all__ = [
    "SPLITS",
    "SPLIT_SEED",
    "DatasetNotFoundError",
    "DeviceData",
    "Fold",
    "RawData",
    "clear_cache",
    "default_root",
    "load_dataset",
    "make_folds",
]


@dataclass(frozen=True)
class DeviceData:
    """One dataset on one device, shared read-only by every env of the task in this process.

    ``y_train_host`` mirrors the training labels on the host: the observation's label one-hot is
    built there, so no label ever travels back from the device.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_host: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


_CACHE: dict[tuple[str, str, str], DeviceData] = {}
_LOCK = threading.Lock()


def load_dataset(
    name: str, root: str | Path | None, download: bool, device: torch.device
) -> DeviceData:
    """Return dataset ``name`` on ``device``, loading it on the first call in this process."""
    root_path = Path(root).expanduser() if root is not None else default_root()
    key = (name, str(root_path.resolve()) if name != "digits" else "", str(device))
    with _LOCK:
        if key not in _CACHE:
            raw = load_raw(name, root_path, download)
            _CACHE[key] = DeviceData(
                x_train=raw.x_train.to(device).contiguous(),
                y_train=raw.y_train.to(device),
                x_test=raw.x_test.to(device).contiguous(),
                y_test=raw.y_test.to(device),
                y_train_host=raw.y_train.numpy().copy(),
                num_classes=raw.num_classes,
            )
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded dataset (tests use this to load fabricated files afresh)."""
    with _LOCK:
        _CACHE.clear()
