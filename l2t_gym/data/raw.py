"""What every dataset loader returns (:class:`RawData`), the one check every RawData passes
(:func:`check_raw`), the error raised when files are missing or unusable, and where datasets
live by default. Loaders import this module; it imports none.

The check runs when a RawData is made, whoever makes it (a loader, :meth:`RawData.from_arrays`,
a user's own code), so no route to an env can skip it: data that would misalign labels, crash a
feature deep inside a step, or silently leave a class out of the folds is refused at loading, with
an error naming the file, folder or argument it came from and saying what was expected.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

#: The four arrays of every dataset, by their field names, and by split.
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
SPLITS = (("train", "x_train", "y_train"), ("test", "x_test", "y_test"))


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk, its files do not hold a usable dataset, or it could not (or was
    not allowed to) be downloaded."""


@dataclass(frozen=True)
class Origin:
    """Where a :class:`RawData`'s arrays came from, so that a failed check names it.

    :param names: what each array was read from (a file, a folder, an argument), by field name
        (``"x_train"``, ``"y_train"``, ``"x_test"``, ``"y_test"``, ``"extras_train"``); an array
        without an entry is called ``RawData.<field>``.
    :param input_shape: the shape one input must have where the source knows it (a loader knows
        its task's, e.g. ``(1, 28, 28)``); None to accept any, the same in train and test.
    :param files: the arrays were read from files: a failed check raises
        :class:`DatasetNotFoundError` rather than ValueError.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    files: bool = False

    def name(self, array: str) -> str:
        return self.names.get(array, f"RawData.{array}")

    def fail(self, message: str) -> NoReturn:
        raise (DatasetNotFoundError if self.files else ValueError)(message)


@dataclass(frozen=True, eq=False)
class RawData:
    """A task's official train and test sets: float32 inputs (N, ...) or int64 token ids, and
    int64 labels (N,). Checked by :func:`check_raw` when made.

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
    #: Where the arrays came from, for error messages (set by loaders and :meth:`from_arrays`).
    origin: Origin = field(default=Origin(), repr=False)

    def __post_init__(self) -> None:
        check_raw(self)

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
        """Your own arrays as a task's data, converted and then checked by :func:`check_raw`.

        :param x_train: training inputs (N, ...): floats already normalised as the student
            expects (kept as float32), or integer token ids (kept as int64). uint8 arrays are
            refused: they are nearly always raw pixels, not token ids.
        :param y_train: training labels (N,): integers in [0, num_classes), every class at least
            once (floats holding whole numbers are accepted).
        :param x_test: test inputs, of the training inputs' shape and kind.
        :param y_test: test labels (M,).
        :param num_classes: the number of classes, at least 2.
        :raises ValueError: naming the argument and saying what was expected.
        """
        origin = Origin(names={name: f"argument {name}" for name in ARRAYS})
        return cls(
            x_train=_as_inputs(x_train, "x_train"),
            y_train=_as_labels(y_train, "y_train"),
            x_test=_as_inputs(x_test, "x_test"),
            y_test=_as_labels(y_test, "y_test"),
            num_classes=_as_num_classes(num_classes),
            origin=origin,
        )


# -- the check ---------------------------------------------------------------------------------
def check_raw(raw: RawData) -> None:
    """Check everything the env relies on, in one pass over each array.

    * **counts**: one label per input in each split, and at least one instance;
    * **shapes**: labels (N,); inputs (N, ...) of one shape in train and test, and the shape the
      source promises (``raw.origin.input_shape``) where it knows one;
    * **dtypes**: float32 inputs or int64 token ids, the same in both splits; int64 labels;
    * **labels** in [0, num_classes), and every class present in the training set (the folds
      are stratified by class: a class with no instance would silently be left out);
    * **values**: float inputs finite; token ids in [0, vocab_size) when ``vocab_size`` is
      given, non-negative otherwise; ``vocab_size`` only for token ids;
    * **extras**: float32 (N_train, len(extra_names)), finite; names only with extras.

    The costly part is the finite check, one ``aminmax`` pass per float array (see the README for
    its cost on MNIST and CIFAR-10).

    :raises ValueError: for arrays held in memory, naming the argument or field.
    :raises DatasetNotFoundError: for arrays read from files (``raw.origin.files``), naming them.
    :raises TypeError: when an array is not a torch.Tensor.
    """
    origin = raw.origin
    num_classes = raw.num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 2:
        origin.fail(f"num_classes is {num_classes}; expected at least 2")
    for split, x_name, y_name in SPLITS:
        _check_tensor(getattr(raw, x_name), x_name)
        _check_tensor(getattr(raw, y_name), y_name)
        _check_counts(getattr(raw, x_name), getattr(raw, y_name), split, origin)
    _check_shapes_and_dtypes(raw, origin)
    for split, _, y_name in SPLITS:
        _check_labels(getattr(raw, y_name), num_classes, split, origin)
    if raw.x_train.is_floating_point():
        if raw.vocab_size is not None:
            origin.fail(
                f"vocab_size is {raw.vocab_size} but {origin.name('x_train')} holds float "
                f"inputs; expected vocab_size=None (it counts token ids)"
            )
        for _, x_name, _ in SPLITS:
            _check_finite(getattr(raw, x_name), origin.name(x_name), origin, "values")
    else:
        _check_token_ids(raw, origin)
    _check_extras(raw, origin)


