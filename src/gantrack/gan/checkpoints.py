"""Resume state of a training run: tf.train checkpoints plus a small state file beside them.

The state file holds what identifies the run (a fingerprint of params and data) and what a
resumed run needs besides the weights (e.g. its MLflow run id).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from gantrack.files import atomic_path
from gantrack.gan.callbacks import finite

logger = logging.getLogger(__name__)
STATE_FILE = "state.json"


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


def restore(gan, directory: Path) -> tuple[tf.train.CheckpointManager, tf.Variable]:
    """A checkpoint manager for gan (both networks, both optimizers, the RNG state, the epoch)
    in directory, restored from its latest checkpoint if any; returns (manager, epoch)."""
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(
        gan=gan, g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer, epoch=epoch
    )
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logger.info("resuming from %s (epoch %d)", manager.latest_checkpoint, int(epoch))
    return manager, epoch


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
        if finite(logs) and (done % self.every == 0 or done == self.last_epoch):
            self.epoch.assign(done)
            self.manager.save(checkpoint_number=done)
