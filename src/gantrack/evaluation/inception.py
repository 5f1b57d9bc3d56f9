"""The `inception` feature extractor: InceptionV3 pool features (Szegedy et al. 2016)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from gantrack.images import to_float

# InceptionV3 (Szegedy et al. 2016) pool features, the extractor FID was defined with. Keras'
# ImageNet weights differ from the 2015 TF graph that published FIDs use (pytorch-fid / TTUR port
# that graph), and resizing differs too, so `fid_inception` here is comparable only with itself.
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299


def inception_weights(configured: str | None) -> Path | None:
    """The weights file to use: the configured path, else Keras' cache; None if absent."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    path = Path(configured) if configured else keras_home / "models" / INCEPTION_WEIGHTS_FILE
    return path if path.is_file() else None


def build_inception(weights: Path) -> keras.Model:
    """InceptionV3 without its top, global average pooling: (B, 299, 299, 3) -> (B, 2048)."""
    return keras.applications.InceptionV3(
        include_top=False, weights=str(weights), pooling="avg",
        input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
    )  # fmt: skip


def extract_inception(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> InceptionV3 pool features (N, 2048) float64.

    Images are resized to 299x299 with an antialiased bilinear filter (plain bilinear aliases
    when it scales down, and changes the statistics), grayscale tiled to 3 channels.
    """
    import tensorflow as tf

    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="inception", unit="batch",
                      disable=len(images) <= batch_size):  # fmt: skip
        batch = tf.convert_to_tensor(to_float(images[start : start + batch_size]))
        if batch.shape[-1] == 1:
            batch = tf.tile(batch, [1, 1, 1, 3])
        batch = tf.image.resize(batch, (INCEPTION_SIZE, INCEPTION_SIZE), antialias=True)
        out.append(model(batch, training=False).numpy())
    return np.concatenate(out).astype(np.float64)
