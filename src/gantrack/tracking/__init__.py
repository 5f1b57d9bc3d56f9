"""Everything MLflow: one run per pipeline execution, handed from stage to stage through small
files; the Keras callback that logs an epoch; the generator as a logged model.

train starts (or, when resuming, reopens) a run and writes its id to a run file; generate and
evaluate reopen the run named in their input run file and write it on. If a later execution
reruns only generate or evaluate with changed params, MLflow's params are immutable, so the stage
forks: a new run with the parent's params (plus the new ones) and a tag naming the parent.
"""

from __future__ import annotations

import contextlib
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
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from gantrack.io.files import atomic_path, read_json
from gantrack.runtime import redact, stop
from gantrack.runtime.errors import UserError, one_line
from gantrack.tracking.epochs import CheckpointSync  # noqa: F401

logger = logging.getLogger(__name__)
PARENT_TAG = "gantrack.forked_from"
LOGGED_TO_TAG = "gantrack.logged_to"
REPLACES_TAG = "gantrack.replaces"  # a new run started because the one to continue was deleted


def project_root() -> Path:
    """The repository root: DVC_ROOT inside `dvc exp run --temp`/queued runs, else the cwd.

    Temporary experiment copies are deleted afterwards, so the default store must not live there.
    """
    root = os.environ.get("DVC_ROOT")
    if root and not Path(root).is_dir():
        raise UserError(f"DVC_ROOT: {root} is not a folder; it names the DVC repository's root "
                        "(DVC sets it): unset it or point it at the project")  # fmt: skip
    return Path(root or Path.cwd()).resolve()


# An unreachable server or database fails in seconds, not after minutes; psycopg 3 returns a
# SQL_ASCII database's text as bytes, which SQLAlchemy cannot read: ask for UTF8 (users may
# override every one).
STORE_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "PGCONNECT_TIMEOUT": "10", "PGCLIENTENCODING": "UTF8"}  # fmt: skip
DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores but sqlite


def configure(experiment: str | None) -> None:
    """Point MLflow at MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db, and pick the
    experiment (created with artifacts in <root>/mlruns when the default store is used).
    experiment None: only read from the store, which must exist (nothing is created).

    Raises UserError (one line, no password) when the store cannot be reached or read, or the
    experiment was deleted. Processes starting together on a fresh project (parallel tuning
    workers) create and migrate the default store one at a time.
    """
    store_defaults()
    root = project_root()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    redact.add_secrets_in(uri)  # its password, in whatever spelling MLflow prints it
    database = _sqlite_file(uri) if uri else root / "mlflow.db"
    if database and not database.parent.is_dir():
        raise UserError(f"MLFLOW_TRACKING_URI: {_store(uri)}: no folder {database.parent}; "
                        "create it or fix the path")  # fmt: skip
    if experiment is None and database and not database.is_file():
        raise UserError(f"MLflow store {_store(uri)}: no such file; set MLFLOW_TRACKING_URI "
                        "to the store that holds the model")  # fmt: skip
    try:
        if uri and uri.split(":", 1)[0].split("+")[0] in DATABASES:
            _connect_once(uri)
        if uri or experiment is None:
            mlflow.set_tracking_uri(uri or f"sqlite:///{database}")
            if experiment is not None:
                _picked[uri] = mlflow.set_experiment(experiment).experiment_id
            else:  # read once here: a URI that does not parse or a store that is not there
                mlflow.search_experiments(max_results=1)  # is this one line, not a traceback
            return
        with FileLock(root / "mlflow.db.lock"):
            mlflow.set_tracking_uri(f"sqlite:///{database}")
            if mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment, artifact_location=(root / "mlruns").as_uri())
            _picked[mlflow.get_tracking_uri()] = mlflow.set_experiment(experiment).experiment_id
    except MlflowException as exc:
        if "deleted experiment" in str(exc):
            raise UserError(
                f"tracking.experiment: {experiment!r} is deleted in the MLflow store; restore it "
                "(mlflow experiments restore) or choose another tracking.experiment"
            ) from None
        raise UserError(f"MLflow store {_store(uri)}: {one_line(exc)}") from None
    except Exception as exc:  # unreachable server, corrupt database file: all end the same way
        raise UserError(f"MLflow store {_store(uri)} cannot be used ({one_line(exc)})") from None


def store_defaults() -> None:
    """STORE_DEFAULTS into the environment where the user has not set them: read by the MLflow
    store's connections and by tune.storage's."""
    for name, value in STORE_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _connect_once(uri: str) -> None:
    """Connect to a database store once: MLflow retries an unreachable one for ~100 s."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None: another store, or in memory)."""
    path = uri.removeprefix("sqlite:///").split("?")[0] if uri.startswith("sqlite:///") else ""
    return Path(path) if path and path != ":memory:" else None


def _store(uri: str | None) -> str:
    where = uri or f"sqlite:///{project_root() / 'mlflow.db'}"
    return redact.mask(where)


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
    return os.environ.get("DVC_EXP_NAME") or f"{prefix}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def start_run(
    run_id: str | None = None, run_name: str | None = None, system_metrics: bool | None = None
) -> Iterator[Any]:
    """Reopen run_id if it still exists, else start a new run named run_name (also inside
    `mlflow run`, which hands its run through MLFLOW_RUN_ID). Tags the git commit.
    system_metrics: MLflow samples CPU, memory (and GPU) use into the run while it is open."""
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


def _link_project_run(run_id: str) -> None:
    """Inside `mlflow run -e STAGE`, MLflow made a run of its own (MLFLOW_RUN_ID) while the stage
    logs into the pipeline's run: tag the former with where the results went."""
    project_run = os.environ.get("MLFLOW_RUN_ID")
    if project_run and project_run != run_id and exists(project_run):
        MlflowClient().set_tag(project_run, LOGGED_TO_TAG, run_id)


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
    ours = run.info.experiment_id == _picked.get(mlflow.get_tracking_uri(), run.info.experiment_id)
    return run if ours and run.info.lifecycle_stage == "active" else None


_picked: dict[str, str] = {}  # tracking URI -> the id of the experiment configure() picked


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
