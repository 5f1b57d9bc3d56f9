"""The best epochs of a training run: the EMA generator of every epoch whose FID was measured
while training, saved beside the checkpoints as <epoch>.keras, the best few kept; and the
choice of the generator a run ends with (train.select: the best FID, or the last epoch).

The files live in the checkpoint folder, which is no DVC output, so a kill and `dvc repro`
keep them. Which files stay is decided at each checkpoint among the checkpointed epochs only:
epochs after the last checkpoint are trained again after a kill, so their files are dropped
at a resume and a better epoch that was never checkpointed removes nothing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import pandas as pd

from gantrack.io.files import atomic_path

logger = logging.getLogger(__name__)
DIRECTORY = "epochs"  # inside the checkpoint folder


def scores(history: pd.DataFrame, metric: str | None) -> dict[int, float]:
    """{epoch: FID} of the history rows that hold a finite value of metric."""
    if metric is None or metric not in history:
        return {}
    return {int(e): float(v) for e, v in zip(history["epoch"], history[metric], strict=True)
            if pd.notna(v) and math.isfinite(v)}  # fmt: skip


def ranked(history: pd.DataFrame, metric: str | None) -> list[int]:
    """The scored epochs, the lowest FID first (the earlier epoch first on a tie)."""
    found = scores(history, metric)
    return sorted(found, key=lambda epoch: (found[epoch], epoch))


def choose(history: pd.DataFrame, metric: str | None, select: str) -> tuple[int, str]:
    """(the epoch whose generator the run ends with, how it was chosen: "best" or "last").

    select best: the epoch with the lowest FID measured while training; the last epoch where
    none was measured (train.fid_every 0, or data without labels). select last: the last."""
    last = int(history["epoch"].max())
    best = ranked(history, metric)
    if select == "best" and best:
        return best[0], "best"
    if select == "best":
        logger.debug("train.select best: no FID measured while training; the last epoch is kept")
    return last, "last"


class EpochModels:
    """The generators of scored epochs as directory/<epoch>.keras, the best `keep` kept."""

    def __init__(self, directory: Path, keep: int, metric: str):
        self.directory, self.keep, self.metric = Path(directory), keep, metric

    def path(self, epoch: int) -> Path:
        return self.directory / f"{epoch}.keras"

    def files(self) -> dict[int, Path]:
        """{epoch: file} of the generators on disk."""
        if not self.directory.is_dir():
            return {}
        found = {p.stem: p for p in self.directory.glob("*.keras")}
        return {int(stem): p for stem, p in found.items() if stem.isdigit()}

    def scores(self, history: pd.DataFrame) -> dict[int, float]:
        """{epoch: FID} of history's scored epochs."""
        return scores(history, self.metric)

    def top(self, history: pd.DataFrame) -> list[int]:
        """The epochs to keep: the best `keep` of history's scored epochs, best first."""
        return ranked(history, self.metric)[: self.keep]

    def resumed(self, start: int) -> None:
        """After a resume at epoch start: drop the files of later epochs (trained again)."""
        for epoch, path in self.files().items():
            if epoch > start:
                path.unlink()

    def prune(self, history: pd.DataFrame) -> None:
        """At a checkpoint whose rows are history: delete the files of the epochs it holds
        that are not among the best `keep`."""
        keep, done = set(self.top(history)), int(max(history["epoch"], default=0))
        for epoch, path in self.files().items():
            if epoch <= done and epoch not in keep:
                path.unlink()

    def callback(self) -> keras.callbacks.Callback:
        """Saves the EMA generator of each epoch whose logs hold the FID (place it after the
        callback that measures it)."""
        return _SaveScored(self)


class _SaveScored(keras.callbacks.Callback):
    def __init__(self, models: EpochModels):
        super().__init__()
        self.models = models

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.models.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.models.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.models.path(epoch + 1)) as tmp:
            self.model.sampler.save(tmp)
