"""The `classifier` feature extractor: a small CNN trained on the dataset's own train split (its
own DVC stage). Its penultimate layer ("features") gives the embeddings for FID/KID/precision-
recall, its softmax the class probabilities for the Inception Score. Being trained on the same
domain, it sees what an ImageNet network misses on 28x28 grayscale images; its numbers are
comparable only with numbers from the same classifier file (the metric name says `classifier`,
the sample count is logged).
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import layers

from gantrack.io.images import to_float

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import ClassifierConfig

FEATURES_LAYER = "features"
# classifier -> its (features, logits) model, for as long as the classifier lives
_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
        verbose=1 if sys.stdout.isatty() else 2,  # a bar with ETA on a terminal, else a line
    )
    _, accuracy = model.evaluate(to_float(test_images), test_labels, verbose=0)
    return model, float(accuracy)


def extract(model: keras.Model, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """Run uint8 images (N, H, W, C) through a classifier in batches.

    Returns (features (N, D) float64, probabilities (N, K) float64).
    """
    heads = _HEADS.get(model)
    if heads is None:  # once per classifier: a new model per call retraces predict each time
        heads = _HEADS[model] = keras.Model(
            model.input, [model.get_layer(FEATURES_LAYER).output, model.output]
        )
    # A bar only for long runs on a terminal (in a log file it is a stream of escape codes).
    progress = 1 if len(images) >= 20 * batch_size and sys.stdout.isatty() else 0
    feats, logits = heads.predict(to_float(images), batch_size=batch_size, verbose=progress)
    probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype(np.float64)))
    return feats.astype(np.float64), probs
