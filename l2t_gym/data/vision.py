"""MNIST and CIFAR-10 through torchvision's own dataset classes.

torchvision keeps the real on-disk layouts, mirrors and checksums; this module only reads the
arrays those classes hold (never their per-item ``__getitem__``), normalises them in a few whole-
array tensor ops, and turns torchvision's terse failures into errors that say where the files go.
MNIST may also come from a folder that holds its IDX files directly (``l2t_gym.data.idx``), as
they are published: gzipped, which torchvision reads only after downloading them itself.

torchvision checks neither that labels match images in number nor that they lie in 0..9: every
array is handed to :class:`RawData`, whose check does, naming the file. CIFAR-10's archive is
downloaded with torchvision's URL and md5 but unpacked by ``l2t_gym.data.archive``, which refuses
members that would land outside the data root (torchvision's ``extractall`` trusts them).

torchvision is imported when a loader runs, not with this module: it takes about as long to
import as torch itself, and the embedded task never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2t_gym.data.archive import download_and_extract
from l2t_gym.data.idx import MNIST_SPLIT_FILES, find_mnist_files, read_mnist_idx
from l2t_gym.data.raw import DatasetNotFoundError, Origin, RawData

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
MNIST_SHAPE = (1, 28, 28)
CIFAR10_SHAPE = (3, 32, 32)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)


# What the expected files are, for someone fetching them by hand.
_FILE_NOTES = {
    "MNIST": "uncompressed IDX files, i.e. the four .gz archives unpacked",
    "CIFAR-10": "the contents of cifar-10-python.tar.gz",
}
_ALTERNATIVES = {
    "MNIST": (
        " Or make data_root a folder that holds the four IDX files themselves, gzipped or not."
    ),
}


def mnist_folder(root: Path) -> Path:
    """The folder torchvision reads MNIST from (it names it after its class, ``MNIST``)."""
    return Path(root) / "MNIST" / "raw"


def cifar10_folder(root: Path) -> Path:
    """The folder torchvision reads CIFAR-10 from (``CIFAR10.base_folder``)."""
    return Path(root) / "cifar-10-batches-py"


def load_mnist(root: Path, download: bool) -> RawData:
    """MNIST as (N, 1, 28, 28) float32 images, normalised with the usual mean and std.

    Read through torchvision from ``<root>/MNIST/raw`` (downloaded there if ``download``), unless
    that folder holds none of the four files and ``root`` itself holds some of them, gzipped or
    not: then from ``root`` directly, never downloading (see :func:`load_mnist_idx_folder`).
    """
    folder = mnist_folder(root)
    if not any((folder / f).is_file() for f in MNIST_FILES) and any(
        find_mnist_files(root).values()
    ):
        return load_mnist_idx_folder(root)
    from torchvision.datasets import MNIST

    train = _open(MNIST, "MNIST", root, folder, MNIST_FILES, train=True, download=download)
    test = _open(MNIST, "MNIST", root, folder, MNIST_FILES, train=False, download=download)
    origin = _mnist_origin({name: folder / name for name in MNIST_FILES})
    # torchvision holds MNIST as a (N, 28, 28) uint8 tensor and int64 labels, whatever the files'
    # sizes or values: RawData's check is what compares them.
    return RawData(
        x_train=_read(normalise_mnist, train.data, origin, "x_train"),
        y_train=_read(_labels, train.targets, origin, "y_train"),
        x_test=_read(normalise_mnist, test.data, origin, "x_test"),
        y_test=_read(_labels, test.targets, origin, "y_test"),
        num_classes=10,
        origin=origin,
    )


def load_mnist_idx_folder(folder: Path) -> RawData:
    """MNIST from a folder that holds its four IDX files directly, each gzipped or not;
    normalised exactly as through torchvision.

    Nothing is downloaded into such a folder: it is taken to hold what its owner means to use.
    """
    folder = Path(folder)
    missing = [name for name, path in find_mnist_files(folder).items() if path is None]
    if missing:
        raise DatasetNotFoundError(
            f"MNIST in {folder} is incomplete: it lacks {', '.join(missing)} (each may be "
            f"gzipped, with .gz appended). A folder holding MNIST's IDX files directly must hold "
            f"all four ({', '.join(MNIST_FILES)}) and is never downloaded into. To use the "
            f"splits you have, read them with l2t_gym.data.read_mnist_idx(folder, split) and "
            f"bring your own arrays: L2TEnv('mnist', data=RawData.from_arrays(x_train, y_train, "
            f"x_test, y_test, num_classes=10)). To have torchvision download MNIST instead, "
            f"choose a data_root with no IDX files in it (it fetches into <data_root>/MNIST/raw)."
        )
    x_train, y_train = read_mnist_idx(folder, "train")
    x_test, y_test = read_mnist_idx(folder, "test")
    return RawData(
        x_train=normalise_mnist(x_train),
        y_train=torch.from_numpy(y_train),
        x_test=normalise_mnist(x_test),
        y_test=torch.from_numpy(y_test),
        num_classes=10,
        origin=_mnist_origin(find_mnist_files(folder)),
    )


def _mnist_origin(paths: dict[str, Path | None]) -> Origin:
    """MNIST's arrays named by the IDX files they were read from (published name -> path)."""
    names = {}
    for split, (images, labels) in MNIST_SPLIT_FILES.items():
        names[f"x_{split}"], names[f"y_{split}"] = str(paths[images]), str(paths[labels])
    return Origin(names=names, input_shape=MNIST_SHAPE, files=True)


