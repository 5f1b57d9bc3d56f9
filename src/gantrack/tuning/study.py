"""`gantrack tune`: an Optuna search over the `tune.space` knobs for the lowest FID.

A new study first runs the current params (the baseline trial), enqueued once by whichever
process creates the study. Each trial (gantrack.tuning.objective) trains with the pipeline's
own functions for tune.epochs, reports an FID every tune.fid_every epochs to the pruner and
returns the FID of tune.fid_samples samples on the classifier extractor; its last sample grid
goes to the study's artifact store (tune.artifact_dir), which optuna-dashboard shows. Trials
live in an RDB storage (sqlite in the project by default, PostgreSQL for parallel workers) with
heartbeats, so the trial of a killed worker is marked failed when the study goes on. MLflow gets
one parent run per study, made with it and shared by its workers, and one nested child run per
trial, logged here (optuna-integration's MLflowCallback is deprecated and switches the
experiment under you). What a trial built is freed after it (gantrack.tuning.memory), so the
process's memory stays flat across trials.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from gantrack import tracking
from gantrack.config import Config, TuneConfig, check_search_layers, flat_params
from gantrack.io.paths import PATHS, Paths
from gantrack.runtime import redact
from gantrack.runtime.errors import UserError
from gantrack.tuning import results
from gantrack.tuning.memory import TrialMemory
from gantrack.tuning.objective import (
    RUN_ATTR,
    STATE_TAG,
    TrialDiverged,
    baseline,
    budget_unit,
    check_inputs,
    load_inputs,
    metric_name,
    objective,
)
from gantrack.tuning.pruners import PRUNERS
from gantrack.tuning.report import BASELINE_ATTR, DATA_ATTR, NO_BASELINE_ATTR

logger = logging.getLogger(__name__)
OUT_DIR = "tuning"
STUDY_RUN_ATTR = "gantrack.mlflow_run"  # study user attribute: its parent run


def tune(
    cfg: Config,
    *,
    worker: int = 0,
    create_only: bool = False,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    paths: Paths = PATHS,
) -> optuna.Study:
    """Run tune.n_trials trials (and/or until tune.timeout) of the study; returns the study.

    worker: index of this process among parallel workers (mixed into the sampler's seed so
    workers do not draw the same params). create_only: create the study and return.
    callbacks: Optuna's, called after each trial. Writes tuning/{report.md, best_params.yaml,
    trials.csv, *.png} and logs them to the parent run.
    """
    t = cfg.tune
    check_search_layers(cfg)
    inputs = None if create_only else load_inputs(paths)
    if inputs:
        check_inputs(cfg, inputs)
    store = None if create_only else artifact_store(t)
    study = open_study(t, baseline=baseline(cfg))
    if inputs:
        _check_identity(study, {"objective": metric_name(t), "dataset": inputs.dataset,
                                "budget": budget_unit(t)})  # fmt: skip
    if DATA_ATTR not in study.user_attrs:
        study.set_user_attr(DATA_ATTR, results.describe_data(cfg.data))
    if study.metric_names is None:  # a study made before its objective was named
        _name_objective(study, metric_name(t))
    tracking.configure(cfg.tracking.experiment)
    parent = study_run(study, cfg)
    if create_only:
        logger.info("study %r ready in %s, MLflow run %s", t.study_name,
                    redact.mask(storage_url(t)), parent)  # fmt: skip
        return study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of killed workers -> FAIL
    seed = np.random.SeedSequence([t.seed, worker, len(study.trials)]).generate_state(1)[0]
    # constant_liar: parallel workers do not all suggest the params of a running trial.
    study.sampler = optuna.samplers.TPESampler(seed=int(seed), constant_liar=True)
    trial_objective = functools.partial(objective, cfg=cfg, inputs=inputs, worker=worker,
                                        artifacts=store)  # fmt: skip
    with tracking.shared_run(parent, still_used=functools.partial(_running, study)):
        study.optimize(trial_objective, n_trials=t.n_trials, timeout=t.timeout,
                       catch=(TrialDiverged,), callbacks=[TrialMemory(), *callbacks],
                       gc_after_trial=True, show_progress_bar=sys.stderr.isatty())  # fmt: skip
        results.write_outputs(study, metric_name(t), tracking.project_root() / OUT_DIR)
    return study


def study_run(study: optuna.Study, cfg: Config) -> str:
    """The study's MLflow parent run, shared by all its workers: the one recorded on the study
    (user attribute gantrack.mlflow_run) while it exists in this store and experiment, else a
    new one with the params of the study's creation, recorded."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    recorded = study.user_attrs.get(STUDY_RUN_ATTR)
    if recorded:
        with contextlib.suppress(MlflowException, TypeError):
            run = client.get_run(str(recorded))
            if (run.info.lifecycle_stage == "active" and run.info.experiment_id == experiment
                    and _of_study(run, study, parent=True)):  # fmt: skip
                return recorded
        logger.warning("study %r: its MLflow run %s is deleted, in another store or "
                       "experiment, or not this study's; starting a new one", study.study_name,
                       recorded)  # fmt: skip
    with tracking.start_run(run_name=f"tune {study.study_name}") as run:
        tracking.log_params(flat_params(cfg, "base", "data", "model", "train", "tune"))
        mlflow.set_tag("optuna.study", study.study_name)
        if recorded:
            mlflow.set_tag(tracking.REPLACES_TAG, recorded)
    study.set_user_attr(STUDY_RUN_ATTR, run.info.run_id)
    return run.info.run_id


