"""What training takes in: tf.data batches of the images, and the steps they make."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from gantrack.runtime.errors import UserError

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import TrainConfig


def make_dataset(
    images: np.ndarray,
    batch_size: int,
    seed: int,
    drop_remainder: bool = False,
    labels: np.ndarray | None = None,
) -> tf.data.Dataset:
    """uint8 (N, H, W, C) -> shuffled batches of float32 in [-1, 1], prefetched; with labels
    (N,), batches of (images, labels as int32).

    The uint8 array is cached once; scaling runs per batch (vectorised) so the cache holds a
    quarter of the bytes a float32 copy would.
    """

    def scale(x):
        return tf.cast(x, tf.float32) / 127.5 - 1.0

    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(images)
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    ds = ds.cache().shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(
        scale if labels is None else lambda x, y: (scale(x), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def whole_steps_only(cfg: TrainConfig) -> bool:
    """Whether an epoch drops its last partial step: with n_critic > 1, whose step slices its
    images into n_critic equal critic batches."""
    return cfg.n_critic > 1


def steps_per_epoch(cfg: TrainConfig, n_images: int) -> int:
    """Training steps of one epoch (see whole_steps_only)."""
    step_images = images_per_step(cfg, n_images)
    return n_images // step_images if whole_steps_only(cfg) else -(-n_images // step_images)


def images_per_step(cfg: TrainConfig, n_images: int) -> int:
    """Images one training step takes: n_critic batches (see GAN), whole ones only.
    Raises UserError when the training split cannot fill one step."""
    step_images = cfg.batch_size * cfg.n_critic
    if n_images < step_images:
        raise UserError(
            f"train.batch_size * train.n_critic = {step_images} is more than the "
            f"{n_images} training images; lower them or raise data.limit"
        )
    return step_images