def normalise_mnist(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 MNIST images (N, 28, 28) or (N, 1, 28, 28), pixels 0..255, -> the float32
    (N, 1, 28, 28) the MNIST task trains on: ``(x / 255 - 0.1307) / 0.3081``, computed exactly as
    the loader computes it, so arrays from elsewhere match it bit for bit."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        # Floats in 0..1 or 0..255 both exist in the wild; guessing which would go unnoticed.
        raise TypeError(
            f"expected uint8 pixels 0..255, got {t.dtype}; convert whole-numbered 0..255 "
            f"values with .astype(np.uint8) first"
        )
    shape = tuple(t.shape)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or tuple(t.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected images (N, 28, 28) or (N, 1, 28, 28), got {shape}")
    return _normalise(t, MNIST_MEAN, MNIST_STD)


def load_cifar10(root: Path, download: bool) -> RawData:
    """CIFAR-10 as (N, 3, 32, 32) float32 images, normalised per channel.

    Read through torchvision from ``<root>/cifar-10-batches-py``; with ``download``, when a batch
    is missing or fails its md5, the archive is fetched (md5-checked) and unpacked there safely.
    """
    from torchvision.datasets import CIFAR10

    folder = cifar10_folder(root)
    if download and not _cifar10_intact(folder):
        _download_cifar10(root, folder)
    train = _open(CIFAR10, "CIFAR-10", root, folder, CIFAR10_FILES, train=True, download=False)
    test = _open(CIFAR10, "CIFAR-10", root, folder, CIFAR10_FILES, train=False, download=False)
    batches = f"{folder}/data_batch_1..5"
    origin = Origin(
        names={
            "x_train": batches,
            "y_train": batches,
            "x_test": str(folder / "test_batch"),
            "y_test": str(folder / "test_batch"),
        },
        input_shape=CIFAR10_SHAPE,
        files=True,
    )
    # torchvision holds CIFAR-10 as a (N, 32, 32, 3) uint8 numpy array (channels last, as PIL
    # wants) and a list of ints, whatever the pickles hold: RawData's check compares them.
    return RawData(
        x_train=_read(normalise_cifar10, train.data, origin, "x_train"),
        y_train=_read(_labels, train.targets, origin, "y_train"),
        x_test=_read(normalise_cifar10, test.data, origin, "x_test"),
        y_test=_read(_labels, test.targets, origin, "y_test"),
        num_classes=10,
        origin=origin,
    )


def _cifar10_intact(folder: Path) -> bool:
    """Whether every CIFAR-10 batch is there with its md5, as torchvision checks before it would
    download (its own ``check_integrity``, looked up at call time so tests can patch it)."""
    from torchvision.datasets import cifar

    files = cifar.CIFAR10.train_list + cifar.CIFAR10.test_list
    return all(cifar.check_integrity(str(folder / name), md5) for name, md5 in files)


def _download_cifar10(root: Path, folder: Path) -> None:
    """Fetch torchvision's CIFAR-10 archive (its URL and md5) and unpack it safely, rather than
    through ``CIFAR10(download=True)``, whose ``extractall`` trusts the members' names."""
    from torchvision.datasets import CIFAR10

    try:
        download_and_extract(CIFAR10.url, root, CIFAR10.filename, CIFAR10.tgz_md5)
    except Exception as err:
        # As in _open: urllib, tarfile, the md5 check and the member check raise their own types.
        raise DatasetNotFoundError(
            f"Downloading CIFAR-10 into {folder} failed ({type(err).__name__}: {err}). "
            f"{_guidance('CIFAR-10', root, folder, CIFAR10_FILES)}"
        ) from err


def _labels(targets: Any) -> torch.Tensor:
    """Labels as int64, from a tensor or a list of ints."""
    return torch.as_tensor(np.asarray(targets, dtype=np.int64))


def _read(
    convert: Callable[[Any], torch.Tensor], value: Any, origin: Origin, name: str
) -> torch.Tensor:
    """``convert(value)``, its complaints (a shape, a dtype) turned into a DatasetNotFoundError
    naming the file the array was read from."""
    try:
        return convert(value)
    except (TypeError, ValueError) as err:
        raise DatasetNotFoundError(f"{origin.name(name)}: {err}") from err


def normalise_cifar10(images: np.ndarray) -> torch.Tensor:
    """uint8 CIFAR-10 images (N, 32, 32, 3), channels last as published, pixels 0..255, -> the
    float32 (N, 3, 32, 32) the CIFAR-10 task trains on: ``(x / 255 - mean) / std`` per channel,
    computed exactly as the loader computes it.

    :raises TypeError: for pixels that are not uint8.
    :raises ValueError: for another shape.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels 0..255, got {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"expected images (N, 32, 32, 3), got {images.shape}")
    # Every model here expects channels first.
    return _normalise(_channels_first(images), CIFAR10_MEAN, CIFAR10_STD)


def _channels_first(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) numpy -> (N, C, H, W) tensor view, no copy."""
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def _normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, contiguous.

    The same order of operations as ``ToTensor`` + ``Normalize``, so values match what torchvision's
    transforms would give, but on the whole array at once.
    """
    out = torch.empty(images.shape, dtype=torch.float32)
    out.copy_(images)  # one pass: casts and lays out a permuted view contiguously
    shape = (1, len(mean), 1, 1)
    out.div_(255.0)
    out.sub_(torch.tensor(mean, dtype=torch.float32).view(shape))
    out.div_(torch.tensor(std, dtype=torch.float32).view(shape))
    return out


def _open(
    cls: type,
    name: str,
    root: Path,
    folder: Path,
    files: Sequence[str],
    *,
    train: bool,
    download: bool,
) -> Any:
    """Construct torchvision's dataset (a ``VisionDataset``), or raise a DatasetNotFoundError
    that says what to do."""
    missing = [f for f in files if not (folder / f).is_file()]
    will_download = download and bool(missing)
    try:
        return cls(root, train=train, download=download)
    except Exception as err:
        # torchvision reports absent, truncated or mis-checksummed data with a mix of RuntimeError,
        # AssertionError, pickle and OS errors, and a failed download with whatever urllib,
        # tarfile or its own checks raise. All mean "the files are not usable"; the cause is
        # chained, so nothing is lost by catching them all.
        guide = _guidance(name, root, folder, files)
        if will_download:
            raise DatasetNotFoundError(
                f"Downloading {name} into {folder} failed ({type(err).__name__}: {err}). {guide}"
            ) from err
        if missing:
            lacks = "" if len(missing) == len(files) else f": it lacks {', '.join(missing)}"
            raise DatasetNotFoundError(f"{name} was not found in {folder}{lacks}. {guide}") from err
        raise DatasetNotFoundError(
            f"{name} files in {folder} are corrupted or unreadable "
            f"({type(err).__name__}: {err}). Delete them and fetch them again. {guide}"
        ) from err


def _guidance(name: str, root: Path, folder: Path, files: Sequence[str]) -> str:
    return (
        f"{name} is read from {folder}, which must hold {', '.join(files)} "
        f"({_FILE_NOTES[name]}). "
        f"Pass download=True to fetch them (needs network), or copy them there yourself."
        f"{_ALTERNATIVES.get(name, '')} "
        f"The data root (here {root}) is chosen by data_root= or, failing that, "
        f"the L2T_DATA environment variable."
    )
