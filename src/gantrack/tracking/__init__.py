"""Everything MLflow. This module: the store (`configure`), one run per pipeline execution,
handed from stage to stage through small files (`start_run`, `continue_run`, the run files),
the run shared by tuning workers, the data as the run's input. Beside it: epochs.py (each
checkpointed epoch logged once), registry.py (the generator as a logged and registered model),
selection.py (the kept epochs' models), serving.py and served.py (the served model),
serving_app.py (its server, for `gantrack serve`), overview.py.

train starts (or, when resuming, reopens) a run and writes its id to a run file; generate and
evaluate reopen the run named in their input run file and write it on. If a later execution
reruns only generate or evaluate with changed params, MLflow's params are immutable, so the stage
forks: a new run with the parent's params (plus the new ones) and a tag naming the parent.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gantrack.io.files import atomic_path, read_json
from gantrack.runtime import redact, stop
from gantrack.runtime.errors import UserError, printable
from gantrack.tracking.epochs import CheckpointSync  # noqa: F401
from gantrack.tracking.store import (  # noqa: F401
    DATABASES,
    STORE_DEFAULTS,
    configure,
    picked,
    project_root,
    store_defaults,
)

logger = logging.getLogger(__name__)
PARENT_TAG = "gantrack.forked_from"
LOGGED_TO_TAG = "gantrack.logged_to"
REPLACES_TAG = "gantrack.replaces"  # a new run started because the one to continue was deleted


def git_commit(root: Path | None = None) -> str | None:
    """HEAD's commit of the repository at root, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or project_root(),
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def run_name(prefix: str) -> str:
    """A new run's name: DVC's experiment name under `dvc exp run`, else prefix and six random
    hex digits. (MLflow's own names come from Python's RNG, which training seeds: every project
    would get the same name.)"""
    name = os.environ.get("DVC_EXP_NAME")  # the environment's: masked, printable
    return printable(redact.mask(name))[:250] if name else f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def start_run(
    run_id: str | None = None, run_name: str | None = None, system_metrics: bool | None = None
) -> Iterator[Any]:
    """Reopen run_id if it still exists, else start a new run named run_name (also inside
    `mlflow run`, which hands its run through MLFLOW_RUN_ID). Tags the git commit.
    system_metrics: MLflow samples CPU, memory (and GPU) use into the run while it is open."""
    project = project_run()  # out of the environment, where MLflow would take it for run_id
    if run_id is None and project and _running(project):
        run_id = project  # `mlflow run --experiment-name <tracking.experiment>`: its run
    replaced = None
    if run_id and not exists(run_id):
        logger.warning("MLflow run %s is deleted, gone from the store or in another "
                       "experiment; starting a new run", run_id)  # fmt: skip
        replaced, run_id = run_id, None
    tags = masked_context_tags() if run_id is None else None
    # A reopened run keeps its name: MLflow would rename it to run_name.
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name,
                          log_system_metrics=system_metrics, tags=tags) as run:  # fmt: skip
        _link_project_run(run.info.run_id)
        commit = git_commit()
        if commit and run_id is None:
            mlflow.set_tag("mlflow.source.git.commit", commit)
        if replaced:
            mlflow.set_tag(REPLACES_TAG, replaced)
        try:
            yield run
        except stop.Stopped:
            mlflow.end_run("KILLED")  # stopped on request: resumable, not failed
            raise


def masked_context_tags() -> dict[str, str]:
    """The tags MLflow infers for a new run or logged model (git remote, source, user) whose
    values hold a secret, masked: given as the run's own tags, they replace the inferred ones
    before anything is stored. (MLflow strips a remote's userinfo only when the URL parses, and
    leaves its query string.)"""
    from mlflow.tracking.context import registry as context_registry

    inferred = context_registry.resolve_tags()
    masked = {k: redact.mask(v) for k, v in inferred.items() if isinstance(v, str)}
    return {k: v for k, v in masked.items() if v != inferred[k]}


@contextlib.contextmanager
def shared_run(run_id: str, still_used: Callable[[], bool]) -> Iterator[Any]:
    """Make run_id, a run other processes log into as well (a study's parent run), the active
    run. On leaving it ends FINISHED (FAILED on an exception), or stays RUNNING while
    still_used() says another process still works under it."""
    project_run()
    run = mlflow.start_run(run_id=run_id)
    _link_project_run(run_id)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        mlflow.end_run("RUNNING" if still_used() else status)


@contextlib.contextmanager
def continue_run(run_file: Path, params: dict[str, Any]) -> Iterator[Any]:
    """Reopen the run named in run_file and log params; fork if they conflict with logged ones."""
    params = redact.mask_values(params)
    run_id = read_run_file(run_file)
    previous = _active(run_id) if run_id else None
    if previous:
        old = previous.data.params
        conflicts = {k for k, v in params.items() if k in old and old[k] != str(v)}
        if conflicts:
            logger.info("params %s changed since run %s: logging to a new run", conflicts, run_id)
            with start_run(run_name=run_name(previous.info.run_name or "gantrack")) as run:
                log_params({k: v for k, v in old.items() if k not in params})
                log_params(params)
                mlflow.set_tag(PARENT_TAG, run_id)
                yield run
            return
    with start_run(run_id) as run:
        log_params(params)
        yield run


