"""Drawing images from a generator: seeded noise in, uint8 images out."""

from __future__ import annotations

import keras
import numpy as np

from gantrack.images import to_uint8


def sample(generator: keras.Model, n: int, seed: int, batch_size: int) -> np.ndarray:
    """n images from seeded standard-normal noise: uint8 (n, H, W, C)."""
    noise = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1]))
    fakes = generator.predict(noise.astype(np.float32), batch_size=batch_size, verbose=0)
    return to_uint8(fakes)
