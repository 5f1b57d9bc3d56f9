"""The datasets gantrack trains on, by name: where their files come from and their image shape.

Adding a dataset is one entry in DATASETS (its shape and a loader) plus its tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gantrack.data.folder import read_image_folder
from gantrack.data.readers import read_cifar10_dir, read_idx_dir
from gantrack.data.splits import Split, hold_out
from gantrack.data.tfds import PREFIX as TFDS
from gantrack.data.tfds import read_tfds
from gantrack.errors import UserError, one_line

logger = logging.getLogger(__name__)

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_FASHION_HINT = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or set data.source_dir to a directory with the four IDX files"
)


@dataclass(frozen=True)
class Source:
    """Where and how to read a dataset: the data params. source_dir None means the default
    place (a system package, Keras' cache or download, or a bundled copy); test_fraction and
    seed split datasets without a test split; image_size, channels and bad_images shape a
    folder of images."""

    source_dir: str | None = None
    test_fraction: float = 0.2
    seed: int = 0
    image_size: int | None = None
    channels: int | None = None
    bad_images: str = "skip"


@dataclass(frozen=True)
class Dataset:
    """A dataset gantrack knows by name: its image shape (None: set by the data params) and
    how to read it, load(Source) -> (train, test)."""

    shape: tuple[int, int, int] | None
    load: Callable[[Source], tuple[Split, Split]]


def _fashion_mnist(s: Source):
    source_dir = s.source_dir
    if source_dir is None and SYSTEM_FASHION_MNIST.is_dir():
        source_dir = str(SYSTEM_FASHION_MNIST)
    return read_idx_dir(source_dir) if source_dir else _keras_load("fashion_mnist", _FASHION_HINT)


def _mnist(s: Source):
    hint = "set data.source_dir to a directory with the four MNIST IDX files"
    return read_idx_dir(s.source_dir) if s.source_dir else _keras_load("mnist", hint)


def _cifar10(s: Source):
    hint = "set data.source_dir to the extracted cifar-10-batches-py folder"
    return read_cifar10_dir(s.source_dir) if s.source_dir else _keras_load("cifar10", hint)


def _digits(s: Source):
    if s.source_dir:
        logger.warning("digits is bundled with scikit-learn; ignoring source_dir %s", s.source_dir)
    return _load_digits(s.test_fraction, s.seed)


def _folder(s: Source):
    if not s.source_dir or not s.image_size:
        raise UserError("data.dataset folder: set data.source_dir (the folder of images) and "
                        "data.image_size (the side of the square images, e.g. 64)")  # fmt: skip
    return read_image_folder(s.source_dir, s.image_size, s.channels, bad_images=s.bad_images,
                             test_fraction=s.test_fraction, seed=s.seed)  # fmt: skip


def _tfds(name: str) -> Dataset:
    def load(s: Source):
        if not s.image_size:
            raise UserError(f"data.image_size: required with data.dataset {TFDS}{name} (e.g. 64)")
        return read_tfds(name, s.source_dir, s.image_size, s.channels,
                         test_fraction=s.test_fraction, seed=s.seed)  # fmt: skip

    return Dataset(None, load)


DATASETS: dict[str, Dataset] = {
    "fashion_mnist": Dataset((28, 28, 1), _fashion_mnist),
    "mnist": Dataset((28, 28, 1), _mnist),
    "cifar10": Dataset((32, 32, 3), _cifar10),
    "digits": Dataset((8, 8, 1), _digits),  # scikit-learn's; split by data.test_fraction
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


def load_dataset(name: str, source_dir: str | None = None, **options: Any) -> tuple[Split, Split]:
    """Load (train, test) of a named dataset; images uint8 (N, H, W, C) with (H, W, C) =
    DATASETS[name].shape (a folder's: image_size and channels), labels int64 (N,). options:
    the other fields of Source (test_fraction, seed, image_size, channels, bad_images)."""
    dataset = lookup(name)
    splits = dataset.load(Source(source_dir, **options))
    for split, part in zip(splits, ("train", "test"), strict=True):
        if dataset.shape and split.images.shape[1:] != dataset.shape:
            raise UserError(
                f"{name} {part} images have shape {split.images.shape[1:]}, expected "
                f"{dataset.shape}; check data.source_dir holds {name}"
            )
    # debug: the prepare stage reports the prepared data once it has checked it
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
    if not 0.0 < test_fraction < 1.0:
        raise UserError(
            f"data.test_fraction is {test_fraction}; it must be between 0 and 1 "
            f"(exclusive), e.g. 0.2"
        )
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., np.newaxis]
    return hold_out(images, digits.target.astype(np.int64), test_fraction, seed, stratify=True)
