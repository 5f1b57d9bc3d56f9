"""The best epochs in MLflow: the generator of every epoch scored while training (the FID curve)
logged as an MLflow model linked to its step, its metrics and the data, the best few kept
(gantrack.gan.best holds them on disk); the epoch a run ends with recorded on the run; and the
description of a registered version.

A per-epoch model is named generator-epoch-<N> and logged at step N, once: when its epoch is
checkpointed (epochs after the last checkpoint are trained again after a kill), found again
after a resume through the run's outputs, which also list the models deleted since.
"""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gantrack.io import keras_files

logger = logging.getLogger(__name__)
PREFIX = "generator-epoch-"
CHOSEN_TAG = "gantrack.chosen_epoch"  # the epoch whose generator the run ends with
CHOSEN_BY_TAG = "gantrack.chosen_by"  # best (lowest FID while training) or last
CHOSEN_FID_TAG = "gantrack.chosen_fid"  # the training FID of that epoch: "<metric>=<value>"
CHOICE_TAGS = (CHOSEN_TAG, CHOSEN_BY_TAG, CHOSEN_FID_TAG)


def model_name(epoch: int) -> str:
    return f"{PREFIX}{epoch}"


class EpochModelSync:
    """CheckpointSync's `models`: log(epoch, history) logs the generator of each scored epoch
    checkpointed so far that the run lacks (from the EpochModels files) and returns {epoch:
    model id} of those whose metrics are still to be linked; prune(history) deletes the logged
    models no longer among the best `keep`. Each epoch's model is logged once in a run.
    kept: the gantrack.gan.best.EpochModels training saves them in (not imported here: the
    evaluate stage, which registers, runs no training code)."""

    def __init__(self, kept, log):
        self.kept, self.log_model = kept, log  # log(generator, name=, step=): log_generator
        self.logged: dict[int, str | None] | None = None  # epoch -> live id, None: deleted
        self.ids: dict[int, str] = {}  # logged by this process: their metrics get linked

    def log(self, epoch: int, history: pd.DataFrame) -> dict[int, str]:
        run_id = mlflow.active_run().info.run_id
        if self.logged is None:  # at the start or after a resume (at `epoch`): ask the store
            self.logged, half = _logged_epochs(MlflowClient(), run_id)
            # Models of epochs after the resume point come from checkpoints that could not be
            # loaded (training fell back to an earlier one): those epochs are trained again,
            # and logged again once checkpointed.
            for later in [e for e in self.logged if e > epoch]:
                model_id = self.logged.pop(later)
                if model_id:
                    half.append(model_id)
        else:
            half = []
        files = self.kept.files()
        for scored in sorted(self.kept.scores(history)):
            if scored in self.logged or scored > epoch:
                continue
            if scored not in files:  # removed by hand: nothing to log
                logger.warning("no generator file for epoch %d; it is not logged", scored)
                continue
            generator = keras_files.load(files[scored], str(files[scored]))
            self.log_model(generator, name=model_name(scored), step=scored)
            model_id = ready_model(MlflowClient(), run_id, model_name(scored))
            self.logged[scored] = self.ids[scored] = model_id
        for model_id in half:  # half logged by a kill, or of epochs trained again
            _delete(model_id)
        return dict(self.ids)

    def prune(self, history: pd.DataFrame) -> None:
        keep = set(self.kept.top(history))
        for epoch, model_id in sorted((self.logged or {}).items()):
            if model_id and epoch not in keep:
                _delete(model_id)
                self.logged[epoch] = None
                logger.debug("epoch %d is not among the %d best: its model deleted", epoch,
                            self.kept.keep)  # fmt: skip


def ready_model(client: MlflowClient, run_id: str, name: str) -> str | None:
    """The id of the model named name that run_id logged and completed (the last, should there
    be several), or None. Deleted models (the worse epochs') and ones a kill left half logged
    do not count."""
    run = client.get_run(run_id)
    where = f"source_run_id = '{run_id}' AND name = '{name}'"
    found = client.search_logged_models([run.info.experiment_id], where)
    ready = [m for m in found if m.status == LoggedModelStatus.READY]
    return max(ready, key=lambda m: m.creation_timestamp).model_id if ready else None


def _delete(model_id: str) -> None:
    try:
        MlflowClient().delete_logged_model(model_id)
    except MlflowException as exc:  # deleted already (in the UI, or before a kill)
        logger.debug("logged model %s: %s", model_id, str(exc).splitlines()[0])


def _logged_epochs(client: MlflowClient, run_id: str) -> tuple[dict[int, str | None], list[str]]:
    """({epoch: live model id, or None when deleted} of the per-epoch models the run logged;
    the ids of those a kill left half logged, to delete once their epochs are logged again)."""
    outputs = client.get_run(run_id).outputs
    logged: dict[int, str | None] = {}
    half = []
    for output in outputs.model_outputs if outputs else []:
        try:
            model = client.get_logged_model(output.model_id)
        except MlflowException:  # deleted: a worse epoch's
            logged.setdefault(output.step, None)
            continue
        if not model.name.startswith(PREFIX):
            continue  # the run's final generator
        if model.status == LoggedModelStatus.READY:
            logged[output.step] = model.model_id
        else:
            half.append(model.model_id)
    return logged, half


def record_choice(epoch: int, chosen_by: str, metric: str | None, fid: float | None) -> None:
    """Tag the active run with the epoch its generator is from and why; its metric
    `chosen_epoch` (step 0) is the same number, for charts and searches."""
    from gantrack import tracking

    tags = {CHOSEN_TAG: str(epoch), CHOSEN_BY_TAG: chosen_by}
    if metric and fid is not None:
        tags[CHOSEN_FID_TAG] = f"{metric}={fid:.6g}"
    mlflow.set_tags(tags)
    tracking.log_metrics_once({"chosen_epoch": epoch})


def describe(run, tags: dict[str, str], footing: tuple[str, ...], fid_tag: str) -> str:
    """A registered version's description: what was evaluated (data, extractor and its weights,
    sample count), to what FID, and the training epoch the generator is from."""
    metric, n_generated, sha256, weights = (tags[key] for key in footing)
    dataset = run.data.tags.get("dataset", "unknown data")
    epoch, chosen_by = run.data.tags.get(CHOSEN_TAG), run.data.tags.get(CHOSEN_BY_TAG)
    epochs = run.data.params.get("train.epochs", "?")
    if epoch is None:
        chosen = "Epoch: not recorded by the training run."
    elif chosen_by == "best":
        training_fid = run.data.tags.get(CHOSEN_FID_TAG, "the FID while training")
        chosen = (f"Epoch: {epoch} of {epochs}, the best while training ({training_fid}; "
                  "train.select best).")  # fmt: skip
    else:
        last = run.data.params.get("train.select") == "last"
        why = "train.select last" if last else "no FID while training"
        chosen = f"Epoch: {epoch} of {epochs}, the last ({why})."
    return (f"Data: {dataset} (sha256 {sha256[:12]}). Extractor: "
            f"{metric.removeprefix('fid_')} (weights sha256 {weights[:12]}). Samples: "
            f"{n_generated} generated. FID ({metric}): {float(tags[fid_tag]):.6g}. "
            f"{chosen}")  # fmt: skip
