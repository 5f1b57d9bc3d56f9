"""Drawing images from a generator: seeded noise in, uint8 images out."""

from __future__ import annotations

import keras
import numpy as np

from gantrack.gan.networks import CLASS_LAYER
from gantrack.io.images import to_uint8


def sample(
    generator: keras.Model, n: int, seed: int, batch_size: int, label: int | None = None
) -> np.ndarray:
    """n images from seeded standard-normal noise: uint8 (n, H, W, C); all of class `label`
    when given (a class-conditional generator's, see num_classes)."""
    noise = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1]))
    if label is not None:
        noise = with_classes(noise, np.full(n, label), num_classes(generator))
    return _predict(generator, noise, batch_size)


def num_classes(generator: keras.Model) -> int:
    """The classes a class-conditional generator draws from its noise; 0 for others."""
    names = {layer.name for layer in generator.layers}
    return generator.get_layer(CLASS_LAYER).num_tokens if CLASS_LAYER in names else 0


def with_classes(noise: np.ndarray, classes: np.ndarray, k: int) -> np.ndarray:
    """A copy of noise (N, latent) whose row i encodes class classes[i] for a generator
    conditioned on k classes (the argmax of its first k entries, see gantrack.gan.networks).

    The largest of a row's first k entries is swapped into place: a row of i.i.d. normal
    entries stays one, drawn given its class.
    """
    noise = np.array(noise, copy=True)
    rows = np.arange(len(noise))
    largest = noise[:, :k].argmax(axis=1)
    swapped = noise[rows, classes].copy()
    noise[rows, classes] = noise[rows, largest]
    noise[rows, largest] = swapped
    return noise


def sample_classes(
    generator: keras.Model, per_class: int, seed: int, batch_size: int
) -> np.ndarray:
    """per_class images of every class of a class-conditional generator, class by class:
    uint8 (num_classes * per_class, H, W, C)."""
    k = num_classes(generator)
    noise = np.random.default_rng(seed).standard_normal((k * per_class, generator.input_shape[-1]))
    return _predict(generator, with_classes(noise, np.arange(k * per_class) // per_class, k),
                    batch_size)  # fmt: skip


def _predict(generator: keras.Model, noise: np.ndarray, batch_size: int) -> np.ndarray:
    fakes = generator.predict(noise.astype(np.float32), batch_size=batch_size, verbose=0)
    return to_uint8(fakes)