def _check_tensor(value: Any, name: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"RawData.{name} must be a torch.Tensor, got {type(value).__name__}; "
            f"RawData.from_arrays converts numpy arrays"
        )


def _check_counts(x: torch.Tensor, y: torch.Tensor, split: str, origin: Origin) -> None:
    x_name, y_name = origin.name(f"x_{split}"), origin.name(f"y_{split}")
    if y.dim() != 1:
        origin.fail(f"{y_name}: labels of shape {tuple(y.shape)}; expected one per instance, (N,)")
    if x.dim() < 2 or x.shape[1:].numel() == 0:
        origin.fail(
            f"{x_name}: inputs of shape {tuple(x.shape)}; expected (N, ...), one non-empty row "
            f"per instance"
        )
    if len(x) != len(y):
        counts = (
            f"{x_name}: {len(x)} inputs but {len(y)} labels"
            if x_name == y_name
            else f"{x_name} holds {len(x)} inputs but {y_name} holds {len(y)} labels"
        )
        origin.fail(f"{counts}; expected one label per input")
    if len(y) == 0:
        origin.fail(f"{x_name}: no instances in the {split} set; expected at least one")


def _check_shapes_and_dtypes(raw: RawData, origin: Origin) -> None:
    x_train, x_test = raw.x_train, raw.x_test
    train_name, test_name = origin.name("x_train"), origin.name("x_test")
    if x_train.dtype not in (torch.float32, torch.int64):
        origin.fail(
            f"{train_name}: inputs of dtype {x_train.dtype}; expected torch.float32 (inputs "
            f"normalised as the student reads them) or torch.int64 (token ids); "
            f"RawData.from_arrays converts"
        )
    if x_test.dtype != x_train.dtype:
        origin.fail(
            f"{test_name}: inputs of dtype {x_test.dtype}; expected {x_train.dtype}, the dtype "
            f"of {train_name}"
        )
    for y_name in ("y_train", "y_test"):
        y = getattr(raw, y_name)
        if y.dtype != torch.int64:
            origin.fail(f"{origin.name(y_name)}: labels of dtype {y.dtype}; expected torch.int64")
    shape = tuple(x_train.shape[1:])
    if origin.input_shape is not None and shape != tuple(origin.input_shape):
        origin.fail(
            f"{train_name}: inputs of shape {shape}; expected {tuple(origin.input_shape)}, "
            f"the task's input shape"
        )
    if tuple(x_test.shape[1:]) != shape:
        origin.fail(
            f"{test_name}: inputs of shape {tuple(x_test.shape[1:])}; expected {shape}, the "
            f"shape of {train_name}"
        )


def _check_labels(y: torch.Tensor, num_classes: int, split: str, origin: Origin) -> None:
    name = origin.name(f"y_{split}")
    low, high = (int(v) for v in torch.aminmax(y))
    if low < 0 or high >= num_classes:
        first = int(torch.nonzero((y < 0) | (y >= num_classes))[0, 0])
        origin.fail(
            f"{name}: labels range over [{low}, {high}] (instance {first} has {int(y[first])}); "
            f"expected 0..{num_classes - 1} (num_classes={num_classes})"
        )
    if split == "train":
        absent = torch.nonzero(torch.bincount(y, minlength=num_classes) == 0).flatten().tolist()
        if absent:
            origin.fail(
                f"{name}: no training instance of class {', '.join(map(str, absent))}; expected "
                f"every class 0..{num_classes - 1} at least once (the teacher and student folds "
                f"are split class by class)"
            )


