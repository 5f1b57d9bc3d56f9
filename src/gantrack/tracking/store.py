"""The MLflow store gantrack points at: MLFLOW_TRACKING_URI, else the project's own sqlite
file, checked and reached once (`configure`), and the experiment it picked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException

from gantrack.runtime import redact
from gantrack.runtime.errors import UserError, one_line

picked: dict[str, str] = {}  # tracking URI -> the id of the experiment configure() picked


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
    if uri and in_memory(uri):
        raise UserError(f"MLFLOW_TRACKING_URI: {uri} is in memory, gone with the process (and "
                        "the run); give a file: sqlite:///path/mlflow.db")  # fmt: skip
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
                picked[uri] = mlflow.set_experiment(experiment).experiment_id
            else:  # read once here: a URI that does not parse or a store that is not there
                mlflow.search_experiments(max_results=1)  # is this one line, not a traceback
            return
        with FileLock(root / "mlflow.db.lock"):
            mlflow.set_tracking_uri(f"sqlite:///{database}")
            if mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment, artifact_location=(root / "mlruns").as_uri())
            picked[mlflow.get_tracking_uri()] = mlflow.set_experiment(experiment).experiment_id
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


def in_memory(url: str) -> bool:
    """Whether a SQLAlchemy URL names a sqlite database in memory (sqlite://, :memory:)."""
    base = url.split("?", 1)[0]
    return re.fullmatch(r"sqlite(\+\w+)?://(/:memory:)?", base) is not None
