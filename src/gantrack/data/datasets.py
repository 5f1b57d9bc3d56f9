"""The datasets gantrack trains on, by name: where their files come from and their image shape.

Adding a dataset is one entry in DATASETS (its shape and a loader) plus its tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gantrack.data.folder import read_image_folder
from gantrack.data.readers import read_cifar10_dir, read_idx_dir
from gantrack.data.splits import Split, hold_out
from gantrack.data.tfds import PREFIX as TFDS
from gantrack.data.tfds import read_tfds
from gantrack.runtime.errors import UserError, one_line

if TYPE_CHECKING:  # annotations only: config imports this module
    from gantrack.config import DataConfig

logger = logging.getLogger(__name__)

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_FASHION_HINT = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or set data.source_dir to a directory with the four IDX files"
)


@dataclass(frozen=True)
class Dataset:
    """A dataset gantrack knows by name: its image shape (None: set by the data params), how
    to read it, load(data params, seed) -> (train, test), and its class names (by label)."""

    shape: tuple[int, int, int] | None
    load: Callable[[DataConfig, int], tuple[Split, Split]]
    class_names: tuple[str, ...] = ()


def _fashion_mnist(s: DataConfig, seed: int):
    source_dir = s.source_dir
    if source_dir is None and SYSTEM_FASHION_MNIST.is_dir():
        source_dir = str(SYSTEM_FASHION_MNIST)
    return read_idx_dir(source_dir) if source_dir else _keras_load("fashion_mnist", _FASHION_HINT)


def _mnist(s: DataConfig, seed: int):
    hint = "set data.source_dir to a directory with the four MNIST IDX files"
    return read_idx_dir(s.source_dir) if s.source_dir else _keras_load("mnist", hint)


def _cifar10(s: DataConfig, seed: int):
    hint = "set data.source_dir to the extracted cifar-10-batches-py folder"
    return read_cifar10_dir(s.source_dir) if s.source_dir else _keras_load("cifar10", hint)


def _digits(s: DataConfig, seed: int):
    if s.source_dir:
        logger.warning("digits is bundled with scikit-learn; ignoring source_dir %s", s.source_dir)
    return _load_digits(s.test_fraction, seed)


def _folder(s: DataConfig, seed: int):
    return read_image_folder(s.source_dir, s.image_size, s.channels, bad_images=s.bad_images,
                             test_fraction=s.test_fraction, seed=seed)  # fmt: skip


def _tfds(name: str) -> Dataset:
    def load(s: DataConfig, seed: int):
        return read_tfds(name, s.source_dir, s.image_size, s.channels,
                         test_fraction=s.test_fraction, seed=seed)  # fmt: skip

    return Dataset(None, load)


_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
            "Bag", "Ankle boot")  # fmt: skip
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
            "truck")  # fmt: skip
_DIGITS = tuple(map(str, range(10)))

DATASETS: dict[str, Dataset] = {
    "fashion_mnist": Dataset((28, 28, 1), _fashion_mnist, _FASHION),
    "mnist": Dataset((28, 28, 1), _mnist, _DIGITS),
    "cifar10": Dataset((32, 32, 3), _cifar10, _CIFAR10),
    "digits": Dataset((8, 8, 1), _digits, _DIGITS),  # scikit-learn's; split by test_fraction
    "folder": Dataset(None, _folder),  # the user's images: data.image_size, data.channels
}


class _Names(tuple):
    """The names data.dataset accepts: DATASETS' and tfds:<a TensorFlow Datasets name>."""

    def __contains__(self, name) -> bool:
        tfds = isinstance(name, str) and name.startswith(TFDS) and len(name) > len(TFDS)
        return tfds or super().__contains__(name)


NAMES = _Names((*DATASETS, f"{TFDS}NAME"))


def lookup(name: str) -> Dataset:
    """The dataset called name (see NAMES)."""
    if name not in NAMES:
        raise UserError(f"data.dataset: unknown value {name!r}; allowed: {', '.join(NAMES)}")
    return _tfds(name[len(TFDS) :]) if name.startswith(TFDS) else DATASETS[name]


def load_dataset(params: DataConfig, seed: int = 0) -> tuple[Split, Split]:
    """Load (train, test) of the dataset the data params name (the `data` section, validated
    when params load), splits seeded by seed; images uint8 (N, H, W, C) with (H, W, C) =
    DATASETS[name].shape (a folder's: image_size and channels), labels int64 (N,)."""
    name = params.dataset
    dataset = lookup(name)
    splits = dataset.load(params, seed)
    if dataset.class_names:
        splits = tuple(Split(s.images, s.labels, dataset.class_names) for s in splits)
    for split, part in zip(splits, ("train", "test"), strict=True):
        if dataset.shape and split.images.shape[1:] != dataset.shape:
            raise UserError(
                f"{name} {part} images have shape {split.images.shape[1:]}, expected "
                f"{dataset.shape}; check data.source_dir holds {name}"
            )
    logger.debug("loaded %s: %d train, %d test images", name, len(splits[0]), len(splits[1]))
    return splits


def _keras_load(name: str, hint: str) -> tuple[Split, Split]:
    """Download through keras.datasets (cached in ~/.keras/datasets); shapes as load_dataset."""
    logger.info("no local %s files; downloading with keras.datasets.%s", name, name)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # no network, proxy, corrupt cache: all fixed the same way
        raise UserError(
            f"{name}: download with keras.datasets.{name} failed ({one_line(exc)}); {hint}"
        ) from None
    return _keras_split(x_train, y_train), _keras_split(x_test, y_test)


def _keras_split(images: np.ndarray, labels: np.ndarray) -> Split:
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim == 3:  # grayscale comes as (N, H, W)
        images = images[..., np.newaxis]
    return Split(images, np.asarray(labels, dtype=np.int64).reshape(-1))  # cifar10: (N, 1)


def _load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), stratified split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., np.newaxis]
    return hold_out(images, digits.target.astype(np.int64), test_fraction, seed, stratify=True)
