"""Loaders (digits, MNIST, CIFAR-10 on fabricated files), their errors, the fold split and the
process-wide dataset cache. No test touches the network: every download path is patched."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.mnist
from fabricate import Fabricated, write_cifar10, write_mnist

from l2t_gym.data import (
    FOLDS,
    DatasetNotFoundError,
    clear_cache,
    default_root,
    load_dataset,
    load_raw,
    make_folds,
)
from l2t_gym.data.digits import load_digits
from l2t_gym.data.vision import load_cifar10, load_mnist

MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CPU = torch.device("cpu")


def _refuse_download(*args: object, **kwargs: object) -> None:
    raise URLError("network disabled in tests")


def _assert_guidance(message: str, folder: Path, files: list[str]) -> None:
    assert str(folder) in message
    for name in files:
        assert name in message
    assert "download=True" in message
    assert "data_root=" in message
    assert "L2T_DATA" in message


# --------------------------------------------------------------------------------------------------
# MNIST


def test_mnist_shapes_dtypes_and_labels(mnist_root: Path, mnist_files: Fabricated) -> None:
    raw = load_mnist(mnist_root, download=False)
    assert raw.x_train.shape == (400, 1, 28, 28)
    assert raw.x_test.shape == (100, 1, 28, 28)
    assert raw.x_train.dtype == raw.x_test.dtype == torch.float32
    assert raw.y_train.dtype == raw.y_test.dtype == torch.int64
    assert raw.x_train.is_contiguous() and raw.x_test.is_contiguous()
    assert raw.num_classes == 10
    np.testing.assert_array_equal(raw.y_train.numpy(), mnist_files.y_train)
    np.testing.assert_array_equal(raw.y_test.numpy(), mnist_files.y_test)
    assert np.bincount(raw.y_train.numpy()).tolist() == [40] * 10


def test_mnist_normalisation_matches_numpy(mnist_root: Path) -> None:
    raw = load_mnist(mnist_root, download=False)
    # Read the pixels back from the IDX file itself (16-byte header), not from the fabricator.
    data = (mnist_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(100, 28, 28)
    for n, h, w in [(0, 0, 0), (3, 14, 9), (57, 27, 27), (99, 5, 20)]:
        expected = (pixels[n, h, w] / 255.0 - 0.1307) / 0.3081
        assert raw.x_test[n, 0, h, w].item() == pytest.approx(expected, abs=1e-5)
    expected_all = (pixels.astype(np.float64) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(raw.x_test[:, 0].numpy(), expected_all, atol=1e-5)


def test_fabricated_images_are_learnable(mnist_root: Path) -> None:
    # Nearest class mean must separate the fabricated classes, or no student could learn them.
    raw = load_mnist(mnist_root, download=False)
    x_train, y_train = raw.x_train.flatten(1), raw.y_train
    means = torch.stack([x_train[y_train == c].mean(0) for c in range(10)])
    predicted = torch.cdist(raw.x_test.flatten(1), means).argmin(1)
    assert (predicted == raw.y_test).float().mean().item() > 0.9


def test_mnist_missing_files_name_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    _assert_guidance(str(info.value), tmp_path / "MNIST" / "raw", MNIST_FILES)


def test_mnist_one_missing_file_is_named(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="it lacks t10k-labels-idx1-ubyte\\."):
        load_mnist(tmp_path, download=False)


def test_mnist_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DatasetNotFoundError, match="corrupted or unreadable") as info:
        load_mnist(tmp_path, download=False)
    _assert_guidance(str(info.value), tmp_path / "MNIST" / "raw", MNIST_FILES)


def test_mnist_failed_download_through_mirrors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", refuse)
    with pytest.raises(DatasetNotFoundError, match=r"Downloading MNIST into .* failed") as info:
        load_mnist(tmp_path, download=True)
    assert calls, "torchvision's download was never attempted"
    _assert_guidance(str(info.value), tmp_path / "MNIST" / "raw", MNIST_FILES)
    # torchvision gathers the per-mirror URLErrors into one RuntimeError; it must stay chained.
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "network disabled in tests" in str(info.value.__cause__)


def test_mnist_failed_download_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets.mnist.MNIST, "download", _refuse_download)
    # Match the sentence, not a word: the tmp folder's name (from the test name) is in the message.
    expected = r"Downloading MNIST into .* failed \(URLError"
    with pytest.raises(DatasetNotFoundError, match=expected) as info:
        load_mnist(tmp_path, download=True)
    assert isinstance(info.value.__cause__, URLError)


def test_mnist_present_files_are_not_downloaded(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        torchvision.datasets.mnist, "download_and_extract_archive", _refuse_download
    )
    assert load_mnist(mnist_root, download=True).x_train.shape[0] == 400


# --------------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_shapes_dtypes_and_labels(cifar_root: Path, cifar_files: Fabricated) -> None:
    raw = load_cifar10(cifar_root, download=False)
    assert raw.x_train.shape == (400, 3, 32, 32)
    assert raw.x_test.shape == (100, 3, 32, 32)
    assert raw.x_train.dtype == raw.x_test.dtype == torch.float32
    assert raw.y_train.dtype == raw.y_test.dtype == torch.int64
    assert raw.x_train.is_contiguous() and raw.x_test.is_contiguous()
    assert raw.num_classes == 10
    np.testing.assert_array_equal(raw.y_train.numpy(), cifar_files.y_train)
    np.testing.assert_array_equal(raw.y_test.numpy(), cifar_files.y_test)


def test_cifar_normalisation_and_channel_order_match_numpy(cifar_root: Path) -> None:
    raw = load_cifar10(cifar_root, download=False)
    mean = np.array([0.4914, 0.4822, 0.4465])
    std = np.array([0.2470, 0.2435, 0.2616])
    # Rows of the second batch file are training instances 80..159, each row the red plane, then
    # green, then blue, row-major: read them from the pickle itself.
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    rows = batch["data"]
    for k, c, h, w in [(0, 0, 0, 0), (5, 1, 31, 2), (79, 2, 17, 30), (40, 2, 0, 31)]:
        value = rows[k, c * 1024 + h * 32 + w]
        expected = (value / 255.0 - mean[c]) / std[c]
        assert raw.x_train[80 + k, c, h, w].item() == pytest.approx(expected, abs=1e-5)
    expected_all = (rows.reshape(-1, 3, 32, 32) / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(raw.x_train[80:160].numpy(), expected_all, atol=1e-5)
    assert raw.y_train[80:160].tolist() == batch["labels"]


def test_cifar_missing_files_name_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, download=False)
    _assert_guidance(str(info.value), tmp_path / "cifar-10-batches-py", CIFAR_FILES)


def test_cifar_one_missing_file_is_named(tmp_path: Path, cifar_md5_patch: None) -> None:
    write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="it lacks data_batch_4\\."):
        load_cifar10(tmp_path, download=False)


def test_cifar_checksum_mismatch_is_refused(cifar_files: Fabricated) -> None:
    # Without the test patch torchvision's real md5 check runs, and fabricated files fail it.
    with pytest.raises(DatasetNotFoundError, match="corrupted") as info:
        load_cifar10(cifar_files.root, download=False)
    assert isinstance(info.value.__cause__, RuntimeError)
    _assert_guidance(str(info.value), cifar_files.root / "cifar-10-batches-py", CIFAR_FILES)


def test_cifar_truncated_pickle_is_a_clear_error(tmp_path: Path, cifar_md5_patch: None) -> None:
    write_cifar10(tmp_path, n_per_batch=10, n_test=10)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetNotFoundError, match="corrupted or unreadable"):
        load_cifar10(tmp_path, download=False)


def test_cifar_failed_download(tmp_path: Path, serve) -> None:
    asked = serve(None)
    with pytest.raises(DatasetNotFoundError, match=r"Downloading CIFAR-10 into .* failed") as info:
        load_cifar10(tmp_path, download=True)
    assert asked and asked[0] == torchvision.datasets.cifar.CIFAR10.url
    assert isinstance(info.value.__cause__, URLError)
    _assert_guidance(str(info.value), tmp_path / "cifar-10-batches-py", CIFAR_FILES)


def test_cifar_download_with_a_wrong_checksum_is_refused(tmp_path: Path, serve) -> None:
    serve(b"not the archive")
    with pytest.raises(DatasetNotFoundError, match=r"Downloading CIFAR-10 .* corrupted"):
        load_cifar10(tmp_path, download=True)
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar_present_files_are_not_downloaded(cifar_root: Path, serve) -> None:
    asked = serve(None)
    assert load_cifar10(cifar_root, download=True).x_train.shape[0] == 400
    assert asked == []


# --------------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_and_stratified_test_fifth() -> None:
    from sklearn.datasets import load_digits as sk_load_digits

    raw = load_digits()
    counts = np.bincount(sk_load_digits().target, minlength=10)
    assert len(raw.y_train) + len(raw.y_test) == 1797
    assert raw.x_train.shape == (len(raw.y_train), 1, 8, 8)
    assert raw.x_test.shape == (len(raw.y_test), 1, 8, 8)
    assert raw.x_train.dtype == torch.float32 and raw.y_train.dtype == torch.int64
    assert raw.x_train.min().item() >= 0.0 and raw.x_train.max().item() <= 1.0
    test_counts = np.bincount(raw.y_test.numpy(), minlength=10)
    train_counts = np.bincount(raw.y_train.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts + train_counts, counts)
    np.testing.assert_array_equal(test_counts, np.round(0.2 * counts).astype(int))
    assert raw.num_classes == 10
    again = load_digits()
    assert torch.equal(raw.x_test, again.x_test) and torch.equal(raw.y_train, again.y_train)


# --------------------------------------------------------------------------------------------------
# folds


def _uneven_labels() -> np.ndarray:
    # Odd and even class sizes, one singleton, classes out of order.
    sizes = {0: 31, 1: 40, 2: 7, 3: 1, 5: 18, 9: 23}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    return np.random.default_rng(3).permutation(labels)


def test_folds_partition_the_training_set() -> None:
    labels = _uneven_labels()
    folds = make_folds(labels, dev_fraction=0.2)
    assert set(folds) == set(FOLDS)
    parts = [folds[s].train for s in FOLDS] + [folds[s].dev for s in FOLDS]
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "indices must be sorted and unique"
    # Disjoint and covering: every index appears in exactly one of the four parts.
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))
    teacher = np.union1d(folds["teacher"].train, folds["teacher"].dev)
    student = np.union1d(folds["student"].train, folds["student"].dev)
    assert np.intersect1d(teacher, student).size == 0
    assert np.intersect1d(folds["teacher"].dev, folds["student"].dev).size == 0
    for s in FOLDS:
        assert np.intersect1d(folds[s].train, folds[s].dev).size == 0


@pytest.mark.parametrize("dev_fraction", [0.1, 0.25, 0.5])
def test_folds_are_stratified(dev_fraction: float) -> None:
    labels = _uneven_labels()
    folds = make_folds(labels, dev_fraction=dev_fraction)
    for c in np.unique(labels):
        shares = {}
        for s in FOLDS:
            n_train = int(np.sum(labels[folds[s].train] == c))
            n_dev = int(np.sum(labels[folds[s].dev] == c))
            shares[s] = n_train + n_dev
            # Each class's dev count is the nearest integer to dev_fraction of its share.
            assert abs(n_dev - dev_fraction * shares[s]) <= 0.5
        assert abs(shares["teacher"] - shares["student"]) <= 1
        assert sum(shares.values()) == int(np.sum(labels == c))


def test_folds_on_fabricated_mnist_labels(mnist_files: Fabricated) -> None:
    folds = make_folds(mnist_files.y_train, dev_fraction=0.1)
    for s in FOLDS:
        # 40 per class -> 20 per fold -> 2 dev and 18 train per class.
        assert np.bincount(mnist_files.y_train[folds[s].dev]).tolist() == [2] * 10
        assert np.bincount(mnist_files.y_train[folds[s].train]).tolist() == [18] * 10


def test_folds_are_deterministic_per_seed() -> None:
    labels = _uneven_labels()
    a, b = make_folds(labels, 0.2, seed=7), make_folds(labels, 0.2, seed=7)
    other = make_folds(labels, 0.2, seed=8)
    for s in FOLDS:
        np.testing.assert_array_equal(a[s].train, b[s].train)
        np.testing.assert_array_equal(a[s].dev, b[s].dev)
    assert any(not np.array_equal(a[s].train, other[s].train) for s in FOLDS)
    assert any(not np.array_equal(a[s].dev, other[s].dev) for s in FOLDS)


@pytest.mark.parametrize("dev_fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_folds_reject_bad_dev_fraction(dev_fraction: float) -> None:
    with pytest.raises(ValueError, match="dev_fraction"):
        make_folds(_uneven_labels(), dev_fraction)


def test_folds_reject_bad_labels() -> None:
    with pytest.raises(ValueError, match="1-D"):
        make_folds(np.zeros((4, 2), dtype=np.int64), 0.2)
    with pytest.raises(ValueError, match="too few"):
        make_folds(np.array([0, 1, 0, 1]), 0.1)  # every class share rounds to zero dev instances


# --------------------------------------------------------------------------------------------------
# load_dataset, load_raw and the default root


def test_load_dataset_caches_per_root(mnist_root: Path) -> None:
    first = load_dataset("mnist", mnist_root, download=False, device=CPU)
    assert load_dataset("mnist", str(mnist_root), download=False, device=CPU) is first
    assert load_dataset("mnist", mnist_root / "MNIST" / "..", download=False, device=CPU) is first
    assert first.input_shape == (1, 28, 28)
    assert first.num_classes == 10
    np.testing.assert_array_equal(first.y_train_host, first.y_train.numpy())
    expected = load_mnist(mnist_root, download=False)
    assert torch.equal(first.x_train, expected.x_train)
    assert torch.equal(first.y_test, expected.y_test)
    clear_cache()
    assert load_dataset("mnist", mnist_root, download=False, device=CPU) is not first


def test_load_dataset_digits_cached(clean_data_cache: None) -> None:
    first = load_dataset("digits", None, download=False, device=CPU)
    assert load_dataset("digits", "/elsewhere", download=False, device=CPU) is first
    assert first.input_shape == (1, 8, 8)


def test_load_dataset_cifar(cifar_root: Path) -> None:
    data = load_dataset("cifar10", cifar_root, download=False, device=CPU)
    assert data.input_shape == (3, 32, 32)
    assert load_dataset("cifar10", cifar_root, download=False, device=CPU) is data


def test_default_root_honours_l2t_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("L2T_DATA", str(tmp_path / "data"))
    assert default_root() == tmp_path / "data"
    monkeypatch.setenv("L2T_DATA", "~/l2t-data")
    assert default_root() == Path.home() / "l2t-data"
    monkeypatch.delenv("L2T_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "l2t_gym"


def test_l2t_data_is_used_when_no_root_is_given(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("L2T_DATA", str(mnist_root))
    assert load_raw("mnist", None, download=False).x_train.shape == (400, 1, 28, 28)
    assert load_dataset("mnist", None, download=False, device=CPU).input_shape == (1, 28, 28)


def test_missing_data_under_l2t_data_names_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_data_cache: None
) -> None:
    monkeypatch.setenv("L2T_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", None, download=False, device=CPU)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_fabricated_data_root_serves_both_sets(fabricated_data_root: Path) -> None:
    assert default_root() == fabricated_data_root
    assert load_raw("cifar10", None, download=False).y_test.shape == (100,)
    assert load_raw("mnist", None, download=False).y_test.shape == (100,)


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_raw("imagenet", None, download=False)
