"""`gantrack tune`: an Optuna search over the `tune.space` knobs for the lowest FID.

Each trial trains with the pipeline's own functions (training.build_gan, training.fit) for
tune.epochs, reports an FID every tune.fid_every epochs to the pruner and returns the FID of
tune.fid_samples samples on the classifier extractor. Trials live in an RDB storage (sqlite in
the project by default, PostgreSQL for parallel workers) with heartbeats, so the trial of a
killed worker is marked failed when the study goes on. MLflow gets one parent run per
invocation and one nested child run per trial, logged here (optuna-integration's MLflowCallback
is deprecated and switches the experiment under you). What a trial built is freed after it
(_TrialMemory), so the process's memory stays flat across trials.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial

from gantrack import config as config_lib
from gantrack import data, tracking, tuning_results
from gantrack.config import LOG_SCALE, SEARCH_TARGETS, Config, IntRange, TuneConfig
from gantrack.errors import UserError
from gantrack.pipeline import PATHS, Paths, load_reference

logger = logging.getLogger(__name__)
OUT_DIR = "tuning"
RUN_ATTR = "mlflow_run_id"  # trial user attribute: the trial's MLflow child run
STATE_TAG = "state"  # child run tag: complete | pruned | failed


class TrialDiverged(Exception):
    """Losses went NaN/Inf: the trial is recorded as failed and the study goes on."""


@dataclass(frozen=True)
class Inputs:
    """What every trial reads: the prepared train split and the classifier's reference stats."""

    images: np.ndarray  # uint8 (N, H, W, C)
    reference: tuple[np.ndarray, np.ndarray]  # mu (D,), sigma (D, D)
    classifier: Path


def metric_name(t: TuneConfig) -> str:
    """The objective's name: FID depends on the sample count, so the count is in the name."""
    return f"fid_classifier_n{t.fid_samples}"


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
    objective = functools.partial(_objective, cfg=cfg, inputs=inputs)
    with tracking.start_run(run_name=f"tune {t.study_name}"):
        for section in ("base", "data", "model", "train", "tune"):
            mlflow.log_params(config_lib.to_flat_dict(getattr(cfg, section), prefix=f"{section}."))
        mlflow.set_tags({"optuna.study": t.study_name, "optuna.worker": worker})
        study.optimize(objective, n_trials=t.n_trials, timeout=t.timeout, catch=(TrialDiverged,),
                       callbacks=[_TrialMemory(), *callbacks], gc_after_trial=True)  # fmt: skip
        tuning_results.write_outputs(study, metric_name(t), tracking.project_root() / OUT_DIR)
    return study


def load_inputs(paths: Paths = PATHS) -> Inputs:
    """The prepare, classifier and reference stages' outputs, or one UserError line."""
    for path in (paths.train, paths.classifier, paths.reference):
        if not Path(path).is_file():
            raise UserError(f"{path} is missing; run `dvc repro reference` before `gantrack tune`")
    mu, sigma, _ = load_reference(paths.reference, extractor="classifier")
    return Inputs(data.load_split(paths.train).images, (mu, sigma), Path(paths.classifier))


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


def _pruner(t: TuneConfig) -> optuna.pruners.BasePruner:
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=t.prune_startup_trials, n_warmup_steps=t.prune_warmup_epochs
        )
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min(t.fid_every, t.epochs), max_resource=t.epochs
        )
    return optuna.pruners.NopPruner()


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


