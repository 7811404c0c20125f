"""The offline CIFAR-10 route (JPEG mirror layout) on files the test lays out itself."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from l2t_gym import L2TEnv
from l2t_gym.data import DatasetNotFoundError, cifar10_jpg
from l2t_gym.data.cifar10_jpg import CLASSES, load_cifar10_jpg
from l2t_gym.data.vision import normalise_cifar10


def jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def write_mirror(root: Path, per_class: int = 3, test_per_class: int = 2) -> dict:
    """The mirror's layout: a training tarball and an unpacked test folder, with SHA256SUMS."""
    rng = np.random.default_rng(0)
    train_dir, test_dir = root / "cifar10-train-jpg", root / "cifar10-test-jpg"
    train_dir.mkdir(parents=True)
    decoded = {"train": [], "test": []}
    archive = train_dir / "cifar10-train-jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for c, name in enumerate(CLASSES):
            for k in range(per_class):
                data = jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                info = tarfile.TarInfo(f"train/{name}/{k:04d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                decoded["train"].append((c, np.asarray(Image.open(io.BytesIO(data)))))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (train_dir / "SHA256SUMS").write_text(f"{digest}  cifar10-train-jpg.tar.gz\n")
    lines = []
    for c, name in enumerate(CLASSES):
        (test_dir / "test" / name).mkdir(parents=True)
        for k in range(test_per_class):
            data = jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            (test_dir / "test" / name / f"{k:04d}.jpg").write_bytes(data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  ./test/{name}/{k:04d}.jpg")
            decoded["test"].append((c, np.asarray(Image.open(io.BytesIO(data)))))
    (test_dir / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return decoded


def test_images_labels_and_normalisation_match_the_files(tmp_path):
    decoded = write_mirror(tmp_path / "data")
    data = load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.num_classes == 10
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        labels = np.array([c for c, _ in decoded[split]])
        pixels = np.stack([p for _, p in decoded[split]])
        np.testing.assert_array_equal(y.numpy(), labels)
        assert np.array_equal(x.numpy(), normalise_cifar10(pixels).numpy())


def test_a_second_load_reads_the_cache_and_gives_the_same_arrays(tmp_path, monkeypatch):
    write_mirror(tmp_path / "data")
    first = load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(cifar10_jpg, "_read_archive", no_decoding)
    monkeypatch.setattr(cifar10_jpg, "_read_files", no_decoding)
    again = load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert np.array_equal(first.x_train.numpy(), again.x_train.numpy())
    assert np.array_equal(first.y_test.numpy(), again.y_test.numpy())


def test_a_damaged_archive_fails_its_checksum(tmp_path):
    write_mirror(tmp_path / "data")
    archive = tmp_path / "data" / "cifar10-train-jpg" / "cifar10-train-jpg.tar.gz"
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 1
    archive.write_bytes(bytes(blob))
    with pytest.raises(DatasetNotFoundError, match="does not match its line"):
        load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")


def test_missing_files_say_what_is_expected(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar10-train-jpg.tar.gz"):
        load_cifar10_jpg(tmp_path, cache_dir=tmp_path / "cache")


def test_an_image_outside_a_class_folder_is_refused(tmp_path):
    write_mirror(tmp_path / "data")
    stray = tmp_path / "data" / "cifar10-test-jpg" / "test" / "unicorn"
    stray.mkdir()
    (stray / "0000.jpg").write_bytes(jpeg(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(DatasetNotFoundError, match="class folder"):
        load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")


def test_the_cifar10_task_runs_on_it(tmp_path):
    write_mirror(tmp_path / "data", per_class=20)
    data = load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
    env = L2TEnv("cifar10", data=data, device="cpu", batch_size=4, student="resnet20")
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 25) and info["iteration"] == 0
    obs, *_ = env.step(np.ones(4, dtype=bool))
    assert env.observation_space.contains(obs)
