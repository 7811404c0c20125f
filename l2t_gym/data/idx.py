"""MNIST's IDX files read directly, gzipped or not, from a folder that holds them as published.

torchvision reads MNIST only from ``<root>/MNIST/raw`` and only uncompressed; this module reads
the files wherever they lie, so a folder of ``*-idx?-ubyte.gz`` files needs no unpacking, no
network and no torchvision. It knows nothing about normalisation or environments.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from l2t_gym.data.raw import DatasetNotFoundError

#: The IDX files of each MNIST split, by their published names (without ".gz").
MNIST_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_IMAGE_SIZE = (28, 28)
MNIST_NUM_CLASSES = 10

# An IDX file opens with two zero bytes, a type code and the number of dimensions, then each
# dimension as a big-endian uint32, then the values row-major. MNIST uses only unsigned bytes.
_IDX_UBYTE = 0x08
_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short",
    0x0C: "int",
    0x0D: "float",
    0x0E: "double",
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read one unsigned-byte IDX file with ``ndim`` dimensions, gzipped or not.

    Compression is told by the file's first bytes, not its name. Raises FileNotFoundError if
    the file is absent and ValueError, saying what was expected, if its content is not such a
    file (a bad header, a truncated or overlong body, a broken gzip stream).
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path.name}: broken gzip stream ({err})") from err
    if len(data) < 4:
        raise ValueError(f"{path.name}: {len(data)} bytes, too short for the 4-byte IDX header")
    zero, type_code, dims = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(
            f"{path.name}: not an IDX file (it opens with {data[:4].hex()}; IDX files open "
            f"with two zero bytes, a type code and the number of dimensions)"
        )
    if type_code != _IDX_UBYTE:
        kind = _IDX_TYPES.get(type_code, "unknown")
        raise ValueError(
            f"{path.name}: IDX type code 0x{type_code:02x} ({kind}); expected 0x08 (unsigned byte)"
        )
    if dims != ndim:
        raise ValueError(f"{path.name}: {dims} dimensions; expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path.name}: truncated inside its header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    body = len(data) - header
    if body < expected:
        raise ValueError(
            f"{path.name}: truncated: its header announces shape {shape} ({expected} bytes of "
            f"data), the file holds {body}"
        )
    if body > expected:
        raise ValueError(
            f"{path.name}: {body - expected} bytes after the {expected} its header "
            f"(shape {shape}) announces"
        )
    # frombuffer views the immutable bytes; the copy gives callers an array they own and may write.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def find_mnist_files(folder: str | Path) -> dict[str, Path | None]:
    """Each of MNIST's four IDX files (published name -> path) found directly in ``folder``,
    uncompressed or with ".gz" (uncompressed preferred when both lie there); None where absent."""
    folder = Path(folder)
    found: dict[str, Path | None] = {}
    for names in MNIST_SPLIT_FILES.values():
        for name in names:
            candidates = (folder / name, folder / f"{name}.gz")
            found[name] = next((p for p in candidates if p.is_file()), None)
    return found


def read_mnist_idx(
    folder: str | Path, split: Literal["train", "test"] = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """One MNIST split from a folder that holds its IDX files directly, gzipped or not.

    Returns the images as uint8 (N, 28, 28), pixels 0..255 as published, and the labels as
    int64 (N,). ``l2t_gym.data.vision.normalise_mnist`` turns the images into what the MNIST
    task trains on. Only the split's two files need be there: with the test files alone,

        x, y = read_mnist_idx(folder, "test")
        x = normalise_mnist(x)
        train, test = ...  # index arrays of your split (benchmarks/mnist_offline.py has one)
        data = RawData.from_arrays(x[train], y[train], x[test], y[test], num_classes=10)
        env = L2TEnv("mnist", data=data)

    Raises DatasetNotFoundError naming the split's missing files, or saying which file is
    corrupted and how.
    """
    if split not in MNIST_SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(folder)
    found = find_mnist_files(folder)
    image_name, label_name = MNIST_SPLIT_FILES[split]
    image_path, label_path = found[image_name], found[label_name]
    if image_path is None or label_path is None:
        missing = [name for name in (image_name, label_name) if found[name] is None]
        raise DatasetNotFoundError(
            f"MNIST's {split} split is not in {folder}: it lacks {', '.join(missing)} "
            f"(each read as published, uncompressed or gzipped with .gz appended)."
        )
    try:
        images = read_idx(image_path, ndim=3)
        labels = read_idx(label_path, ndim=1)
        _check_split(images, labels, image_path.name, label_path.name)
    except ValueError as err:
        raise DatasetNotFoundError(
            f"MNIST's {split} split in {folder} is corrupted or unreadable: {err}. Fetch the "
            f"files again; each must be the published IDX file, gzipped or not."
        ) from err
    return images, labels.astype(np.int64)


def _check_split(images: np.ndarray, labels: np.ndarray, image_name: str, label_name: str) -> None:
    if images.shape[1:] != MNIST_IMAGE_SIZE:
        raise ValueError(
            f"{image_name}: images of {images.shape[1]}x{images.shape[2]} pixels; expected 28x28"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{image_name} holds {len(images)} images but {label_name} {len(labels)} labels"
        )
    if len(labels) == 0:
        raise ValueError(f"{label_name}: no instances")
    if labels.max() >= MNIST_NUM_CLASSES:
        raise ValueError(f"{label_name}: a label of {int(labels.max())}; expected digits 0..9")
