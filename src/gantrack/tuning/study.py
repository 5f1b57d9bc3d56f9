"""`gantrack tune`: an Optuna search over the `tune.space` knobs for the lowest FID.

Each trial (gantrack.tuning.objective) trains with the pipeline's own functions for
tune.epochs, reports an FID every tune.fid_every epochs to the pruner and returns the FID of
tune.fid_samples samples on the classifier extractor. Trials live in an RDB storage (sqlite in
the project by default, PostgreSQL for parallel workers) with heartbeats, so the trial of a
killed worker is marked failed when the study goes on. MLflow gets one parent run per
invocation and one nested child run per trial, logged here (optuna-integration's MLflowCallback
is deprecated and switches the experiment under you). What a trial built is freed after it
(gantrack.tuning.memory), so the process's memory stays flat across trials.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial

from gantrack import tracking
from gantrack.config import Config, TuneConfig, flat_params
from gantrack.errors import UserError
from gantrack.paths import PATHS, Paths
from gantrack.tuning import results
from gantrack.tuning.memory import TrialMemory
from gantrack.tuning.objective import (
    RUN_ATTR,
    STATE_TAG,
    TrialDiverged,
    load_inputs,
    metric_name,
    objective,
)

logger = logging.getLogger(__name__)
OUT_DIR = "tuning"


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
    callbacks: Optuna's, called after each trial. Writes tuning/{best_params.yaml, trials.csv,
    *.png} and logs them to the parent run.
    """
    t = cfg.tune
    inputs = None if create_only else load_inputs(paths)
    study = open_study(t)
    if create_only:
        logger.info("study %r ready in %s", t.study_name, _safe_url(storage_url(t)))
        return study
    tracking.configure(cfg.tracking.experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of killed workers -> FAIL
    seed = np.random.SeedSequence([t.seed, worker, len(study.trials)]).generate_state(1)[0]
    # constant_liar: parallel workers do not all suggest the params of a running trial.
    study.sampler = optuna.samplers.TPESampler(seed=int(seed), constant_liar=True)
    trial_objective = functools.partial(objective, cfg=cfg, inputs=inputs)
    with tracking.start_run(run_name=f"tune {t.study_name}"):
        mlflow.log_params(flat_params(cfg, "base", "data", "model", "train", "tune"))
        mlflow.set_tags({"optuna.study": t.study_name, "optuna.worker": worker})
        study.optimize(
            trial_objective, n_trials=t.n_trials, timeout=t.timeout, catch=(TrialDiverged,),
            callbacks=[TrialMemory(), *callbacks], gc_after_trial=True,
        )  # fmt: skip
        results.write_outputs(study, metric_name(t), tracking.project_root() / OUT_DIR)
    return study


def storage_url(t: TuneConfig) -> str:
    """tune.storage, else a sqlite file in the project's tuning/ folder (created)."""
    if t.storage:
        return t.storage
    out = tracking.project_root() / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{out / 'optuna.db'}"


def open_study(t: TuneConfig, *, create: bool = True) -> optuna.Study:
    """The study in tune.storage (created if absent when `create`), minimising FID."""
    storage = _storage(t)
    try:
        if not create:
            return optuna.load_study(study_name=t.study_name, storage=storage)
        return optuna.create_study(
            study_name=t.study_name, storage=storage, pruner=_pruner(t),
            direction="minimize", load_if_exists=True,
        )  # fmt: skip
    except KeyError:
        raise UserError(
            f"tune.study_name: no study {t.study_name!r} in {_safe_url(storage.url)}; "
            "run `gantrack tune` first"
        ) from None


def _storage(t: TuneConfig) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: a RUNNING trial silent for 2 heartbeats (its worker was
    killed) is marked FAIL by the next fail_stale_trials, here or in any other worker."""
    import sqlalchemy.exc

    url = storage_url(t)
    # A PostgreSQL host that drops packets would otherwise hang for minutes.
    engine_kwargs = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgres") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=t.heartbeat_seconds,
                grace_period=2 * t.heartbeat_seconds, heartbeat_stale_trial_callback=_stale_trial,
            )  # fmt: skip
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"tune.storage: cannot open {_safe_url(url)} ({reason})") from None


def _safe_url(url: str) -> str:
    """The URL with its password masked, for messages and tags."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


# tune.pruner -> the Optuna pruner for the tune section (config.PRUNERS lists these names).
PRUNERS: dict[str, Callable[[TuneConfig], optuna.pruners.BasePruner]] = {
    "median": lambda t: optuna.pruners.MedianPruner(
        n_startup_trials=t.prune_startup_trials, n_warmup_steps=t.prune_warmup_epochs
    ),
    "hyperband": lambda t: optuna.pruners.HyperbandPruner(
        min_resource=min(t.fid_every, t.epochs), max_resource=t.epochs
    ),
    "none": lambda t: optuna.pruners.NopPruner(),
}


def _pruner(t: TuneConfig) -> optuna.pruners.BasePruner:
    return PRUNERS[t.pruner](t)


def _stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """A killed worker's trial was marked FAIL: close its MLflow child run (and the dead
    worker's parent run) as failed too, so MLflow agrees with the study."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    logger.warning("trial %d: its worker stopped sending heartbeats; marked failed", trial.number)
    if not run_id:
        return
    client = mlflow.MlflowClient()
    try:
        client.set_tag(run_id, STATE_TAG, "failed")
        client.set_terminated(run_id, "FAILED")
        parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
        if parent and client.get_run(parent).info.status == "RUNNING":
            client.set_terminated(parent, "FAILED")
    except MlflowException as exc:
        logger.warning("trial %d: could not close MLflow run %s: %s", trial.number, run_id, exc)


def apply(cfg: Config, params_path: str | Path) -> dict[str, Any]:
    """Write the study's best params into params_path (comments and order kept); returns them."""
    return results.apply_params(open_study(cfg.tune, create=False), Path(params_path))
