"""Tiny MNIST and CIFAR-10 sets written in the real on-disk formats, so torchvision's own classes
(and so the product's loaders) read them exactly as they would read the real files. MNIST can also
be written as published (gzipped IDX files in one folder), for the loader's own IDX reader; CIFAR-10
also as the JPEG mirror the offline route reads; and tarballs with any member, unsafe ones too.

Images are class-dependent: each class has a fixed random prototype, and every image is its class
prototype plus seeded noise, so a student can learn them and a bad teacher can be told apart.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
MNIST_SHAPE = (28, 28)
CIFAR_SHAPE = (3, 32, 32)
# CIFAR-10's classes in label order (batches.meta), as the JPEG mirror names its folders.
CIFAR10_CLASSES = (
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

# The IDX "magic" number is two zero bytes, a type code (0x08: unsigned byte) and the number of
# dimensions; it and every dimension size are big-endian uint32.
IDX_UBYTE = 0x08


@dataclass(frozen=True)
class Fabricated:
    """What was written: the data root and the raw uint8 images (N, C, H, W) and int64 labels."""

    root: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def balanced_labels(n: int, rng: np.random.Generator, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """``n`` labels in shuffled order, every class ``n // num_classes`` or one more times."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def class_images(
    labels: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator, noise: float = 25.0
) -> np.ndarray:
    """uint8 images of ``shape``: a per-class prototype plus Gaussian noise.

    The prototypes come from a generator of their own, so train and test images of a class share
    them whatever ``rng`` is.
    """
    prototypes = np.random.default_rng(0).uniform(40.0, 215.0, size=(NUM_CLASSES, *shape))
    images = prototypes[labels] + rng.normal(0.0, noise, size=(len(labels), *shape))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array in the IDX format MNIST ships in (uncompressed)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", (IDX_UBYTE << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array as an IDX file at ``path``, or gzipped at ``path`` + ".gz" as MNIST is
    published; returns the path written."""
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, mtime=0)  # mtime 0: the same bytes on every run
    path.write_bytes(data)
    return path


def write_mnist(
    root: Path,
    n_train: int = 400,
    n_test: int = 100,
    seed: int = 0,
    *,
    flat: bool = False,
    gz: bool = False,
) -> Fabricated:
    """Write the four MNIST IDX files: by default uncompressed into ``<root>/MNIST/raw/``, where
    torchvision reads them; with ``flat`` into ``root`` itself, and with ``gz`` gzipped with
    ".gz" appended, as they are published. The same seed writes the same arrays in every layout.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) if flat else Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = balanced_labels(n, rng)
        images = class_images(labels, MNIST_SHAPE, rng)
        write_idx(raw / f"{split}-images-idx3-ubyte", images, gz=gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels.astype(np.uint8), gz=gz)
        arrays[split] = (images[:, None], labels)
    return Fabricated(Path(root), *arrays["train"], *arrays["t10k"])


def _write_pickle(path: Path, obj: dict) -> None:
    # Protocol 2 is what the real (Python 2 era) CIFAR pickles use.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(
    root: Path, n_per_batch: int = 80, n_test: int = 100, seed: int = 0
) -> Fabricated:
    """Write ``<root>/cifar-10-batches-py/`` with the five training batches, the test batch and
    ``batches.meta``: pickled dicts whose "data" rows are 3,072 uint8 values, the red plane, then
    green, then blue, each row-major 32x32.

    Their md5 sums are not the real ones, so torchvision refuses them unless the test patches its
    integrity check (the ``cifar_md5_patch`` fixture).
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", f"training batch {i} of 5", n_per_batch) for i in range(1, 6)]
    batches.append(("test_batch", "testing batch 1 of 1", n_test))
    written = {}
    for filename, batch_label, n in batches:
        labels = balanced_labels(n, rng)
        images = class_images(labels, CIFAR_SHAPE, rng)
        _write_pickle(
            folder / filename,
            {
                "batch_label": batch_label,
                "labels": [int(v) for v in labels],
                "data": images.reshape(n, -1),
                "filenames": [f"fabricated_{filename}_{k}.png" for k in range(n)],
            },
        )
        written[filename] = (images, labels)
    _write_pickle(
        folder / "batches.meta",
        {
            "num_cases_per_batch": n_per_batch,
            "label_names": list(CIFAR10_CLASSES),
            "num_vis": int(np.prod(CIFAR_SHAPE)),
        },
    )
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    return Fabricated(
        root=Path(root),
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=written["test_batch"][0],
        y_test=written["test_batch"][1],
    )


def edit_cifar_batch(root: Path, filename: str, **changes: object) -> None:
    """Replace entries of one written CIFAR-10 pickle (``labels=[...]``, ``data=...``), keeping
    the real format, to fabricate a damaged batch."""
    path = Path(root) / "cifar-10-batches-py" / filename
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch.update(changes)
    _write_pickle(path, batch)


def file_exists_only(fpath: str | os.PathLike, md5: str | None = None) -> bool:
    """Stand-in for torchvision's ``check_integrity`` that skips the md5 comparison."""
    return os.path.isfile(fpath)


