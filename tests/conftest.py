"""Shared fixtures: fabricated MNIST / CIFAR-10 files in their real formats, and a clean data cache.

Nothing here touches the network. The files are written once per session (``*_files``) and must be
treated as read-only; a test that needs to damage or delete files writes its own copy with the
helpers in ``fabricate.py``.

``cifar_root`` applies ``cifar_md5_patch`` itself (the fabricated pickles cannot match the real md5
sums); ``cifar_files.root`` is the same folder without the patch, for tests of the checksum path.

``shell`` runs a test over every env (see ``driver.py``); ``small_images`` is a tiny image set
for BatchNorm students. ``serve`` stands in for the network wherever a test goes through a real
download path.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from driver import SHELLS
from fabricate import (
    Fabricated,
    FabricatedText,
    file_exists_only,
    write_cifar10,
    write_imdb,
    write_mnist,
)

from l2t_gym.data import RawData, clear_cache


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Every test on one torch thread: small students run several times faster on one, and a
    test's float results must not depend on what an earlier test (the CLI sets one thread) did."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_data_cache() -> Iterator[None]:
    """Empty the process-wide dataset cache before and after the test."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="session")
def mnist_files(tmp_path_factory: pytest.TempPathFactory) -> Fabricated:
    """400 training and 100 test MNIST images (classes balanced), written once per session."""
    return write_mnist(tmp_path_factory.mktemp("mnist_data"))


@pytest.fixture(scope="session")
def cifar_files(tmp_path_factory: pytest.TempPathFactory) -> Fabricated:
    """5 x 80 training and 100 test CIFAR-10 images, classes balanced per file, once per session."""
    return write_cifar10(tmp_path_factory.mktemp("cifar_data"))


@pytest.fixture
def cifar_md5_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torchvision's CIFAR check only that each file exists, not its md5 sum.

    The module's ``check_integrity`` is patched rather than ``CIFAR10._check_integrity``, because
    ``CIFAR10._load_meta`` also checks ``batches.meta`` against its md5 through that function.
    Missing files are still reported as missing.
    """
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", file_exists_only)


@pytest.fixture
def mnist_root(mnist_files: Fabricated, clean_data_cache: None) -> Path:
    """Data root holding the fabricated ``MNIST/raw`` files; the dataset cache is cleared after."""
    return mnist_files.root


@pytest.fixture
def cifar_root(cifar_files: Fabricated, cifar_md5_patch: None, clean_data_cache: None) -> Path:
    """Data root holding the fabricated ``cifar-10-batches-py``, with the md5 check patched."""
    return cifar_files.root


@pytest.fixture(scope="session")
def vision_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fabricated]:
    """The fabricated sets under one root, as a real data folder would hold them (the IMDB tree
    too, so that every registered id can load from it)."""
    root = tmp_path_factory.mktemp("vision_data")
    write_imdb(root)
    return {"mnist": write_mnist(root), "cifar10": write_cifar10(root)}


@pytest.fixture
def fabricated_data_root(
    vision_files: dict[str, Fabricated],
    cifar_md5_patch: None,
    clean_data_cache: None,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A root with both fabricated sets, made the default through ``L2T_DATA``: envs created
    without ``data_root=`` load it."""
    root = vision_files["mnist"].root
    monkeypatch.setenv("L2T_DATA", str(root))
    return root


@pytest.fixture(scope="session")
def imdb_files(tmp_path_factory: pytest.TempPathFactory) -> FabricatedText:
    """A trivially separable aclImdb tree ("great" vs "awful"), 200 training and 40 test
    reviews, written once per session; tests that damage files write their own."""
    return write_imdb(tmp_path_factory.mktemp("imdb_data"))


@pytest.fixture
def imdb_root(imdb_files: FabricatedText, clean_data_cache: None) -> Path:
    """Data root holding the fabricated ``aclImdb`` tree; the dataset cache is cleared after."""
    return imdb_files.root


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    """Each env in turn: ``"single"`` (L2TEnv), ``"vector-1"`` and ``"vector-3"``
    (L2TVectorEnv); build it with ``driver.Driver(shell, ...)``."""
    return request.param


@pytest.fixture(scope="session")
def small_images() -> RawData:
    """300 training and 40 test 3 x 8 x 8 images of 10 classes, each class its own shift of
    Gaussian noise: a ResNet (BatchNorm) student trains on batches of a few in milliseconds.
    Pass as ``data=`` with task "cifar10" and ``student="resnet20"``; read-only."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    x = rng.normal(size=(300, 3, 8, 8)).astype(np.float32) + y[:, None, None, None] * 0.1
    return RawData.from_arrays(x, y, x[:40], y[:40], 10)


class _FakeResponse(io.BytesIO):
    """What ``urllib.request.urlopen`` returns, serving ``body`` from ``url``."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(body)
        self.url, self.length = url, len(body)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes | None], list[str]]:
    """Replace the network: after ``asked = serve(body)`` every request gets ``body`` (fails with
    a URLError if None), and ``asked`` lists the URLs requested. Until ``serve`` is called, every
    request fails, so a test can never reach the real network."""
    asked: list[str] = []
    served: list[bytes | None] = [None]

    def urlopen(request: urllib.request.Request | str, *args: object, **kwargs: object):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        asked.append(url)
        if served[0] is None:
            raise urllib.error.URLError("no network in tests")
        return _FakeResponse(url, served[0])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    def start(body: bytes | None) -> list[str]:
        served[0] = body
        return asked

    return start
