"""Drawing images from a generator: seeded noise in, uint8 images out; truncated noise (the
truncation trick) and latent walks (spherical interpolation between seeded endpoints)."""

from __future__ import annotations

import math

import keras
import numpy as np

from gantrack.gan.networks import CLASS_LAYER
from gantrack.io.images import to_uint8

REJECTION_ROUNDS = 64  # redraws of out-of-range entries before the inverse-CDF draw takes over


def draw_noise(rng: np.random.Generator, shape: tuple[int, ...], truncation: float | None = None):
    """Standard-normal noise of shape; with truncation T, each entry with |z| > T is drawn
    again until |z| <= T (the truncation trick, Brock et al. 2019): the normal truncated to
    [-T, T]. Entries within T keep their value, so a large T changes nothing.

    After REJECTION_ROUNDS redraws, entries still outside (a tiny T accepts few draws) are drawn
    from the same truncated normal by its inverse CDF, so any T > 0 ends quickly."""
    z = rng.standard_normal(shape)
    if truncation is None:
        return z
    for _ in range(REJECTION_ROUNDS):
        outside = np.abs(z) > truncation
        if not outside.any():
            return z
        z[outside] = rng.standard_normal(int(outside.sum()))
    from scipy.special import ndtr, ndtri

    outside = np.abs(z) > truncation
    low = ndtr(-truncation)
    z[outside] = ndtri(low + rng.random(int(outside.sum())) * (1.0 - 2.0 * low))
    return np.clip(z, -truncation, truncation)  # the inverse CDF's round-off at the bounds


def sample(generator: keras.Model, n: int, seed: int, batch_size: int, label: int | None = None,
           truncation: float | None = None) -> np.ndarray:  # fmt: skip
    """n images from seeded standard-normal noise (truncated at `truncation`, see draw_noise):
    uint8 (n, H, W, C); all of class `label` when given (a class-conditional generator's)."""
    return sample_labelled(generator, n, seed, batch_size, label, truncation)[0]


def sample_labelled(generator: keras.Model, n: int, seed: int, batch_size: int,
                    label: int | None = None, truncation: float | None = None):  # fmt: skip
    """(images, classes) as sample draws them; classes (n,) int64 are those the noise asks a
    class-conditional generator for (see num_classes), None for an unconditional one."""
    z = draw_noise(np.random.default_rng(seed), (n, generator.input_shape[-1]), truncation)
    k = num_classes(generator)
    if label is not None:
        z = with_classes(z, np.full(n, label), k)
    classes = z[:, :k].argmax(axis=1).astype(np.int64) if k else None
    return _predict(generator, z, batch_size), classes


def num_classes(generator: keras.Model) -> int:
    """The classes a class-conditional generator draws from its noise; 0 for others."""
    names = {layer.name for layer in generator.layers}
    return generator.get_layer(CLASS_LAYER).num_tokens if CLASS_LAYER in names else 0


def images_within(generator: keras.Model, values: int) -> int:
    """How many of generator's images hold at most `values` pixel values together."""
    return values // math.prod(int(d) for d in generator.output_shape[1:])


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


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation from a (D,) to b (D,) at fractions t (S,) in [0, 1]: (S, D),
    sin((1 - t) w) / sin w * a + sin(t w) / sin w * b with w the angle between a and b
    (Shoemake 1985; for GAN noise, White 2016). Linear where a and b are (anti)parallel.

    Both weights are >= 0: an entry largest in a and in b is largest all along the way, so a
    walk between two noise vectors of one class stays in that class."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    cos = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), np.finfo(np.float64).tiny)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def walk_noise(rows: int, steps: int, latent: int, seed: int, k: int = 0,
               label: int | None = None, truncation: float | None = None):  # fmt: skip
    """Noise (rows * steps, latent) of `rows` latent walks, row by row: each `steps` points of
    a slerp between two seeded endpoints (truncated at `truncation`, see draw_noise). For a
    generator conditioned on k classes each walk keeps one class: `label`, else row r's is
    r % k."""
    ends = draw_noise(np.random.default_rng(seed), (rows, 2, latent), truncation)
    if k:
        classes = np.full(rows, label) if label is not None else np.arange(rows) % k
        ends = with_classes(ends.reshape(2 * rows, latent), np.repeat(classes, 2), k)
        ends = ends.reshape(rows, 2, latent)
    t = np.linspace(0.0, 1.0, steps)
    return np.concatenate([slerp(a, b, t) for a, b in ends])


def walk(generator: keras.Model, rows: int, steps: int, seed: int, batch_size: int,
         label: int | None = None, truncation: float | None = None) -> np.ndarray:  # fmt: skip
    """The images of walk_noise: uint8 (rows * steps, H, W, C), walk by walk."""
    z = walk_noise(rows, steps, generator.input_shape[-1], seed, num_classes(generator), label,
                   truncation)  # fmt: skip
    return _predict(generator, z, batch_size)


def _predict(generator: keras.Model, noise: np.ndarray, batch_size: int) -> np.ndarray:
    fakes = generator.predict(noise.astype(np.float32), batch_size=batch_size, verbose=0)
    return to_uint8(fakes)