# -- IMDB ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FabricatedText:
    """A written aclImdb tree: the data root and the (text, label) reviews of each split, in
    the order the loader reads them (negatives, then positives, each by file id)."""

    root: Path
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def write_review_tree(
    root: Path,
    train: list[tuple[str, int]],
    test: list[tuple[str, int]],
    unsup: tuple[str, ...] = (),
) -> Path:
    """Write ``<root>/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` (label 1 = pos) as the
    official archive lays them out, plus ``train/unsup/<id>_0.txt`` files, which the loader must
    ignore. Ids count from 0 within each folder, as in the archive. Returns the aclImdb folder."""
    folder = Path(root) / "aclImdb"
    for split, reviews in (("train", train), ("test", test)):
        counters = {0: 0, 1: 0}
        for sub in ("pos", "neg"):
            (folder / split / sub).mkdir(parents=True, exist_ok=True)
        for text, label in reviews:
            k = counters[label]
            counters[label] += 1
            rating = 7 + k % 4 if label else 1 + k % 4
            name = f"{k}_{rating}.txt"
            (folder / split / ("pos" if label else "neg") / name).write_text(text, "utf-8")
    if unsup:
        (folder / "train" / "unsup").mkdir(parents=True, exist_ok=True)
        for k, text in enumerate(unsup):
            (folder / "train" / "unsup" / f"{k}_0.txt").write_text(text, "utf-8")
    return folder


# Neutral words every review draws from; the sentiment sits in one word per class.
_FILLER_TEXT = (
    "the movie film plot actor scene story it was and a of to this that i saw "
    "director music camera ending character time watch don't it's"
)
_FILLER = _FILLER_TEXT.split()


def separable_reviews(n: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """``n`` reviews, classes alternating: filler words with "great" (positive) or "awful"
    (negative) at one to three random places, HTML line breaks and mixed case."""
    reviews = []
    for k in range(n):
        label = k % 2
        words = list(rng.choice(_FILLER, size=int(rng.integers(5, 40))))
        for _ in range(int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), "Great" if label else "awful")
        cut = int(rng.integers(1, len(words)))
        text = " ".join(words[:cut]) + ".<br /><br />" + " ".join(words[cut:]) + "!"
        reviews.append((text, label))
    return reviews


def write_imdb(root: Path, n_train: int = 200, n_test: int = 40, seed: int = 0) -> FabricatedText:
    """A trivially separable aclImdb tree (see :func:`separable_reviews`), classes balanced."""
    rng = np.random.default_rng(seed)
    train, test = separable_reviews(n_train, rng), separable_reviews(n_test, rng)
    write_review_tree(root, train, test, unsup=("an unlabelled review, never read",))
    return FabricatedText(Path(root), _by_label(train), _by_label(test))


def _by_label(reviews: list[tuple[str, int]]) -> list[tuple[str, int]]:
    # The loader's order: the neg folder, then pos, each by id (= order of writing here).
    return [r for r in reviews if r[1] == 0] + [r for r in reviews if r[1] == 1]


# -- archives -------------------------------------------------------------------------------------
Member = tuple[tarfile.TarInfo, bytes | None]


def file_member(name: str, data: bytes = b"fabricated") -> Member:
    """A regular file named ``name`` (any name, ``../x`` and ``/x`` included) holding ``data``."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, hard: bool = False) -> Member:
    """A symbolic (or hard) link named ``name`` pointing at ``target``."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def device_member(name: str) -> Member:
    """A character device node (as /dev/null is), which unpacking as root would create."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info, None


def tar_gz(folder: Path | None = None, arcname: str = "", extra: tuple[Member, ...] = ()) -> bytes:
    """A gzipped tarball, as datasets are published: ``folder`` stored under ``arcname`` (if
    given), then the ``extra`` members in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if folder is not None:
            tar.add(folder, arcname=arcname)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


# -- the CIFAR-10 JPEG mirror (l2t_gym.data.cifar10_jpg) ------------------------------------------
def jpeg(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, 3) pixels as JPEG bytes (quality 95)."""
    from PIL import Image  # only the JPEG mirror needs Pillow

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def write_mirror(
    root: Path,
    per_class: int = 3,
    test_per_class: int = 2,
    train_classes: Sequence[str] = CIFAR10_CLASSES,
    extra_train: tuple[Member, ...] = (),
) -> dict[str, list[tuple[int, np.ndarray]]]:
    """The mirror's layout: a training tarball (``train/<class>/<nnnn>.jpg`` for each of
    ``train_classes``, then ``extra_train``) and an unpacked test folder, each with SHA256SUMS.
    Returns each split's (label, decoded pixels) in the loader's order."""
    rng = np.random.default_rng(0)
    train_dir, test_dir = root / "cifar10-train-jpg", root / "cifar10-test-jpg"
    train_dir.mkdir(parents=True)
    decoded: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "test": []}
    members = []
    for name in train_classes:
        for k in range(per_class):
            data = jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            members.append(file_member(f"train/{name}/{k:04d}.jpg", data))
            decoded["train"].append((CIFAR10_CLASSES.index(name), decode(data)))
    archive = train_dir / "cifar10-train-jpg.tar.gz"
    archive.write_bytes(tar_gz(extra=(*members, *extra_train)))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (train_dir / "SHA256SUMS").write_text(f"{digest}  cifar10-train-jpg.tar.gz\n")
    lines = []
    for c, name in enumerate(CIFAR10_CLASSES):
        (test_dir / "test" / name).mkdir(parents=True)
        for k in range(test_per_class):
            data = jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            (test_dir / "test" / name / f"{k:04d}.jpg").write_bytes(data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  ./test/{name}/{k:04d}.jpg")
            decoded["test"].append((c, decode(data)))
    (test_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return decoded