def _running(study: optuna.Study) -> bool:
    """Whether a trial of the study runs (in another worker, once this one is done)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _check_identity(study: optuna.Study, identity: dict[str, str]) -> None:
    """A study compares trials of one objective on one dataset, at one kind of budget (epochs or
    seconds: its pruner's steps): record what this one is on its first run; refuse to add
    trials of another objective (or sample count), dataset or budget."""
    for key, value in identity.items():
        attr = f"gantrack.{key}"
        found = study.user_attrs.get(attr)
        if found is None:
            study.set_user_attr(attr, value)
        elif found != value:
            raise UserError(
                f"tune.study_name: study {study.study_name!r} holds trials of {key} {found}, "
                f"this run's is {value}; choose another tune.study_name"
            )


STORAGE_ENV = "GANTRACK_TUNE_STORAGE"  # where a storage URL with a password belongs


def storage_url(t: TuneConfig, create: bool = True) -> str:
    """tune.storage, else $GANTRACK_TUNE_STORAGE, else a sqlite file in the project's tuning/
    folder (created). A URL with a password belongs in the environment, not in params.yaml,
    which git tracks."""
    if t.storage or os.environ.get(STORAGE_ENV):
        url = t.storage or os.environ[STORAGE_ENV]
        redact.add_secrets_in(url)  # its password, however a library spells it
        return url
    out = tracking.project_root() / OUT_DIR
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{out / 'optuna.db'}"


ARTIFACT_DIR = "artifacts"  # under tuning/, where tune.artifact_dir is null


def artifact_store(t: TuneConfig) -> optuna.artifacts.FileSystemArtifactStore:
    """The folder of the trials' grids (tune.artifact_dir, relative to the project; null:
    tuning/artifacts), created, for optuna-dashboard --artifact-dir."""
    chosen = Path(t.artifact_dir).expanduser() if t.artifact_dir else Path(OUT_DIR, ARTIFACT_DIR)
    folder = tracking.project_root() / chosen
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"tune.artifact_dir: cannot create {folder} ({exc.strerror})") from None
    return optuna.artifacts.FileSystemArtifactStore(str(folder))


def open_study(
    t: TuneConfig, *, create: bool = True, baseline: tuple[dict | None, str] | None = None
) -> optuna.Study:
    """The study in tune.storage (created if absent when `create`), minimising FID. The
    process that creates it names its objective and enqueues `baseline` (params, or None and
    why not) as its first trial: one baseline per study, however many workers start at once
    (the storage creates a study name once) and however often it resumes."""
    _check_sqlite(storage_url(t, create), create)
    storage = _storage(t)
    try:
        if not create:
            return optuna.load_study(study_name=t.study_name, storage=storage)
        study = optuna.create_study(study_name=t.study_name, storage=storage, pruner=_pruner(t),
                                    direction="minimize")  # fmt: skip
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=t.study_name, storage=storage, pruner=_pruner(t))
    except KeyError:
        raise UserError(
            f"tune.study_name: no study {t.study_name!r} in {redact.mask(storage.url)}; "
            "run `gantrack tune` first"
        ) from None
    _started(study, metric_name(t), baseline)
    return study


def _started(study: optuna.Study, metric: str, baseline: tuple[dict | None, str] | None) -> None:
    """A new study: its objective's name (optuna-dashboard shows it) and its baseline trial."""
    _name_objective(study, metric)
    if baseline is None:
        return
    params, reason = baseline
    if params is None:
        study.set_user_attr(NO_BASELINE_ATTR, reason)
        logger.warning("study %r: no baseline trial: %s", study.study_name, reason)
        return
    study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True})
    logger.info("study %r: the current params run first, as the baseline", study.study_name)


