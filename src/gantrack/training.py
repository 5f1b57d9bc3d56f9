"""Training: tf.data input, a compiled GAN, checkpoint/resume, and `fit` with callbacks."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from gantrack import callbacks, devices, losses
from gantrack.config import ModelConfig, TrainConfig
from gantrack.errors import UserError
from gantrack.files import atomic_path
from gantrack.gan import GAN
from gantrack.models import build_discriminator, build_generator

logger = logging.getLogger(__name__)
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"


def make_dataset(
    images: np.ndarray, batch_size: int, seed: int, drop_remainder: bool = False
) -> tf.data.Dataset:
    """uint8 (N, H, W, C) -> shuffled batches of float32 in [-1, 1], prefetched.

    The uint8 array is cached once; scaling runs per batch (vectorised) so the cache holds a
    quarter of the bytes a float32 copy would.
    """
    ds = tf.data.Dataset.from_tensor_slices(images).cache()
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda x: tf.cast(x, tf.float32) / 127.5 - 1.0, num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def build_gan(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    shape,
    seed: int,
    *,
    policy: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> GAN:
    """A compiled GAN with fresh weights (seeded by the caller) and Adam per network.

    Built in `strategy`'s scope (default: train.strategy) under the dtype `policy` (default:
    what devices.precision_policy picks for train.mixed_precision); the global policy is
    restored afterwards. mixed_float16 wraps both optimizers in LossScaleOptimizer. With more
    than one replica, the generator's BatchNormalization is synchronized across replicas.
    """
    policy = policy or devices.precision_policy(train_cfg.mixed_precision)
    strategy = strategy or devices.strategy(train_cfg.strategy)
    g_loss, d_loss = losses.get(train_cfg.loss)
    smoothing = train_cfg.label_smoothing
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            synchronized = strategy.num_replicas_in_sync > 1
            gan = GAN(
                build_generator(model_cfg, shape, synchronized_bn=synchronized),
                build_discriminator(model_cfg, shape),
                seed,
                n_critic=train_cfg.n_critic,
                gp_weight=train_cfg.gp_weight if train_cfg.loss == "wgan_gp" else 0.0,
                ema_decay=train_cfg.ema_decay,
            )
            optimizers = [
                keras.optimizers.Adam(lr, beta_1=beta_1, beta_2=beta_2)
                for lr, beta_1, beta_2 in (
                    (train_cfg.lr_g, train_cfg.beta1_g, train_cfg.beta2_g),
                    (train_cfg.lr_d, train_cfg.beta1_d, train_cfg.beta2_d),
                )
            ]
            if policy == "mixed_float16":
                optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
            gan.compile(
                g_optimizer=optimizers[0],
                d_optimizer=optimizers[1],
                g_loss_fn=g_loss,
                d_loss_fn=lambda real, fake: d_loss(real, fake, label_smoothing=smoothing),
                steps_per_execution=train_cfg.steps_per_execution,
            )
            # Optimizer slots must exist before a checkpoint restore can fill them.
            gan.g_optimizer.build(gan.generator.trainable_variables)
            gan.d_optimizer.build(gan.discriminator.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return gan


def read_state(directory: Path, fingerprint: str) -> dict:
    """The resume state saved beside the checkpoints, or {} when there is none to resume.

    Checkpoints written for other params or data (another fingerprint) are deleted: resuming
    them would silently mix two configurations.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return {}
    state = json.loads(path.read_text())
    if state.get("fingerprint") != fingerprint:
        logger.warning("discarding checkpoints in %s: written for other params or data", directory)
        shutil.rmtree(directory)
        return {}
    return state


def write_state(directory: Path, fingerprint: str, **values) -> None:
    """Record what a resumed run needs besides the weights (e.g. its MLflow run id)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(directory) / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fingerprint, **values}, indent=2))


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


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: epoch (1-based), g_loss, d_loss, d_real, d_fake
    diverged_at: int | None  # epoch whose losses went NaN/Inf, else None


def fit(
    gan: GAN,
    images: np.ndarray,
    cfg: TrainConfig,
    *,
    seed: int,
    checkpoint_dir: Path,
    samples_dir: Path,
    extra_callbacks: list[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Train `gan` on uint8 images (N, H, W, C) for cfg.epochs, resuming from checkpoint_dir.

    A grid of fixed-noise samples is saved every cfg.sample_every epochs and after the last.
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(
        gan=gan, g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer, epoch=epoch
    )
    manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("resuming from %s (epoch %d)", manager.latest_checkpoint, int(epoch))
    start = int(epoch)
    history_csv = Path(checkpoint_dir) / HISTORY_FILE
    history_csv.parent.mkdir(parents=True, exist_ok=True)
    _truncate_history(history_csv, start)
    noise = np.random.default_rng(seed).standard_normal((cfg.grid_rows**2, gan.latent_dim))
    divergence = callbacks.StopOnDivergence()
    cbs = [
        callbacks.SampleGrid(
            samples_dir, noise.astype("float32"), cfg.sample_every, cfg.epochs, cfg.grid_rows
        ),
        keras.callbacks.CSVLogger(str(history_csv), append=start > 0),
        divergence,
        *extra_callbacks,
        # Last: an epoch's grid, history row and logged metrics exist before its checkpoint
        # does, so a kill never resumes past an epoch whose records are missing.
        callbacks.Checkpoint(manager, epoch, cfg.checkpoint_every, cfg.epochs),
    ]
    step_images = images_per_step(cfg, len(images))
    if start < cfg.epochs:
        gan.fit(
            make_dataset(images, step_images, seed, drop_remainder=cfg.n_critic > 1),
            epochs=cfg.epochs,
            initial_epoch=start,
            callbacks=cbs,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=2,
        )
    history = pd.read_csv(history_csv)
    # CSVLogger adds empty val_* columns when there is no validation data.
    history = history[[c for c in history.columns if not c.startswith("val_")]]
    history["epoch"] += 1  # CSVLogger counts from 0; everything else here counts epochs done
    return TrainResult(history, divergence.diverged_at)


def _truncate_history(path: Path, start: int) -> None:
    """Drop history rows of epochs after the checkpoint (they will be trained again)."""
    if path.is_file():
        rows = pd.read_csv(path)
        rows[rows["epoch"] < start].to_csv(path, index=False)
