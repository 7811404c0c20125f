"""Data: datasets as tensors on the device, loaded once per process and split into folds.

:data:`DATASETS` maps a dataset name (a task's ``dataset``) to its loader, a function
``(root, download) -> RawData``; adding a dataset is one loader and one entry there. Every
:class:`RawData` is checked when it is made (:func:`check_raw`), so whatever a loader or a user
hands over is checked before an env sees it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from l2t_gym.data.digits import load_digits
from l2t_gym.data.folds import FOLDS, SPLIT_SEED, Fold, make_folds
from l2t_gym.data.idx import read_mnist_idx
from l2t_gym.data.imdb import load_imdb
from l2t_gym.data.raw import DatasetNotFoundError, Origin, RawData, check_raw, default_root
from l2t_gym.data.vision import load_cifar10, load_mnist

__all__ = [
    "DATASETS",
    "FOLDS",
    "SPLIT_SEED",
    "DatasetNotFoundError",
    "DeviceData",
    "Fold",
    "Origin",
    "RawData",
    "check_raw",
    "clear_cache",
    "default_root",
    "load_dataset",
    "load_raw",
    "make_folds",
    "read_mnist_idx",
]


Loader = Callable[[Path, bool], RawData]

#: Dataset name -> loader ``(root, download) -> RawData``. Digits ignores both arguments.
DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "imdb": load_imdb,
}


def load_raw(name: str, root: str | Path | None, download: bool) -> RawData:
    """Load dataset ``name`` (a key of :data:`DATASETS`) from ``root`` (None: default_root()),
    as normalised CPU tensors, checked as every RawData is (:func:`check_raw`).

    :raises ValueError: for an unknown name.
    :raises DatasetNotFoundError: when the files are missing, or hold data the check refuses.
    :raises TypeError: when the loader returns something other than a RawData.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    root_path = Path(root).expanduser() if root is not None else default_root()
    raw = DATASETS[name](root_path, download)
    if not isinstance(raw, RawData):
        raise TypeError(f"the {name!r} loader returned {type(raw).__name__}; expected a RawData")
    return raw


@dataclass(frozen=True)
class DeviceData:
    """One dataset on one device, shared read-only by every env of the task in this process.

    ``y_train_host`` (and ``extras_train_host``, the task's per-instance data features) mirror
    the training set on the host: the observation's data features are built there, so nothing
    but the logits travels back from the device.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_host: np.ndarray
    num_classes: int
    extras_train_host: np.ndarray | None = None
    extra_names: tuple[str, ...] = ()
    #: Token ids the inputs may hold (padding included): the student's embedding size. The
    #: loader's vocabulary, or for integer arrays passed in without one, their largest id + 1.
    vocab_size: int | None = None
    #: The :func:`load_dataset` arguments that made it: how a copy in another process finds it.
    origin: tuple = field(default=(), compare=False, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __deepcopy__(self, memo: dict) -> DeviceData:
        # Read-only and shared by every env of the process: a copied env shares it too.
        return self

    def __reduce__(self):
        # Pickled as the way to load it: a process that unpickles an env loads (or finds in its
        # own cache) the dataset once, instead of carrying a copy per env.
        return load_dataset, self.origin


_CACHE: dict[tuple[str, str, str], DeviceData] = {}
# Arrays a user passed in: cached per object, and forgotten with it.
_ARRAY_CACHE: weakref.WeakKeyDictionary[RawData, dict[str, DeviceData]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def load_dataset(
    name: str,
    root: str | Path | None,
    download: bool,
    device: torch.device | str,
    arrays: RawData | None = None,
) -> DeviceData:
    """Return dataset ``name`` (or the given ``arrays``) on ``device``, loading it on the first
    call in this process; later calls, from any env, share the same tensors."""
    device = torch.device(device)
    with _LOCK:
        if arrays is not None:
            per_device = _ARRAY_CACHE.setdefault(arrays, {})
            if str(device) not in per_device:
                origin = (name, None, False, str(device), arrays)
                per_device[str(device)] = _to_device(arrays, device, origin)
            return per_device[str(device)]
        root_path = Path(root).expanduser() if root is not None else default_root()
        key = (name, str(root_path.resolve()) if name != "digits" else "", str(device))
        if key not in _CACHE:
            origin = (name, str(root_path), download, str(device))
            _CACHE[key] = _to_device(load_raw(name, root_path, download), device, origin)
        return _CACHE[key]


def _to_device(raw: RawData, device: torch.device, origin: tuple) -> DeviceData:
    return DeviceData(
        origin=origin,
        x_train=raw.x_train.to(device).contiguous(),
        y_train=raw.y_train.to(device),
        x_test=raw.x_test.to(device).contiguous(),
        y_test=raw.y_test.to(device),
        y_train_host=raw.y_train.numpy().copy(),
        num_classes=raw.num_classes,
        extras_train_host=(
            None if raw.extras_train is None else raw.extras_train.float().numpy().copy()
        ),
        extra_names=tuple(raw.extra_names),
        vocab_size=raw.vocab_size if raw.vocab_size is not None else _largest_id(raw),
    )


def _largest_id(raw: RawData) -> int | None:
    # Over both splits: an id seen only in the test set must still have an embedding row.
    if raw.x_train.is_floating_point():
        return None
    return int(max(raw.x_train.max(), raw.x_test.max())) + 1


def clear_cache() -> None:
    """Forget every loaded dataset (tests use this to load fabricated files afresh)."""
    with _LOCK:
        _CACHE.clear()
        _ARRAY_CACHE.clear()