class _TrialMemory:
    """Optuna callback that frees what the finished trial built.

    Keras' clear_session and gc are not enough with TensorFlow: each traced optimizer step goes
    through tf.distribute's all_reduce, a tf.custom_gradient, which in graph mode registers a
    "CustomGradient-<uid>" gradient function in TensorFlow's global gradient registry and never
    removes it. That function holds the traced graph, so every trial's train function (and its
    native counterpart) outlived the trial: about 12 MiB per trial. The entries added since the
    study started are dropped after each trial (their graphs are no longer used), then gc runs
    and glibc gives the freed heap back to the OS.
    """

    def __init__(self):
        self.registry = _gradient_registry()
        self.before = set(self.registry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        import keras

        keras.backend.clear_session(free_memory=True)
        for name in set(self.registry) - self.before:
            if name.startswith("CustomGradient-"):
                del self.registry[name]
        gc.collect()
        _malloc_trim()


def _gradient_registry() -> dict[str, Any]:
    """TensorFlow's gradient functions by op type ({} if its internals ever move)."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else {}


def _malloc_trim() -> None:
    """Return the heap's free pages to the OS, where the C library is glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def suggest(trial: optuna.Trial, cfg: Config) -> Config:
    """Draw every searched knob (named by its dotted params.yaml key) and return the config the
    trial trains with: tune.epochs, a checkpoint only at the end, a grid at each FID."""
    values: dict[str, Any] = {}
    for name, key in SEARCH_TARGETS.items():
        bounds = getattr(cfg.tune.space, name)
        if bounds is None:
            continue
        if isinstance(bounds, tuple):
            values[key] = trial.suggest_categorical(key, list(bounds))
        elif isinstance(bounds, IntRange):
            values[key] = trial.suggest_int(key, bounds.low, bounds.high)
        else:
            values[key] = trial.suggest_float(key, bounds.low, bounds.high, log=name in LOG_SCALE)
    t = cfg.tune
    values.update({"train.epochs": t.epochs, "train.checkpoint_every": t.epochs,
                   "train.sample_every": t.fid_every})  # fmt: skip
    for key, value in values.items():
        cfg = _replace_key(cfg, key, value)
    return cfg


def _replace_key(cfg: Any, key: str, value: Any) -> Any:
    """dataclasses.replace for a dotted key: _replace_key(cfg, 'train.lr_g', 1e-4)."""
    head, _, rest = key.partition(".")
    return replace(cfg, **{head: _replace_key(getattr(cfg, head), rest, value) if rest else value})


def _objective(trial: optuna.Trial, cfg: Config, inputs: Inputs) -> float:
    """One trial in its own nested MLflow run, tagged with how it ended."""
    import keras

    keras.backend.clear_session(free_memory=True)  # the previous trial's graphs and models
    trial_cfg = suggest(trial, cfg)
    run = mlflow.start_run(run_name=f"trial {trial.number}", nested=True)
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    mlflow.log_params(trial.params)
    mlflow.set_tags({"optuna.study": cfg.tune.study_name, "optuna.trial": trial.number})
    state = "failed"
    try:
        value = _train_and_score(trial, trial_cfg, inputs)
        state = "complete"
        return value
    except optuna.TrialPruned:
        state = "pruned"
        raise
    finally:
        mlflow.set_tag(STATE_TAG, state)
        mlflow.end_run("FAILED" if state == "failed" else "FINISHED")


class _Pruning:
    """PeriodicFID's on_value: report each FID; when the pruner says so, stop `fit` cleanly
    (an exception inside Keras' loop would skip its cleanup) and remember the epoch."""

    def __init__(self, trial: optuna.Trial, model):
        self.trial, self.model, self.epoch = trial, model, None

    def __call__(self, epoch: int, fid: float) -> None:
        self.trial.report(fid, epoch)
        if self.trial.should_prune():
            self.epoch = epoch
            self.model.stop_training = True


def _train_and_score(trial: optuna.Trial, cfg: Config, inputs: Inputs) -> float:
    """Train as the train stage does (same functions), then FID at tune.fid_samples samples."""
    import keras

    from gantrack import callbacks, training

    t = cfg.tune
    keras.utils.set_random_seed(cfg.base.seed)
    gan = training.build_gan(cfg.model, cfg.train, inputs.images.shape[1:], cfg.base.seed)
    classifier = keras.models.load_model(inputs.classifier)
    pruning = _Pruning(trial, gan)
    g = cfg.generate
    fid = callbacks.PeriodicFID(t.fid_every, classifier, inputs.reference, t.fid_samples,
                                g.seed, g.batch_size, on_value=pruning)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gantrack-trial-") as tmp:
        result = training.fit(
            gan, inputs.images, cfg.train, seed=cfg.base.seed,
            checkpoint_dir=Path(tmp) / "checkpoints", samples_dir=Path(tmp) / "samples",
            extra_callbacks=[callbacks.MLflowMetrics(), fid],
        )  # fmt: skip
        grids = sorted((Path(tmp) / "samples").glob("epoch_*.png"))
        if grids:  # the last grid, also of pruned trials
            mlflow.log_artifact(str(grids[-1]), artifact_path="samples")
    if result.diverged_at:
        raise TrialDiverged(f"losses not finite at epoch {result.diverged_at}")
    if pruning.epoch:
        raise optuna.TrialPruned(f"pruned at epoch {pruning.epoch}")
    value = fid.values.get(t.epochs)
    if value is None:  # tune.epochs is not a multiple of tune.fid_every
        g = cfg.generate
        value = callbacks.generator_fid(gan.sampler, classifier, inputs.reference,
                                        t.fid_samples, g.seed, g.batch_size)  # fmt: skip
        mlflow.log_metric(fid.name, value, step=t.epochs)
    mlflow.log_metric(f"final_{fid.name}", value)
    return value


def apply(cfg: Config, params_path: str | Path) -> dict[str, Any]:
    """Write the study's best params into params_path (comments and order kept); returns them."""
    return tuning_results.apply_params(open_study(cfg.tune, create=False), Path(params_path))
