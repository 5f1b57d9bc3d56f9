"""The `inception` feature extractor: Keras' InceptionV3 pool features (Szegedy et al. 2016)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from gantrack.io import keras_files, limits
from gantrack.io.images import to_float
from gantrack.runtime.errors import UserError, one_line

# Keras' ImageNet weights differ from the 2015 TF graph that published FIDs use (TTUR and
# pytorch-fid port that graph: the `inception_fid` extractor), and resizing differs too, so
# `fid_inception` here is comparable only with itself.
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Where keras.applications.InceptionV3(weights="imagenet", include_top=False) gets them, with
# the MD5 Keras publishes for the file.
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + INCEPTION_WEIGHTS_FILE
)
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
INCEPTION_SIZE = 299
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first bytes of every HDF5 file


def keras_cache() -> Path:
    """Keras' model cache ($KERAS_HOME/models, default ~/.keras/models)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def download(name: str, url: str, file_hash: str | None, configured_key: str) -> Path:
    """keras.utils.get_file into Keras' cache, checked against file_hash when given. The file
    appears under its name only when complete and checked; a failed download (offline, a bad
    hash) is a UserError saying where to put the file instead."""
    cache = keras_cache()
    cache.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    partial = cache / f".download-{name}"
    try:
        keras.utils.get_file(partial.name, url, file_hash=file_hash, cache_dir=cache.parent,
                             cache_subdir=cache.name)  # fmt: skip
    except Exception as exc:  # urllib, hash mismatch: get_file raises several kinds
        partial.unlink(missing_ok=True)  # Keras keeps a file that failed its hash check
        raise UserError(
            f"{configured_key}: downloading {url} failed ({one_line(exc)}); offline, put the "
            f"file at {cache / name} or set {configured_key} to its path"
        ) from None
    os.replace(partial, cache / name)
    return cache / name


def local_file(configured: str | None, key: str, name: str) -> Path | None:
    """The configured path (a UserError naming `key` when missing), else `name` in Keras'
    cache when it is there; None: it has to be downloaded."""
    if configured:
        if not Path(configured).is_file():
            raise UserError(f"{key}: {configured}: no such file")
        found = Path(configured)
    else:
        found = keras_cache() / name
        if not found.is_file():
            return None
    limits.check_size(found, limits.MAX_MODEL_BYTES, key)
    return found


def inception_weights(configured: str | None) -> Path:
    """The weights file: the configured path, else Keras' cache, else downloaded into it."""
    found = local_file(configured, "evaluate.inception_weights", INCEPTION_WEIGHTS_FILE)
    return found or download(INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL, INCEPTION_WEIGHTS_MD5,
                    "evaluate.inception_weights")  # fmt: skip


def build_inception(weights: Path) -> keras.Model:
    """InceptionV3 without its top, global average pooling: (B, 299, 299, 3) -> (B, 2048).
    A file that is not its no-top weights in HDF5 is one UserError line."""
    with open(weights, "rb") as f:
        is_hdf5 = f.read(8) == HDF5_SIGNATURE
    try:
        if not is_hdf5 or not str(weights).endswith(".h5"):
            raise ValueError("not an HDF5 .h5 file")
        # What Keras would read whole: at most the file's own size (no shape bomb).
        keras_files.check_hdf5_weights(weights, f"evaluate.inception_weights: {weights}")
        return keras.applications.InceptionV3(
            include_top=False, weights=str(weights), pooling="avg",
            input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
        )  # fmt: skip
    except (ValueError, OSError, KeyError, TypeError) as exc:  # other weights, a damaged file
        raise UserError(f"evaluate.inception_weights: {weights} is not InceptionV3's no-top "
                        f"weights ({one_line(exc)[:200]}); give {INCEPTION_WEIGHTS_FILE} or null "
                        "(download)") from None  # fmt: skip


def batches(images: np.ndarray, batch_size: int, desc: str):
    """Slices of images, with a progress bar when there is more than one."""
    for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch",
                      disable=len(images) <= batch_size):  # fmt: skip
        yield images[start : start + batch_size]


def extract_inception(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> InceptionV3 pool features (N, 2048) float64.

    Images are resized to 299x299 with an antialiased bilinear filter (plain bilinear aliases
    when it scales down, and changes the statistics), grayscale tiled to 3 channels.
    """
    import tensorflow as tf

    out = []
    for batch in batches(images, batch_size, "inception"):
        batch = tf.convert_to_tensor(to_float(batch))
        if batch.shape[-1] == 1:
            batch = tf.tile(batch, [1, 1, 1, 3])
        batch = tf.image.resize(batch, (INCEPTION_SIZE, INCEPTION_SIZE), antialias=True)
        out.append(model(batch, training=False).numpy())
    return np.concatenate(out).astype(np.float64)
