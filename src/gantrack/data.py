"""Datasets as uint8 image arrays: IDX / CIFAR-10 readers, loaders, subsets, digests, .npz I/O.

Every split is a `Split`: images uint8 (N, H, W, C) with values 0..255, labels int64 (N,).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gantrack.config import DATASET_SHAPES
from gantrack.errors import UserError
from gantrack.files import atomic_path

logger = logging.getLogger(__name__)

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_FASHION_HINT = (
    "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
    "or set data.source_dir to a directory with the four IDX files"
)
_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Split:
    """One split of a dataset: images uint8 (N, H, W, C), labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        # ValueError, not UserError: readers validate user files first, so this is our bug.
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.ndim != 1:
            raise ValueError(
                f"labels must be int64 (N,), got {self.labels.dtype} {self.labels.shape}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a uint8 array of the shape its header declares.

    Format (http://yann.lecun.com/exdb/mnist/): bytes 0x00 0x00 <dtype code> <ndim>, ndim
    big-endian uint32 dimensions, then the data. Only dtype code 0x08 (uint8) is supported.
    """
    path = Path(path)
    raw = _read_bytes(path)
    fix = "re-download or reinstall the original file"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(
            f"{path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'}, "
            f"expected 0000<type><ndim>); {fix}"
        )
    if raw[2] != 0x08:
        raise UserError(
            f"{path} has IDX dtype code 0x{raw[2]:02x}; only 0x08 (unsigned byte) "
            f"is supported; convert the file to uint8 IDX"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(
            f"{path} is truncated inside its header (expected {header} bytes, "
            f"found {len(raw)}); {fix}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected, found = int(np.prod(dims, dtype=np.int64)), len(raw) - header
    if found < expected:
        raise UserError(
            f"{path} is truncated (expected {expected} bytes of data for shape "
            f"{dims}, found {found}); {fix}"
        )
    if found > expected:
        raise UserError(
            f"{path} has {found - expected} bytes of trailing garbage after the "
            f"{expected} bytes its header declares; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _one_line(exc: BaseException) -> str:
    """`Type: first line of message`, so UserError messages stay one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; check data.source_dir") from None
    except OSError as exc:
        raise UserError(f"cannot read {path} ({_one_line(exc)}); check its permissions") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path} is a corrupt gzip file ({_one_line(exc)}); re-download it"
        ) from None


def read_idx_dir(
    directory: str | os.PathLike, prefix_train: str = "train", prefix_test: str = "t10k"
) -> tuple[Split, Split]:
    """Read {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `directory`.

    Returns (train, test); images uint8 (N, rows, cols, 1), labels int64 (N,).
    """
    directory = Path(directory)
    names = [
        f"{p}-{k}-ubyte"
        for p in (prefix_train, prefix_test)
        for k in ("images-idx3", "labels-idx1")
    ]
    found = {
        n: next((c for c in (directory / n, directory / f"{n}.gz") if c.is_file()), None)
        for n in names
    }
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise UserError(
            f"{directory} lacks IDX files {', '.join(missing)} (each may end in "
            f".gz); expected {', '.join(names)} there"
        )
    train = _idx_split(found[names[0]], found[names[1]])
    test = _idx_split(found[names[2]], found[names[3]])
    return train, test


def _idx_split(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(
            f"{images_path} and {labels_path} hold shapes {images.shape} and {labels.shape}, "
            f"expected (N, rows, cols) and (N,); check they are images-idx3 / labels-idx1 files"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels; use matching files from the same release"
        )
    return Split(images[..., np.newaxis], labels.astype(np.int64))


def read_cifar10_dir(directory: str | os.PathLike) -> tuple[Split, Split]:
    """Read the "CIFAR-10 python version": data_batch_1..5 and test_batch.

    `directory` holds those files or the extracted `cifar-10-batches-py/` folder. Each batch is
    a pickle (trusted standard dataset files; never point this at untrusted data, unpickling can
    run code) of {b"data": uint8 (N, 3072) in CHW order, b"labels": list of N ints}.
    Returns (train, test); images uint8 (N, 32, 32, 3), labels int64 (N,).
    """
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    missing = [n for n in [*_CIFAR_BATCHES, "test_batch"] if not (directory / n).is_file()]
    if missing:
        raise UserError(
            f"{directory} lacks CIFAR-10 batches {', '.join(missing)}; point "
            f"data.source_dir at the extracted cifar-10-batches-py folder"
        )
    parts = [_cifar_batch(directory / n) for n in _CIFAR_BATCHES]
    train = Split(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    )
    return train, _cifar_batch(directory / "test_batch")


def _cifar_batch(path: Path) -> Split:
    fix = "re-extract cifar-10-python.tar.gz"
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")  # trusted dataset file, see docstring
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise UserError(
            f"{path} is not a readable CIFAR-10 pickle ({_one_line(exc)}); {fix}"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path} lacks the b'data' / b'labels' entries of a CIFAR-10 batch; {fix}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"{path} holds data {data.dtype} {data.shape}, expected uint8 (N, 3072); {fix}"
        )
    if labels.shape != (len(data),):
        raise UserError(f"{path} has {len(data)} images but {labels.size} labels; {fix}")
    # Rows are 1024 red, then 1024 green, then 1024 blue values: CHW, and we want HWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)


