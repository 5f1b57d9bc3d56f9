"""Splits as uint8 image arrays: the `Split` type, seeded subsets, digests and .npz files."""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gantrack.io import limits
from gantrack.io.digests import arrays_sha256
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError, one_line


@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Split:
    """One split of a dataset: images uint8 (N, H, W, C), labels int64 (N,), and the names of
    the label values where the data gives them (class_names[label]; () where it does not)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()

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


def subsample(split: Split, limit: int | None, seed: int) -> Split:
    """A seeded random subset of `limit` examples (pairs kept, original order kept).

    limit None or >= len(split) returns `split` itself.
    """
    if limit is None or limit >= len(split):
        return split
    if limit < 1:
        raise UserError(f"subset limit is {limit}; it must be a positive integer or null (all)")
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=limit, replace=False))
    return Split(split.images[idx], split.labels[idx], split.class_names)


def hold_out(images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int,
             stratify: bool, class_names: tuple[str, ...] = ()) -> tuple[Split, Split]:  # fmt: skip
    """(train, test) with a seeded test_fraction held out, stratified by class when asked and
    every class has two or more images (datasets without a test split of their own)."""
    from sklearn.model_selection import train_test_split

    by_class = stratify and np.bincount(labels).min() >= 2
    _check_sizes(len(labels), test_fraction, len(np.unique(labels)) if by_class else 1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed,
        stratify=labels if by_class else None,
    )  # fmt: skip
    return Split(x_train, y_train, class_names), Split(x_test, y_test, class_names)


def _check_sizes(n: int, test_fraction: float, classes: int) -> None:
    """The split sizes train_test_split makes (test rounded up, train down) leave a test split
    of two or more images (a covariance needs two) and, stratified, a train and a test split
    with an image of every class."""
    need_train, need_test = classes, max(2, classes)
    n_test, n_train = math.ceil(test_fraction * n), math.floor((1 - test_fraction) * n)
    if n_test >= need_test and n_train >= need_train:
        return
    low, high = need_test / n, 1 - need_train / n
    need = "the test split needs 2 or more images"
    if classes > 1:
        need = f"{classes} classes need {classes} or more images in each split (stratified)"
    allowed = f"allowed: {low:.4g} to {high:.4g}" if low <= high else "use more images"
    raise UserError(f"data.test_fraction: {test_fraction} splits {n} images into {n_train} "
                    f"train and {n_test} test images; {need}; {allowed}")  # fmt: skip


def digest(*splits: Split) -> str:
    """sha256 hex of the shapes and bytes of images and labels of all splits, in order."""
    return arrays_sha256(a for split in splits for a in (split.images, split.labels))


def save_split(path: str | os.PathLike, split: Split) -> None:
    """Write `split` to an uncompressed .npz (keys "images", "labels"), atomically; refused
    when its images exceed what load_split would read (limits.MAX_ARRAY_BYTES)."""
    if split.images.nbytes > limits.MAX_ARRAY_BYTES:
        raise UserError(f"{path}: {limits.human(split.images.nbytes)} of images, more than the "
                        f"{limits.human(limits.MAX_ARRAY_BYTES)} a split may hold; lower "
                        "data.image_size or set data.limit")  # fmt: skip
    with atomic_path(path) as tmp:
        np.savez(tmp, images=split.images, labels=split.labels)


def load_split(path: str | os.PathLike) -> Split:
    """Read a .npz written by save_split; images uint8 (N, H, W, C), labels int64 (N,)."""
    path = Path(path)
    fix = "run `dvc repro prepare` to rebuild it"
    if not path.is_file():
        raise UserError(f"{path} does not exist; {fix}")
    try:
        limits.check_npz(path, ("images", "labels"), fix=fix)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("images", "labels") if k in npz.files}
    # TypeError: a .npy loads as a bare array, which is no context manager.
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz ({one_line(exc)}); {fix}") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks array(s) {', '.join(missing)}; {fix}")
    try:
        return Split(arrays["images"], arrays["labels"])
    except ValueError as exc:
        raise UserError(f"{path} holds the wrong arrays ({one_line(exc)}); {fix}") from None
