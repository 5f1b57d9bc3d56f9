"""Training, the one way for the train stage, tuning and benchmarks: `train` (what a caller
uses: it resumes, watches the FID through `FidWatch`, calls `Hooks`), `build_for_data` (a
seeded GAN for the data: conditioned where it can be, see `conditioning_classes`) on
`build_gan` (the compiled GAN for a given shape and class count), and `fit` with sample grids
and checkpoints (input: gan.inputs)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from gantrack.gan import callbacks, checkpoints, devices
from gantrack.gan.best import EpochModels
from gantrack.gan.inputs import images_per_step, make_dataset, steps_per_epoch, whole_steps_only
from gantrack.gan.loss_traits import TRAITS
from gantrack.gan.losses import LOSSES
from gantrack.gan.model import GAN
from gantrack.gan.networks import build_discriminator, build_generator
from gantrack.gan.optimizers import adam_pair
from gantrack.gan.sampling import with_classes
from gantrack.runtime.errors import UserError

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import ModelConfig, TrainConfig

logger = logging.getLogger(__name__)


def conditioning_classes(model_cfg: ModelConfig, n_classes: int, loss: str) -> int:
    """The classes the networks are conditioned on (0: none) for model.conditional, the data's
    class count and train.loss. auto conditions where it can: on labelled data, with classes
    that fit in the noise, and a loss without the gradient penalty. True raises UserError where
    it cannot (one class, or more classes than noise entries to encode them in)."""
    mode = model_cfg.conditional
    if mode == "auto":
        fits = 2 <= n_classes <= model_cfg.latent_dim and not TRAITS[loss].gradient_penalty
        mode = bool(fits)
    if not mode:
        return 0
    if n_classes < 2:
        raise UserError("model.conditional: the data has no labels (one class); set it to false")
    if n_classes > model_cfg.latent_dim:
        raise UserError(f"model.conditional: {n_classes} classes need model.latent_dim >= "
                        f"{n_classes} (the class is read from the noise)")  # fmt: skip
    return n_classes


def build_gan(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    shape,
    seed: int,
    *,
    num_classes: int = 0,
    policy: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    n_images: int | None = None,
    steps: int | None = None,
) -> GAN:
    """A compiled GAN with fresh weights (seeded by the caller) and Adam per network;
    class-conditional on num_classes classes when that is > 0 (see conditioning_classes);
    n_images (training images) lets train.lr_decay count train.epochs' steps, or `steps` gives
    the steps it decays over (a trial's time budget).

    Built in `strategy`'s scope (default: train.strategy) under the dtype `policy` (default:
    what devices.precision_policy picks for train.mixed_precision); the global policy is
    restored afterwards. mixed_float16 wraps both optimizers in LossScaleOptimizer. With more
    than one replica, BatchNormalization is synchronized across replicas.
    """
    policy = policy or devices.precision_policy(train_cfg.mixed_precision)
    strategy = strategy or devices.strategy(train_cfg.strategy)
    loss = LOSSES[train_cfg.loss]
    smoothing = train_cfg.label_smoothing
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope():
            nets = {"num_classes": num_classes,
                    "synchronized_bn": strategy.num_replicas_in_sync > 1}  # fmt: skip
            gan = GAN(build_generator(model_cfg, shape, **nets),
                      build_discriminator(model_cfg, shape, **nets), seed,
                      **_gan_options(train_cfg))  # fmt: skip
            steps = steps or n_images and train_cfg.epochs * steps_per_epoch(train_cfg, n_images)
            optimizers = adam_pair(train_cfg, policy == "mixed_float16", steps)
            gan.compile(
                g_optimizer=optimizers[0],
                d_optimizer=optimizers[1],
                g_loss_fn=loss.generator,
                d_loss_fn=lambda real, fake: loss.discriminator(
                    real, fake, label_smoothing=smoothing
                ),
                steps_per_execution=train_cfg.steps_per_execution,
            )
            # Optimizer slots must exist before a checkpoint restore can fill them.
            gan.g_optimizer.build(gan.generator.trainable_variables)
            gan.d_optimizer.build(gan.discriminator.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return gan


def _gan_options(train_cfg: TrainConfig) -> dict:
    """GAN's keyword arguments from the train params and the loss's traits."""
    traits = TRAITS[train_cfg.loss]
    return {
        "n_critic": train_cfg.n_critic,
        "ema_decay": train_cfg.ema_decay,
        "ema_warmup": train_cfg.ema_warmup,
        "gp_weight": train_cfg.gp_weight if traits.gradient_penalty else 0.0,
        "r1_gamma": train_cfg.r1_gamma,
        "r1_every": train_cfg.r1_every,
        "augment": train_cfg.augment,
        "augment_p": _fixed_p(train_cfg.augment_p),
        "augment_target": train_cfg.augment_target,
        "augment_images": train_cfg.augment_images,
        "augment_boundary": traits.boundary,
    }


def _fixed_p(augment_p: float | str) -> float | None:
    """train.augment_p as GAN takes it: a probability, or None for adaptive."""
    return None if augment_p == "adaptive" else float(augment_p)


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: epoch (1-based), g_loss, d_loss, d_real, d_fake
    diverged_at: int | None  # epoch whose losses went NaN/Inf, else None


def _sample_grid(gan: GAN, cfg: TrainConfig, seed: int, directories):
    """The grid callback, its noise fixed by `seed` so that grids of all epochs compare."""
    noise = np.random.default_rng(seed).standard_normal((cfg.grid_rows**2, gan.latent_dim))
    if gan.num_classes:  # one class per row
        classes = np.arange(cfg.grid_rows**2) // cfg.grid_rows % gan.num_classes
        noise = with_classes(noise, classes, gan.num_classes)
    return callbacks.SampleGrid(directories, noise.astype("float32"), cfg.sample_every,
                                cfg.epochs, cfg.grid_rows)  # fmt: skip


def batches(gan: GAN, images, labels, cfg: TrainConfig, seed: int):
    """What fit trains on, and its steps per epoch (None: the dataset's end ends the epoch):
    the images, with their labels for a class-conditional gan, each epoch one reshuffled pass.
    One iterator serves every epoch of a repeated dataset: Keras makes a new iterator for every
    epoch of a finite one, and that sometimes stalls for tens of seconds at an epoch's start.
    But Keras runs whole executions of steps_per_execution steps, which on a repeated dataset
    would run past an epoch's end: with steps_per_execution > 1 the dataset stays finite."""
    if gan.num_classes and labels is None:
        raise ValueError("a class-conditional GAN trains on labelled images: pass labels")
    step_images = images_per_step(cfg, len(images))
    labels = labels if gan.num_classes else None
    dataset = make_dataset(images, step_images, seed, whole_steps_only(cfg), labels)
    if cfg.steps_per_execution > 1:
        return dataset, None
    return dataset.repeat(), steps_per_epoch(cfg, len(images))


def fit(
    gan: GAN,
    images: np.ndarray,
    cfg: TrainConfig,
    *,
    seed: int,
    labels: np.ndarray | None = None,
    checkpoint_dir: Path,
    grids_dir: Path,
    extra_callbacks: list[keras.callbacks.Callback] = (),
    after_checkpoint: Callable[[int, pd.DataFrame, dict[int, Path]], None] | None = None,
    epoch_models: EpochModels | None = None,
) -> TrainResult:
    """Train `gan` on uint8 images (N, H, W, C) for cfg.epochs, resuming from checkpoint_dir;
    a class-conditional gan also takes the images' labels (N,). Fixed-noise grids go to
    grids_dir every cfg.sample_every epochs and after the last. Values extra_callbacks add to
    the logs land in the history.
    after_checkpoint(epoch, history, {epoch: grid PNG}) gets the records of the epochs
    checkpointed so far, after each checkpoint and at a resume: a tracker logs each epoch once.
    epoch_models (its callback in extra_callbacks): the best epochs' generators (gan.best).
    """
    manager, epoch = checkpoints.restore(gan, checkpoint_dir)
    start = int(epoch)
    if epoch_models:
        epoch_models.resumed(start)
    kept_grids = Path(checkpoint_dir) / checkpoints.GRIDS_DIR
    checkpoints.restore_grids(kept_grids, Path(grids_dir), start)
    history = checkpoints.History(Path(checkpoint_dir) / checkpoints.HISTORY_FILE, start)

    save = _on_checkpoint(history, kept_grids, after_checkpoint, epoch_models)
    if save and start:
        save(start)  # what a kill between a checkpoint and its records left out
    divergence = callbacks.StopOnDivergence()
    cbs = [
        callbacks.ScalarLogs(),
        callbacks.StopWhenAsked(),
        _sample_grid(gan, cfg, seed, [grids_dir, kept_grids]),
        divergence,
        *extra_callbacks,
        history,
        # Last: a kill never resumes past an epoch whose grid and history row are missing.
        checkpoints.Checkpoint(manager, epoch, cfg.checkpoint_every, cfg.epochs, save),
    ]
    if start < cfg.epochs:
        dataset, steps = batches(gan, images, labels, cfg, seed)
        gan.fit(
            dataset,
            epochs=cfg.epochs,
            steps_per_epoch=steps,
            initial_epoch=start,
            callbacks=cbs,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=1 if sys.stdout.isatty() else 2,  # a bar with ETA on a terminal
        )
    return TrainResult(history.frame(), divergence.diverged_at)


def _on_checkpoint(history: checkpoints.History, kept_grids: Path, after_checkpoint,
                   epoch_models: EpochModels | None) -> Callable[[int], None] | None:  # fmt: skip
    """What fit does once epoch `done` is checkpointed: hand its records to after_checkpoint,
    then drop the generator files of epochs no longer among the best."""
    if not after_checkpoint and not epoch_models:
        return None

    def checkpointed(done: int) -> None:
        rows = history.frame(upto=done)
        if after_checkpoint:
            after_checkpoint(done, rows, checkpoints.grids(kept_grids, upto=done))
        if epoch_models:
            epoch_models.prune(rows)

    return checkpointed


@dataclass(frozen=True)
class FidWatch:
    """The FID measured while training: every `every` epochs, of `n` samples of the generator
    (noise from `seed`) on the classifier's features against reference (mu, sigma);
    on_value(epoch, fid) lets a caller react (a pruner)."""

    classifier: keras.Model
    reference: tuple
    every: int
    n: int
    seed: int
    batch_size: int
    on_value: Callable[[int, float], None] | None = None
    kept: EpochModels | None = None  # where the best scored epochs' generators are kept


@dataclass(frozen=True)
class Hooks:
    """How a caller follows training: on_start(gan) before the first step, after_checkpoint
    (see fit) to record each checkpointed epoch once, more Keras callbacks."""

    on_start: Callable[[GAN], None] | None = None
    after_checkpoint: Callable[[int, pd.DataFrame, dict[int, Path]], None] | None = None
    callbacks: tuple[keras.callbacks.Callback, ...] = ()


@dataclass
class Trained:
    gan: GAN
    result: TrainResult
    fid: dict[int, float]  # {epoch: FID} measured while training
    epoch_models: EpochModels | None = None  # the kept generators of the best epochs


def build_for_data(model_cfg: ModelConfig, train_cfg: TrainConfig, images_shape,
                   n_classes: int, seed: int, steps: int | None = None) -> GAN:  # fmt: skip
    """build_gan for a dataset, as the train stage, tuning and benchmarks build it: seeded by
    seed for training images of images_shape (N, H, W, C), class-conditional where the model
    params and the data's class count allow it (conditioning_classes); its rates decay over
    train.epochs, or `steps`."""
    keras.utils.set_random_seed(seed)
    classes = conditioning_classes(model_cfg, n_classes, train_cfg.loss)
    n_images, *shape = images_shape
    return build_gan(model_cfg, train_cfg, tuple(shape), seed, num_classes=classes,
                     n_images=n_images, steps=steps)  # fmt: skip


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    seed: int,
    checkpoint_dir: Path,
    grids_dir: Path,
    fid: FidWatch | None = None,
    hooks: Hooks | None = None,
    gan: GAN | None = None,
) -> Trained:
    """The one way gantrack trains a GAN (the train stage, tuning trials, the benchmarks): build
    it (unless `gan` is given), watch its FID, fit it with checkpoints and grids (see fit).

    images: uint8 (N, H, W, C); labels: (N,) ints in [0, n_classes).
    """
    gan = gan or build_for_data(model_cfg, train_cfg, images.shape, n_classes, seed)
    hooks = hooks or Hooks()
    watch, kept = [], fid.kept if fid else None
    if fid is not None:
        from gantrack.evaluation.generator_fid import PeriodicFID

        watch = [PeriodicFID(fid.every, fid.classifier, fid.reference, fid.n, fid.seed,
                             fid.batch_size, on_value=fid.on_value)]  # fmt: skip
    if hooks.on_start:
        hooks.on_start(gan)
    result = fit(gan, images, train_cfg, seed=seed, labels=labels, checkpoint_dir=checkpoint_dir,
                 grids_dir=grids_dir, after_checkpoint=hooks.after_checkpoint, epoch_models=kept,
                 extra_callbacks=[*watch, *([kept.callback()] if kept else []),
                                  *hooks.callbacks])  # fmt: skip
    return Trained(gan, result, watch[0].values if watch else {}, kept)