def log_dataset(images: np.ndarray, name: str, sha256: str, source: Path) -> None:
    """The training data as an input of the active run (name, digest, shape; MLflow's Datasets
    view), once per run."""
    digest = sha256[:16]  # MLflow stores digests of up to 36 characters
    run = MlflowClient().get_run(mlflow.active_run().info.run_id)
    if any(d.dataset.digest == digest for d in run.inputs.dataset_inputs):
        return  # a resumed run has it
    with warnings.catch_warnings():  # a local path matches two equal source types: harmless
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = mlflow.data.from_numpy(images, source=redact.mask(source.resolve().as_uri()),
                                         name=name, digest=digest)  # fmt: skip
    mlflow.log_input(dataset, context="training")


@functools.cache  # taken out of the environment once
def project_run() -> str | None:
    """The run `mlflow run -e STAGE` made for this command (MLFLOW_RUN_ID), taken out of the
    environment at the first call. Left there, MLflow logs into it whatever it is: a finished
    run reopened took a new model beside its old metrics, a run of another experiment (`mlflow
    run` without --experiment-name) failed the command. A new run is this one when it is a
    running run of tracking.experiment; otherwise the stage logs into a run of its own."""
    return os.environ.pop("MLFLOW_RUN_ID", None)


def _link_project_run(run_id: str) -> None:
    """Tag the run `mlflow run` made (a running run of this store, in any experiment) with the
    pipeline run the results went to."""
    project = project_run()
    if not project or project == run_id:
        return
    try:
        info = MlflowClient().get_run(project).info
    except MlflowException:
        info = None
    if info and info.status == "RUNNING" and info.lifecycle_stage == "active":
        MlflowClient().set_tag(project, LOGGED_TO_TAG, run_id)
    else:
        logger.warning("MLFLOW_RUN_ID %s names no running run of this store: ignored",
                       printable(redact.mask(project))[:40])  # fmt: skip


def _running(run_id: str) -> bool:
    run = _active(run_id)
    return run is not None and run.info.status == "RUNNING"


def exists(run_id: str) -> bool:
    """Whether run_id is an active run of the store (a run deleted in the UI is not)."""
    return _active(run_id) is not None


def _active(run_id: str) -> Any:
    """The run, if it is an active run of the store, in the configured experiment (a run file
    naming another experiment's run is edited or foreign); else None."""
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return None
    ours = run.info.experiment_id == picked.get(mlflow.get_tracking_uri(), run.info.experiment_id)
    return run if ours and run.info.lifecycle_stage == "active" else None


def write_run_file(path: Path, run_id: str) -> None:
    """Record the MLflow run id for the next stage (a small JSON DVC output)."""
    with atomic_path(path) as tmp:
        uri = redact.mask(mlflow.get_tracking_uri())  # the file is tracked by git
        tmp.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))


def read_run_file(path: Path) -> str | None:
    """The MLflow run id in a run file (None when there is none): 32 hexadecimal digits, as
    MLflow makes them; anything else is a UserError (an edited or foreign file)."""
    path = Path(path)
    if not path.is_file():
        return None
    run_id = read_json(path).get("run_id")
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise UserError(f"{path}: its run_id {run_id!r} is not an MLflow run id; run the stage "
                        "that writes it again")  # fmt: skip
    return run_id


RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")  # MLflow's own rule (its stores' ids vary)


def log_params(params: dict[str, Any]) -> None:
    """Log run params with URL passwords masked (e.g. a tune.storage given in params.yaml)."""
    mlflow.log_params(redact.mask_values(params))


def log_metrics_once(metrics: dict[str, float]) -> None:
    """Log metrics (step 0) to the active run unless it holds these very values already: a
    stage rerun after a kill between logging and exiting adds no second point."""
    run = mlflow.active_run()
    logged = MlflowClient().get_run(run.info.run_id).data.metrics
    new = {k: v for k, v in metrics.items() if k not in logged or logged[k] != float(v)}
    if new:
        mlflow.log_metrics(new, synchronous=True)


def end_abandoned(run_id: str) -> None:
    """Mark a run KILLED whose training was killed and will never be resumed (its checkpoints
    were for other params or data), so that it does not stay RUNNING in the store."""
    client = MlflowClient()
    try:
        if (run := _active(run_id)) is not None and run.info.status == "RUNNING":
            client.set_terminated(run_id, "KILLED")
            logger.info("MLflow run %s: its training was abandoned; marked KILLED", run_id)
    except MlflowException:
        pass  # deleted or gone: nothing left to close
