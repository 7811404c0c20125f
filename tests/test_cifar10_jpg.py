"""The offline CIFAR-10 route (JPEG mirror layout) on files the test lays out itself."""

from __future__ import annotations

import numpy as np
import pytest
from fabricate import file_member, jpeg, write_mirror

from l2t_gym import L2TEnv
from l2t_gym.data import DatasetNotFoundError, cifar10_jpg
from l2t_gym.data.cifar10_jpg import CLASSES, load_cifar10_jpg
from l2t_gym.data.vision import normalise_cifar10


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


def test_a_class_missing_from_the_training_tarball_is_refused(tmp_path):
    write_mirror(tmp_path / "data", train_classes=CLASSES[:-1])  # no truck
    archive = tmp_path / "data" / "cifar10-train-jpg" / "cifar10-train-jpg.tar.gz"
    with pytest.raises(DatasetNotFoundError, match="no training instance of class 9") as info:
        load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert str(archive) in str(info.value)


@pytest.mark.parametrize("name", ["../train/cat/0009.jpg", "/train/cat/0009.jpg"])
def test_member_names_must_stay_relative(tmp_path, name):
    # The tarball is never unpacked, so such a name could not write anywhere; it is refused
    # because the class is read from the name and the mirror's names are relative.
    stray = file_member(name, jpeg(np.zeros((32, 32, 3), np.uint8)))
    write_mirror(tmp_path / "data", extra_train=(stray,))
    with pytest.raises(DatasetNotFoundError, match="absolute or climbs"):
        load_cifar10_jpg(tmp_path / "data", cache_dir=tmp_path / "cache")
