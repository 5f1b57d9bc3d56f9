"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The discriminator sees real and fake images alike through random transforms, so it cannot
memorise the training images; the transforms are differentiable, so the generator's gradients
pass through them and it still learns the un-transformed images. Each transform draws its own
parameters per image, and is applied to each image with probability p (1: always, as in the
paper). Magnitudes are the paper's, for images in [-1, 1].
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def _per_image(images, seed, low=0.0, high=1.0):
    """One uniform draw in [low, high) per image, shaped (B, 1, 1, 1)."""
    return keras.random.uniform((ops.shape(images)[0], 1, 1, 1), low, high, seed=seed)


def color(images, seed):
    """Brightness +-0.5, saturation x[0, 2] (nothing on one channel), contrast x[0.5, 1.5]."""
    x = images + _per_image(images, seed, -0.5, 0.5)
    mean = ops.mean(x, axis=3, keepdims=True)
    x = (x - mean) * _per_image(images, seed, 0.0, 2.0) + mean
    mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _per_image(images, seed, 0.5, 1.5) + mean


def translation(images, seed, ratio: float = 0.125):
    """Shift each image by whole pixels, up to ratio of its height and width, filling with 0."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    reach = (int(height * ratio + 0.5), int(width * ratio + 0.5))
    padded = ops.pad(images, ((0, 0), (reach[0],) * 2, (reach[1],) * 2, (0, 0)))
    for axis, (size, most) in enumerate(zip((height, width), reach, strict=True), start=1):
        shift = keras.random.randint((batch, 1), -most, most + 1, seed=seed)
        index = ops.arange(size)[None, :] + most - shift  # (B, size): where each row comes from
        padded = tf.gather(padded, index, axis=axis, batch_dims=1)
    return padded


def cutout(images, seed, ratio: float = 0.5):
    """Set a square of ratio of the image's sides to 0, at a random centre (it may be cut off
    by the border)."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    inside = []
    for size, axis_shape in ((height, (1, -1, 1)), (width, (1, 1, -1))):
        side = int(size * ratio + 0.5)
        start = keras.random.randint((batch, 1, 1), 0, size + 1 - side % 2, seed=seed) - side // 2
        at = ops.reshape(ops.arange(size), axis_shape)
        inside.append((at >= start) & (at < start + side))
    keep = ops.logical_not(inside[0] & inside[1])
    return images * ops.cast(keep, images.dtype)[..., None]


# In the paper's order, whatever order params.yaml lists them in.
AUGMENTS = {"color": color, "translation": translation, "cutout": cutout}


def augment(images, names: tuple[str, ...], p, seed):
    """images (B, H, W, C) through the named transforms (AUGMENTS' keys), each applied to each
    image with probability p; seed: a keras.random.SeedGenerator.

    p is a number, or a scalar variable (adaptive augmentation): at 0 the images pass as they
    are without paying for the transforms (one tf.cond: a second one for p = 1, which saved
    the per-image draw, nearly doubled the time tracing a training step takes, ~2 s a process).
    """
    if isinstance(p, int | float):
        return _transformed(images, names, p, seed)
    p = ops.cast(p, "float32")
    return tf.cond(p > 0.0, lambda: _transformed(images, names, p, seed), lambda: images)


def _transformed(images, names, p, seed):
    """images through the named transforms in AUGMENTS' order: every image when p is the
    number 1, else each image with probability p (a per-image draw)."""
    every = isinstance(p, int | float) and p >= 1.0
    for name, transform in AUGMENTS.items():
        if name in names:
            changed = transform(images, seed)
            images = changed if every else ops.where(_per_image(images, seed) < p, changed, images)
    return images
