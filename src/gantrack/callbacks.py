"""Keras callbacks: sample grids, checkpoints, MLflow logging, divergence guard."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf

from gantrack import images

logger = logging.getLogger(__name__)


def _finite(logs) -> bool:
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class SampleGrid(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), draw fixed noise through the generator and
    save a grid to `directory/epoch_XXXX.png`; log it to the active MLflow run with the epoch
    as step. Fixed noise makes grids of successive epochs comparable."""

    def __init__(self, directory: Path, noise: np.ndarray, every: int, last_epoch: int, rows: int):
        super().__init__()
        self.directory, self.noise, self.every = Path(directory), noise, every
        self.last_epoch, self.rows = last_epoch, rows

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not _finite(logs) or (done % self.every and done != self.last_epoch):
            return
        fakes = self.model.sampler(self.noise, training=False)
        picture = images.grid(images.to_uint8(keras.ops.convert_to_numpy(fakes)), self.rows)
        images.save_png(self.directory / f"epoch_{done:04d}.png", picture)
        if mlflow.active_run():
            mlflow.log_image(picture, key="samples", step=done, synchronous=True)


class Checkpoint(keras.callbacks.Callback):
    """Save models, optimizers, RNG state and the epoch every `every` epochs and after the last.

    Uses tf.train.CheckpointManager: the data files are written first and the `checkpoint`
    index is replaced atomically afterwards, so a kill mid-save leaves the previous checkpoint.
    """

    def __init__(
        self, manager: tf.train.CheckpointManager, epoch: tf.Variable, every: int, last_epoch: int
    ):
        super().__init__()
        self.manager, self.epoch, self.every, self.last_epoch = manager, epoch, every, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        # Never checkpoint diverged weights: a resume would restore NaNs.
        if _finite(logs) and (done % self.every == 0 or done == self.last_epoch):
            self.epoch.assign(done)
            self.manager.save(checkpoint_number=done)


class MLflowMetrics(keras.callbacks.Callback):
    """Log each epoch's metrics (losses, mean D(x), D(G(z))) to the active run, step = epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if logs and mlflow.active_run():
            mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)


class StopOnDivergence(keras.callbacks.Callback):
    """Stop training when a loss becomes NaN or Inf; `diverged_at` holds the epoch (1-based)."""

    def __init__(self):
        super().__init__()
        self.diverged_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            self.diverged_at = epoch + 1
            self.model.stop_training = True
            logger.error("losses are not finite at epoch %d: %s", epoch + 1, logs)


def generator_fid(generator, classifier, reference: tuple, n: int, seed: int,
                  batch_size: int) -> float:  # fmt: skip
    """FID of n generator samples (noise from `seed`) on the classifier's features against
    reference (mu, sigma) of the real split."""
    from gantrack import features, gan, metrics

    fakes = gan.sample(generator, n, seed, batch_size)
    feats, _ = features.extract(classifier, fakes, batch_size)
    return metrics.frechet_distance(*metrics.statistics(feats), *reference)


class PeriodicFID(keras.callbacks.Callback):
    """Every `every` epochs, FID of `n` generator samples (fixed seed) against reference stats.

    The metric is logged as `fid_<extractor>_n<n>` with the epoch as step: its sample count is in
    its name, so it is never mistaken for the final evaluation's FID. `on_value(epoch, fid)` lets
    a caller react (Optuna reports and prunes through it); `values` keeps {epoch: fid}.
    """

    def __init__(
        self,
        every: int,
        classifier: keras.Model,
        reference: tuple,
        n: int,
        seed: int,
        batch_size: int,
        extractor: str = "classifier",
        on_value=None,
    ):
        super().__init__()
        self.every, self.classifier, self.reference = every, classifier, reference
        self.n, self.seed, self.batch_size, self.on_value = n, seed, batch_size, on_value
        self.name = f"fid_{extractor}_n{n}"
        self.values: dict[int, float] = {}

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every or not _finite(logs):
            return
        fid = generator_fid(self.model.sampler, self.classifier, self.reference, self.n,
                            self.seed, self.batch_size)  # fmt: skip
        self.values[done] = fid
        logger.info("epoch %d: %s = %.3f", done, self.name, fid)
        if mlflow.active_run():
            mlflow.log_metric(self.name, fid, step=done)
        if self.on_value:
            self.on_value(done, fid)