def _name_objective(study: optuna.Study, metric: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])


def _check_sqlite(url: str, create: bool) -> None:
    """A sqlite storage's file exists (to read a study) and its folder does (to create one),
    checked before SQLAlchemy creates the file."""
    if not url.startswith("sqlite:///"):
        return
    database = Path(url.removeprefix("sqlite:///").split("?")[0])
    if not create and not database.is_file():
        raise UserError(redact.mask(f"tune.storage: {url}: no such file; run `gantrack tune` "
                                    "first or point tune.storage at its store"))  # fmt: skip
    if not database.parent.is_dir():
        raise UserError(redact.mask(f"tune.storage: {url}: no folder {database.parent}; create "
                                    "it or fix the path"))  # fmt: skip


def _storage(t: TuneConfig) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: a RUNNING trial silent for 2 heartbeats (its worker was
    killed) is marked FAIL by the next fail_stale_trials, here or in any other worker."""
    import sqlalchemy.exc

    url = storage_url(t)
    _refuse_foreign_sqlite(url)
    tracking.store_defaults()  # a PostgreSQL host that drops packets: one line after 10 s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=t.heartbeat_seconds,
                grace_period=2 * t.heartbeat_seconds, heartbeat_stale_trial_callback=_stale_trial,
            )  # fmt: skip
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as exc:
            # RuntimeError: a database of another program or Optuna version (its schema)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(redact.mask(f"tune.storage: cannot open {url} ({reason})")) from None


def _refuse_foreign_sqlite(url: str) -> None:
    """A sqlite file holding another program's tables (the MLflow store, say) and none of
    Optuna's, or in memory (gone with the process): refused before Optuna touches it."""
    if tracking.store.in_memory(url):
        raise UserError(f"tune.storage: {url} is in memory, gone with the process; give a file")
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    if not url.startswith("sqlite:///") or not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return  # not a database: Optuna's own error says so
    if tables and "version_info" not in tables:
        raise UserError(f"tune.storage: {url} holds another program's tables ("
                        f"{', '.join(sorted(tables)[:3])}, ...), not Optuna's; give a file of "
                        "its own")  # fmt: skip


def _pruner(t: TuneConfig) -> optuna.pruners.BasePruner:
    return PRUNERS[t.pruner](t)


def _stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """A killed worker's trial was marked FAIL: close its MLflow child run as failed too, so
    MLflow agrees with the study (the parent run ends with the last worker)."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    logger.warning("trial %d: its worker stopped sending heartbeats; marked failed", trial.number)
    if not run_id:
        return
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(str(run_id))
        ours = _of_study(run, study, parent=False) and run.info.status == "RUNNING"
        if not ours or run.data.tags.get("optuna.trial") != str(trial.number):
            logger.warning("trial %d: MLflow run %s is not a running trial of study %r; left "
                           "alone", trial.number, run_id, study.study_name)  # fmt: skip
            return
        client.set_tag(run.info.run_id, STATE_TAG, "failed")
        client.set_terminated(run.info.run_id, "FAILED")
    except MlflowException as exc:
        logger.warning("trial %d: could not close MLflow run %s: %s", trial.number, run_id, exc)


def _of_study(run: mlflow.entities.Run, study: optuna.Study, *, parent: bool) -> bool:
    """Whether run is this study's parent run (parent) or one of its trials' runs, by the tags
    gantrack gave it: a shared storage's user attributes may name any run of the store."""
    tags = run.data.tags
    child = "mlflow.parentRunId" in tags
    return tags.get("optuna.study") == study.study_name and child != parent


def apply(cfg: Config, params_path: str | Path) -> dict[str, Any]:
    """Write the study's best params into params_path (comments and order kept); returns them."""
    return results.apply_params(open_study(cfg.tune, create=False), Path(params_path))
