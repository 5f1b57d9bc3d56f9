"""Keras callbacks of the training loop: fixed-noise sample grids, the divergence guard and
stopping on request.

Nothing here tracks: a tracker follows the checkpointed records (training.fit's
after_checkpoint) or adds a callback of its own.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np

from gantrack.io import images
from gantrack.runtime import stop

logger = logging.getLogger(__name__)


def finite(logs) -> bool:
    """Whether every value of an epoch's logs is a finite number."""
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class ScalarLogs(keras.callbacks.Callback):
    """First of the callbacks: an epoch's logs as numbers for those after it. Under
    MultiWorkerMirroredStrategy with one worker (no TF_CONFIG), Keras hands each value over as
    an array of shape (1,), which `float` and the history refuse."""

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if np.ndim(value):
                logs[key] = float(np.mean(value))


class SampleGrid(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), draw fixed noise through the generator and
    save a grid as `<epoch>.png` in each of `directories`. Fixed noise makes grids of
    successive epochs comparable."""

    def __init__(self, directories: list[Path], noise: np.ndarray, every: int, last_epoch: int,
                 rows: int):  # fmt: skip
        super().__init__()
        self.directories, self.noise, self.every = [Path(d) for d in directories], noise, every
        self.last_epoch, self.rows = last_epoch, rows

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if not finite(logs) or (done % self.every and done != self.last_epoch):
            return
        fakes = self.model.sampler(self.noise, training=False)
        picture = images.grid(images.to_uint8(keras.ops.convert_to_numpy(fakes)), self.rows)
        for directory in self.directories:
            images.save_png(images.grid_path(directory, done), picture)


class StopOnDivergence(keras.callbacks.Callback):
    """Stop training when a loss becomes NaN or Inf; `diverged_at` holds the epoch (1-based)."""

    def __init__(self):
        super().__init__()
        self.diverged_at: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if not finite(logs):
            self.diverged_at = epoch + 1
            self.model.stop_training = True
            logger.error("losses are not finite at epoch %d: %s", epoch + 1, logs)


class StopWhenAsked(keras.callbacks.Callback):
    """Raise runtime.stop.Stopped after the batch during which a stop was asked for (a signal,
    the end of the dvc process): the epoch is left unfinished, so no grid, history row or
    checkpoint claims it, and the last checkpoint is where a rerun resumes."""

    def on_train_batch_end(self, batch, logs=None):
        stop.raise_if_requested()
