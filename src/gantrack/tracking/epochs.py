"""Epochs into the active MLflow run: each epoch's metrics and sample grid logged once, as the
training loop checkpoints them (CheckpointSync: the train stage's run and each tuning trial's)."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from gantrack.io import images
from gantrack.runtime import compat
from gantrack.tracking import overview


class CheckpointSync:
    """training.fit's after_checkpoint: log to the active run what training has checkpointed
    (history rows as metrics, step = epoch; sample grids as the `samples` image), each epoch
    once. Epochs after the last checkpoint are trained again after a kill, so they are logged
    only once checkpointed; a resume first logs what a kill right after a checkpoint left out.

    models (tracking.selection.EpochModelSync): the scored epochs' generators, logged before
    the metrics, which are linked to them (model id, and `dataset`: the data's (name, digest)
    as the run's input has them); the worse ones deleted after.
    """

    STEP_KEY = "g_loss"  # in every history row: which epochs the run already holds

    def __init__(self, models=None, dataset: tuple[str, str] | None = None):
        self.logged: int | None = None  # the last epoch whose metrics the run holds
        self.grids: set[int] = set()  # the epochs whose grids it holds
        self.models, self.dataset = models, dataset

    def __call__(self, epoch: int, history: pd.DataFrame, grids: dict[int, Path]) -> None:
        run_id = mlflow.active_run().info.run_id
        client = MlflowClient()
        if self.logged is None:  # after a resume: ask the store, a kill may have come anywhere
            steps = [m.step for m in client.get_metric_history(run_id, self.STEP_KEY)]
            self.logged = max(steps, default=0)
            paths = [a.path for a in client.list_artifacts(run_id, "images")]
            self.grids = compat.image_steps(paths, "samples")
        for step, path in grids.items():
            if step not in self.grids:
                mlflow.log_image(images.load_png(path), key="samples", step=step,
                                 synchronous=True)  # fmt: skip
                self.grids.add(step)
                if step == max(grids):  # the newest grid opens the run page (its description)
                    overview.show_latest(run_id, step, path)
        ids = self.models.log(epoch, history) if self.models else {}
        timestamp = int(time.time() * 1000)
        metrics = [
            self._metric(key, value, timestamp, int(row["epoch"]), ids.get(int(row["epoch"])))
            for row in history[history["epoch"] > self.logged].to_dict("records")
            for key, value in row.items()
            if key != "epoch" and pd.notna(value)
        ]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            client.log_batch(run_id, metrics=metrics[start : start + 1000], synchronous=True)
        self.logged = max(self.logged, epoch)
        if self.models:
            self.models.prune(history)

    def _metric(self, key: str, value, timestamp: int, step: int, model_id: str | None):
        """A history value; linked to its epoch's logged generator and the data, if any."""
        if model_id is None:
            return Metric(key, float(value), timestamp, step)
        name, digest = self.dataset or (None, None)
        return Metric(key, float(value), timestamp, step, model_id=model_id,
                      dataset_name=name, dataset_digest=digest)  # fmt: skip