def _check_finite(x: torch.Tensor, name: str, origin: Origin, what: str) -> None:
    # aminmax propagates NaN and shows an infinity as the min or max: one pass, no (N, ...)
    # boolean mask. The mask is built only to say where the first bad value is.
    low, high = torch.aminmax(x)
    if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
        return
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
    origin.fail(
        f"{name}: NaN or infinite {what} in {int(bad.sum())} instance(s), the first instance "
        f"{int(torch.nonzero(bad)[0, 0])}; expected finite values"
    )


def _check_token_ids(raw: RawData, origin: Origin) -> None:
    vocab = raw.vocab_size
    if vocab is not None and (
        isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 1
    ):
        origin.fail(f"vocab_size is {vocab!r}; expected a positive int (or None)")
    for x_name in ("x_train", "x_test"):
        low, high = (int(v) for v in torch.aminmax(getattr(raw, x_name)))
        if low < 0:
            origin.fail(
                f"{origin.name(x_name)}: token id {low}; expected ids >= 0 (they index the "
                f"student's embedding)"
            )
        if vocab is not None and high >= vocab:
            origin.fail(
                f"{origin.name(x_name)}: token id {high}; expected ids below vocab_size={vocab}"
            )


def _check_extras(raw: RawData, origin: Origin) -> None:
    extras, names = raw.extras_train, raw.extra_names
    if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
        origin.fail(f"extra_names is {names!r}; expected a tuple of column names")
    if extras is None:
        if names:
            origin.fail(f"extra_names {names} come without extras_train; expected both or neither")
        return
    _check_tensor(extras, "extras_train")
    name = origin.name("extras_train")
    expected = (len(raw.y_train), len(names))
    if not names or tuple(extras.shape) != expected:
        origin.fail(
            f"{name}: per-instance features of shape {tuple(extras.shape)}; expected {expected}, "
            f"one row per training instance and one column per name in extra_names {names}"
        )
    if extras.dtype != torch.float32:
        origin.fail(f"{name}: per-instance features of dtype {extras.dtype}; expected float32")
    _check_finite(extras, name, origin, "features")


# -- from_arrays' conversions -------------------------------------------------------------------
def _tensor(value: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"argument {name}: an array of dtype {array.dtype}; expected numbers")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(array)


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _as_inputs(value: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = _tensor(value, name)
    if t.dtype == torch.uint8:
        raise ValueError(
            f"argument {name}: uint8 inputs, which look like raw pixels; expected floats "
            f"normalised as the student reads them (l2t_gym.data.vision.normalise_mnist and "
            f"normalise_cifar10 do that for MNIST and CIFAR-10 images), or token ids as a wider "
            f"integer type"
        )
    if t.is_floating_point():
        return t.float().contiguous()
    if _is_integer(t):
        return t.long().contiguous()
    raise ValueError(
        f"argument {name}: inputs of dtype {t.dtype}; expected floats or integer token ids"
    )


def _as_labels(value: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = _tensor(value, name)
    if t.is_floating_point():
        # Labels often arrive as floats (pandas, .mat files); truncating 1.5 to 1 would hide a
        # mix-up, so only whole numbers pass.
        whole = torch.isfinite(t) & (t == torch.round(t))
        if not bool(whole.all()):
            first = int(torch.nonzero(~whole.flatten())[0, 0])
            raise ValueError(
                f"argument {name}: a label of {t.flatten()[first].item()} (instance {first}); "
                f"expected whole numbers, the class indices"
            )
    elif t.is_complex():
        raise ValueError(f"argument {name}: labels of dtype {t.dtype}; expected integers")
    return t.long()


def _as_num_classes(value: int) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"argument num_classes: {value!r}; expected a whole number of classes, at least 2"
        ) from None


def default_root() -> Path:
    """Where datasets live unless ``data_root`` says otherwise: ``$L2T_DATA``, else a user cache."""
    env = os.environ.get("L2T_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "l2t_gym"
