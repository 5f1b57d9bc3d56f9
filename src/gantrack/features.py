"""Feature extractors for FID and friends.

`classifier`: a small CNN trained on the dataset's own train split (its own DVC stage). Its
penultimate layer ("features") gives the embeddings for FID/KID/precision-recall, its softmax the
class probabilities for the Inception Score. Being trained on the same domain, it sees what an
ImageNet network misses on 28x28 grayscale images; its numbers are comparable only with numbers
from the same classifier file (the metric name says `classifier`, the sample count is logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import numpy as np
from keras import layers
from tqdm import tqdm

from gantrack.config import ClassifierConfig
from gantrack.errors import UserError
from gantrack.images import to_float

logger = logging.getLogger(__name__)

FEATURES_LAYER = "features"


def build_classifier(cfg: ClassifierConfig, shape: tuple[int, int, int], n_classes: int):
    """CNN: images (B, H, W, C) in [-1, 1] -> class logits (B, n_classes)."""
    x = inputs = keras.Input(shape, name="image")
    for i in range(2):
        x = layers.Conv2D(cfg.filters * 2**i, 3, padding="same", use_bias=False)(x)
        # momentum 0.9: the moving statistics must settle within a few hundred steps.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        # 8x8 inputs (digits) are pooled once; 28x28 and 32x32 twice.
        if min(x.shape[1], x.shape[2]) >= 8:
            x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(cfg.filters * 8, activation="relu", name=FEATURES_LAYER)(x)
    outputs = layers.Dense(n_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="classifier")


def train_classifier(
    cfg: ClassifierConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> tuple[keras.Model, float]:
    """Train on uint8 images (N, H, W, C) with int labels (N,); return (model, test accuracy)."""
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    model = build_classifier(cfg, train_images.shape[1:], n_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        to_float(train_images),
        train_labels,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        verbose=2,
    )
    _, accuracy = model.evaluate(to_float(test_images), test_labels, verbose=0)
    return model, float(accuracy)


def extract(model: keras.Model, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """Run uint8 images (N, H, W, C) through a classifier in batches.

    Returns (features (N, D) float64, probabilities (N, K) float64).
    """
    heads = keras.Model(model.input, [model.get_layer(FEATURES_LAYER).output, model.output])
    progress = 1 if len(images) >= 20 * batch_size else 0  # a bar only for long runs
    feats, logits = heads.predict(to_float(images), batch_size=batch_size, verbose=progress)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype(np.float64)))
    return feats.astype(np.float64), probs


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


def resolve_extractor(name: str, configured_weights: str | None) -> str:
    """`auto` -> `inception` when its weights are present, else `classifier` (said in the log).

    Asking for `inception` without weights is a UserError: it would otherwise download them.
    """
    weights = inception_weights(configured_weights)
    if name == "auto":
        name = "inception" if weights else "classifier"
        logger.info("extractor auto -> %s (InceptionV3 weights %s)", name,
                    weights or "not found")  # fmt: skip
    elif name == "inception" and weights is None:
        where = configured_weights or f"$KERAS_HOME/models/{INCEPTION_WEIGHTS_FILE}"
        raise UserError(
            f"evaluate.extractor: inception needs InceptionV3 weights at {where}; "
            "set evaluate.inception_weights or use extractor classifier"
        )
    return name


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


def load_extractor(name: str, classifier_path: Path, weights: str | None):
    """A function uint8 images (N, H, W, C), batch_size -> (features (N, D), probs or None).

    name must already be resolved (classifier or inception). Inception gives no class
    probabilities here (no ImageNet head), so no Inception Score.
    """
    if name == "inception":
        model = build_inception(inception_weights(weights))
        return lambda images, batch_size: (extract_inception(model, images, batch_size), None)
    if not Path(classifier_path).is_file():
        raise UserError(f"{classifier_path} is missing; run `dvc repro classifier` first")
    model = keras.models.load_model(classifier_path)
    return lambda images, batch_size: extract(model, images, batch_size)
