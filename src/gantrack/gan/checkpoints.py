"""Resume state of a training run, all in one directory that outlives a kill (it is no DVC
output, so `dvc repro` keeps it): tf.train checkpoints, a state file (a fingerprint of params
and data, the MLflow run id), the history rows and copies of the sample grids of the epochs
trained so far. DVC deletes a stage's outputs before it reruns it; a resumed run restores them
from here, so no record of an epoch before the resume point is lost.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf

from gantrack.gan.callbacks import finite
from gantrack.io import images
from gantrack.io.files import atomic_path

logger = logging.getLogger(__name__)
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
GRIDS_DIR = "grids"


def read_history(path: Path, upto: int | None = None) -> pd.DataFrame:
    """The rows History wrote (epoch counted from 1), those of epochs <= upto when given.

    A missing or empty file (a kill before the first row) is an empty history; a damaged one
    too, with a warning: its epochs are trained again.
    """
    try:
        history = pd.read_csv(path)
    except FileNotFoundError:
        history = pd.DataFrame({"epoch": pd.Series(dtype="int64")})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        logger.warning("%s is unreadable (%s); starting its history afresh", path, exc)
        history = pd.DataFrame({"epoch": pd.Series(dtype="int64")})
    return history if upto is None else history[history["epoch"] <= upto]


class History(keras.callbacks.Callback):
    """One row per epoch in `path`: the epoch (from 1) and every value of the epoch's logs,
    including what callbacks before this one added (a periodic FID: empty in other epochs).
    The file is rewritten atomically each epoch, so a kill leaves whole rows only; rows of
    epochs after `start` (trained again after a resume) are dropped."""

    def __init__(self, path: Path, start: int):
        super().__init__()
        self.path = Path(path)
        self.rows = read_history(self.path, upto=start).to_dict("records")

    def frame(self, upto: int | None = None) -> pd.DataFrame:
        """The rows so far (those of epochs <= upto when given), as read_history gives them."""
        rows = [r for r in self.rows if upto is None or r["epoch"] <= upto]
        return pd.DataFrame(rows) if rows else pd.DataFrame({"epoch": pd.Series(dtype="int64")})

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        with atomic_path(self.path) as tmp:
            self.frame().to_csv(tmp, index=False)


def grids(directory: Path, upto: int | None = None) -> dict[int, Path]:
    """{epoch: grid PNG} in directory (images.grid_path), of epochs <= upto when given."""
    found = images.grid_files(directory)
    return {e: p for e, p in found.items() if upto is None or e <= upto}


def restore_grids(kept: Path, samples_dir: Path, start: int) -> None:
    """After a resume at epoch `start`: put back the grids of epochs <= start into samples_dir
    (DVC deletes a stage's outputs before it reruns it) and forget grids of later epochs in
    both places (they are drawn again)."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    for directory in (samples_dir, kept):
        for epoch, path in grids(directory).items():
            if epoch > start:
                path.unlink()
    present = grids(samples_dir)
    for epoch, path in grids(kept).items():
        if epoch not in present:  # whole or not at all: a kill mid-copy leaves no half grid
            with atomic_path(samples_dir / path.name) as tmp:
                shutil.copyfile(path, tmp)


def read_state(directory: Path, fingerprint: str) -> tuple[dict, dict]:
    """(the resume state saved beside the checkpoints, or {} when there is none to resume;
    the state of checkpoints discarded now, or {}).

    Checkpoints written for other params or data (another fingerprint) are deleted: resuming
    them would silently mix two configurations. So is a state file a kill left unreadable.
    """
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return {}, {}
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        state = {}
    if not isinstance(state, dict) or not isinstance(state.get("run_id", ""), str):
        state = {}  # not what gantrack wrote: unreadable as far as resuming goes
    if state.get("fingerprint") != fingerprint:
        logger.warning("discarding checkpoints in %s: written for other params or data", directory)
        shutil.rmtree(directory)
        return {}, state
    return state, {}


def write_state(directory: Path, fingerprint: str, **values) -> None:
    """Record what a resumed run needs besides the weights (e.g. its MLflow run id)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(directory) / STATE_FILE) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fingerprint, **values}, indent=2))


def restore(gan, directory: Path) -> tuple[tf.train.CheckpointManager, tf.Variable]:
    """A checkpoint manager for gan (both networks, both optimizers, the RNG state, the epoch)
    in directory, restored from its latest readable checkpoint if any; returns (manager, epoch).

    A damaged latest checkpoint (a disk fault, a truncated copy) falls back to the previous
    one with a warning; with none readable, training starts afresh.
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(
        gan=gan, g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer, epoch=epoch
    )
    manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=2)
    for path in reversed(manager.checkpoints):
        try:
            ckpt.restore(path).assert_existing_objects_matched()
        except Exception as exc:  # noqa: BLE001 - damaged files fail in many ways, all alike
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            logger.warning("checkpoint %s is unreadable (%s); falling back", path, reason)
            continue
        logger.info("resuming from %s (epoch %d)", path, int(epoch))
        return manager, epoch
    epoch.assign(0)
    return manager, epoch


class Checkpoint(keras.callbacks.Callback):
    """Save models, optimizers, RNG state and the epoch every `every` epochs and after the last.

    Uses tf.train.CheckpointManager: the data files are written first and the `checkpoint`
    index is replaced atomically afterwards, so a kill mid-save leaves the previous checkpoint.
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable, every: int,
                 last_epoch: int, after_save: Callable[[int], None] | None = None):  # fmt: skip
        super().__init__()
        self.manager, self.epoch, self.every, self.last_epoch = manager, epoch, every, last_epoch
        self.after_save = after_save

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        # Never checkpoint diverged weights: a resume would restore NaNs.
        if finite(logs) and (done % self.every == 0 or done == self.last_epoch):
            self.epoch.assign(done)
            self.manager.save(checkpoint_number=done)
            if self.after_save:
                self.after_save(done)