def load_dataset(
    name: str, source_dir: str | None = None, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Split, Split]:
    """Load (train, test) of a named dataset; images uint8 (N, H, W, C) with (H, W, C) =
    DATASET_SHAPES[name], labels int64 (N,). `test_fraction` and `seed` only apply to digits,
    the one dataset without a fixed test split."""
    if name not in DATASET_SHAPES:
        raise UserError(
            f"unknown dataset {name!r}; data.name must be one of {', '.join(DATASET_SHAPES)}"
        )
    if name == "fashion_mnist":
        if source_dir is None and SYSTEM_FASHION_MNIST.is_dir():
            source_dir = str(SYSTEM_FASHION_MNIST)
        splits = read_idx_dir(source_dir) if source_dir else _keras_load(name, _FASHION_HINT)
    elif name == "mnist":
        hint = "set data.source_dir to a directory with the four MNIST IDX files"
        splits = read_idx_dir(source_dir) if source_dir else _keras_load(name, hint)
    elif name == "cifar10":
        hint = "set data.source_dir to the extracted cifar-10-batches-py folder"
        splits = read_cifar10_dir(source_dir) if source_dir else _keras_load(name, hint)
    else:
        if source_dir:
            logger.warning(
                "digits is bundled with scikit-learn; ignoring source_dir %s", source_dir
            )
        splits = _load_digits(test_fraction, seed)
    for split, part in zip(splits, ("train", "test"), strict=True):
        if split.images.shape[1:] != DATASET_SHAPES[name]:
            raise UserError(
                f"{name} {part} images have shape {split.images.shape[1:]}, expected "
                f"{DATASET_SHAPES[name]}; check data.source_dir holds {name}"
            )
    logger.info("loaded %s: %d train, %d test images", name, len(splits[0]), len(splits[1]))
    return splits


def _keras_load(name: str, hint: str) -> tuple[Split, Split]:
    """Download through keras.datasets (cached in ~/.keras/datasets); shapes as load_dataset."""
    logger.info("no local %s files; downloading with keras.datasets.%s", name, name)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # no network, proxy, corrupt cache: all fixed the same way
        raise UserError(
            f"{name}: download with keras.datasets.{name} failed ({_one_line(exc)}); {hint}"
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
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return Split(x_train, y_train), Split(x_test, y_test)


def subsample(split: Split, limit: int | None, seed: int) -> Split:
    """A seeded random subset of `limit` examples (pairs kept, original order kept).

    limit None or >= len(split) returns `split` itself.
    """
    if limit is None or limit >= len(split):
        return split
    if limit < 1:
        raise UserError(f"subset limit is {limit}; it must be a positive integer or null (all)")
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=limit, replace=False))
    return Split(split.images[idx], split.labels[idx])


def digest(*splits: Split) -> str:
    """sha256 hex of the shapes and bytes of images and labels of all splits, in order."""
    h = hashlib.sha256()
    for split in splits:
        for array in (split.images, split.labels):
            # The shape goes in too: the same bytes reshaped are a different dataset.
            h.update(f"{array.dtype.str}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def save_split(path: str | os.PathLike, split: Split) -> None:
    """Write `split` to an uncompressed .npz (keys "images", "labels"), atomically."""
    with atomic_path(path) as tmp:
        np.savez(tmp, images=split.images, labels=split.labels)


def load_split(path: str | os.PathLike) -> Split:
    """Read a .npz written by save_split; images uint8 (N, H, W, C), labels int64 (N,)."""
    path = Path(path)
    fix = "run `dvc repro prepare` to rebuild it"
    if not path.is_file():
        raise UserError(f"{path} does not exist; {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("images", "labels") if k in npz.files}
    # TypeError: a .npy loads as a bare array, which is no context manager.
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz ({_one_line(exc)}); {fix}") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks array(s) {', '.join(missing)}; {fix}")
    try:
        return Split(arrays["images"], arrays["labels"])
    except ValueError as exc:
        raise UserError(f"{path} holds the wrong arrays ({_one_line(exc)}); {fix}") from None
