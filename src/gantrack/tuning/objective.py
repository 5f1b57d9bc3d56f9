"""One trial: draw the searched knobs, train as the train stage does (gantrack.gan), report an
FID every tune.fid_every epochs to the pruner, and return the final FID; each trial in its own
nested MLflow run tagged with how it ended. With tune.seconds, trials train for equal time
instead of equal epochs (gantrack.tuning.budget)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import optuna

from gantrack import data, tracking
from gantrack.config import LOG_SCALE, SEARCH_TARGETS, Config, IntRange, TuneConfig
from gantrack.evaluation import generator_fid, scoring
from gantrack.gan import training
from gantrack.gan.geometry import layer_count
from gantrack.gan.inputs import steps_per_epoch
from gantrack.io import images, keras_files
from gantrack.io.files import read_json
from gantrack.io.paths import PATHS, Paths, require
from gantrack.runtime import stop
from gantrack.runtime.errors import UserError, one_line
from gantrack.tuning import budget
from gantrack.tuning.report import BASELINE_ATTR, EPOCHS_ATTR

logger = logging.getLogger(__name__)
RUN_ATTR = "mlflow_run_id"  # trial user attribute: the trial's MLflow child run
STATE_TAG = "state"  # child run tag: complete | pruned | failed
CLOCK_ATTR = "gantrack.reference_step_seconds"  # study user attribute (tune.seconds)


class TrialDiverged(Exception):
    """Losses went NaN/Inf: the trial is recorded as failed and the study goes on."""


@dataclass(frozen=True)
class Inputs:
    """What every trial reads: the prepared train split and the classifier's reference stats."""

    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # (N,) int
    n_classes: int
    reference: tuple[np.ndarray, np.ndarray]  # mu (D,), sigma (D, D)
    classifier: Path
    dataset: str  # sha256 of the prepared splits (meta.json)


def metric_name(t: TuneConfig) -> str:
    """The objective's name: FID depends on the sample count, so the count is in the name."""
    return f"fid_classifier_n{t.fid_samples}"


def load_inputs(paths: Paths = PATHS) -> Inputs:
    """The prepare, classifier and reference stages' outputs, or one UserError line."""
    for path in (paths.train, paths.classifier, paths.reference):
        if not Path(path).is_file():
            raise UserError(f"{path} is missing; run `dvc repro reference` before `gantrack tune`")
    mu, sigma, _ = scoring.load_reference(paths.reference, extractor="classifier")
    train = data.load_split(paths.train)
    meta = read_json(require(paths.meta, "prepare"))
    return Inputs(train.images, train.labels, meta["n_classes"], (mu, sigma),
                  Path(paths.classifier), meta["sha256"])  # fmt: skip


def check_inputs(cfg: Config, inputs: Inputs) -> None:
    """Refuse, before any trial, a space whose largest batch cannot fill one training step, and
    class conditioning on data that cannot have it."""
    training.conditioning_classes(cfg.model, inputs.n_classes, cfg.train.loss)
    batches = cfg.tune.space.batch_size or (cfg.train.batch_size,)
    key = "tune.space.batch_size" if cfg.tune.space.batch_size else "train.batch_size"
    step = max(batches) * cfg.train.n_critic
    if step > len(inputs.images):
        raise UserError(
            f"{key}: {max(batches)} * train.n_critic = {step} is more than the "
            f"{len(inputs.images)} training images; use smaller batches or raise data.limit"
        )


def suggest(trial: optuna.Trial, cfg: Config) -> Config:
    """Draw every searched knob (named by its dotted params.yaml key) and return the config the
    trial trains with: tune.epochs, a checkpoint and a grid at each FID."""
    values: dict[str, Any] = {}
    for name, key in SEARCH_TARGETS.items():
        bounds = getattr(cfg.tune.space, name)
        if bounds is None:
            continue
        try:
            if isinstance(bounds, tuple):
                values[key] = trial.suggest_categorical(key, list(bounds))
            elif isinstance(bounds, IntRange):
                values[key] = trial.suggest_int(key, bounds.low, bounds.high)
            else:
                values[key] = trial.suggest_float(key, bounds.low, bounds.high,
                                                  log=name in LOG_SCALE)  # fmt: skip
        except ValueError as exc:  # the study's trials drew it from another distribution
            raise UserError(f"tune.study_name: study {cfg.tune.study_name!r} searched {key} "
                            f"otherwise ({one_line(exc)}); choose another "
                            "tune.study_name") from None  # fmt: skip
    t = cfg.tune
    # Checkpoints (in a temporary folder) where FIDs are measured: CheckpointSync then logs
    # those epochs, as the train stage does, also the epoch a pruner stops at.
    values.update({"train.epochs": t.epochs, "train.checkpoint_every": t.fid_every,
                   "train.sample_every": t.fid_every})  # fmt: skip
    for key, value in values.items():
        cfg = _replace_key(cfg, key, value)
    return cfg


def baseline(cfg: Config) -> tuple[dict[str, Any] | None, str]:
    """The current values of the searched knobs (the baseline trial's params), or None and why
    not: a value outside its search space (Optuna cannot draw a choice that is not listed)."""
    params: dict[str, Any] = {}
    for name, key in SEARCH_TARGETS.items():
        bounds = getattr(cfg.tune.space, name)
        if bounds is None:
            continue
        value = _get_key(cfg, key)
        if value == "auto":  # a layer count that follows the image size: the number it is
            value = layer_count(value, *cfg.data.shape[:2])
        inside = (
            value in bounds if isinstance(bounds, tuple) else bounds.low <= value <= bounds.high
        )
        if not inside:
            return None, f"{key} {value!r} lies outside tune.space.{name}"
        params[key] = value
    return params, ""


def _get_key(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _replace_key(cfg: Any, key: str, value: Any) -> Any:
    """dataclasses.replace for a dotted key: _replace_key(cfg, 'train.lr_g', 1e-4)."""
    head, _, rest = key.partition(".")
    return replace(cfg, **{head: _replace_key(getattr(cfg, head), rest, value) if rest else value})


def objective(trial: optuna.Trial, cfg: Config, inputs: Inputs, worker: int = 0,
              artifacts: Any = None) -> float:  # fmt: skip
    """One trial in its own nested MLflow run, tagged with how it ended, its worker and whether
    it is the baseline; its last sample grid also goes to `artifacts` (an Optuna artifact store,
    what optuna-dashboard shows). Stopped (a signal) fails the trial at once: Optuna lets a
    stop of a kind it does not know through and left the trial RUNNING until the heartbeat ran
    out (a KeyboardInterrupt it would mark FAIL, but printing its traceback)."""
    try:
        return _trial(trial, cfg, inputs, worker, artifacts)
    except stop.Stopped:
        trial.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise


def _trial(trial: optuna.Trial, cfg: Config, inputs: Inputs, worker: int, artifacts: Any) -> float:
    keras.backend.clear_session(free_memory=True)  # the previous trial's graphs and models
    trial_cfg = suggest(trial, cfg)
    is_baseline = "true" if trial.user_attrs.get(BASELINE_ATTR) else "false"
    # The study's tags from the start: a worker killed at any point leaves a run its study
    # recognises as its trial's (study._stale_trial closes only those).
    tags = {"optuna.study": cfg.tune.study_name, "optuna.trial": str(trial.number),
            "optuna.worker": str(worker), "optuna.baseline": is_baseline}  # fmt: skip
    run = mlflow.start_run(run_name=f"trial {trial.number}", nested=True,
                           tags={**tracking.masked_context_tags(), **tags})  # fmt: skip
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    mlflow.log_params(trial.params)
    state, status = "failed", "FAILED"
    try:
        value = _train_and_score(trial, trial_cfg, inputs, artifacts, reference=cfg)
        state, status = "complete", "FINISHED"
        return value
    except optuna.TrialPruned:
        state, status = "pruned", "FINISHED"
        raise
    except stop.Stopped:
        status = "KILLED"  # stopped on request
        raise
    finally:
        mlflow.set_tag(STATE_TAG, state)
        mlflow.end_run(status)


def budget_unit(t: TuneConfig) -> str:
    """What a trial's budget is counted in: `epochs`, or `seconds` with tune.seconds (a study
    holds trials of one, as its pruner's steps count in it)."""
    return "seconds" if t.seconds else "epochs"


class _Pruning:
    """on_value of a trial's FIDs: report each at its step (the epoch, or the budget second);
    when the pruner says so, stop `fit` cleanly (an exception inside Keras' loop would skip its
    cleanup) and remember the step."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.model, self.step = trial, None, None

    def watch(self, gan) -> None:
        """training.Hooks' on_start: the model whose training a prune stops."""
        self.model = gan

    def __call__(self, step: int, fid: float) -> None:
        self.trial.report(fid, step)
        if self.trial.should_prune():
            self.step = step
            self.model.stop_training = True


def _train_and_score(trial: optuna.Trial, cfg: Config, inputs: Inputs, artifacts: Any,
                     reference: Config) -> float:  # fmt: skip
    """Train as the train stage does (training.train), then FID at tune.fid_samples samples;
    with tune.seconds, for the steps the budget gives at its speed against `reference`'s."""
    tune, gen = cfg.tune, cfg.generate
    share = None
    if tune.seconds:
        cfg, share = _equal_time(trial, cfg, reference, inputs)
    classifier = keras_files.load(inputs.classifier, str(inputs.classifier))
    pruning = _Pruning(trial)
    fid, gan, steps, values = None, None, (), {}
    if share:
        gan, steps, values = _by_second(cfg, share, inputs, classifier, pruning)
    else:
        fid = training.FidWatch(classifier, inputs.reference, tune.fid_every, tune.fid_samples,
                                gen.seed, gen.batch_size, on_value=pruning)  # fmt: skip
    hooks = training.Hooks(on_start=pruning.watch, after_checkpoint=tracking.CheckpointSync(),
                           callbacks=steps)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gantrack-trial-") as tmp:
        trained = training.train(
            cfg.model, cfg.train, inputs.images, inputs.labels, inputs.n_classes,
            seed=cfg.base.seed, checkpoint_dir=Path(tmp) / "checkpoints",
            grids_dir=Path(tmp) / "samples", fid=fid, hooks=hooks, gan=gan,
        )  # fmt: skip
        grids = images.grid_files(Path(tmp) / "samples")
        if grids:  # the last grid, also of pruned trials
            epoch, grid = max(grids.items())
            mlflow.log_artifact(str(grid), artifact_path="samples")
            if artifacts is not None:
                _upload_grid(
                    trial, artifacts, grid, Path(tmp) / f"trial{trial.number}_epoch{epoch}.png"
                )
    if trained.result.diverged_at:
        raise TrialDiverged(f"losses not finite at epoch {trained.result.diverged_at}")
    if pruning.step:
        raise optuna.TrialPruned(f"pruned at {budget_unit(tune)[:-1]} {pruning.step}")
    name, epochs = metric_name(tune), cfg.train.epochs
    value = values.get(tune.seconds) if share else trained.fid.get(epochs)
    if value is None:  # tune.epochs is not a multiple of tune.fid_every
        value = generator_fid.generator_fid(trained.gan.sampler, classifier, inputs.reference,
                                            tune.fid_samples, gen.seed, gen.batch_size)  # fmt: skip
        mlflow.log_metric(name, value, step=epochs)
    mlflow.log_metric(f"final_{name}", value)
    return value


def _by_second(cfg: Config, share: budget.Budget, inputs: Inputs, classifier: keras.Model,
               pruning: _Pruning) -> tuple[Any, tuple, dict[int, float]]:  # fmt: skip
    """With tune.seconds: the trial's GAN (its rates decaying over the budget's steps), the
    callback that ends training after them and measures the FID at each mark's step (logged
    as <objective>_by_second, step: the budget second; reported there), and those FIDs."""
    gan = training.build_for_data(cfg.model, cfg.train, inputs.images.shape, inputs.n_classes,
                                  cfg.base.seed, steps=share.steps)  # fmt: skip
    name, values = f"{metric_name(cfg.tune)}_by_second", {}

    def at_mark(second: int, model) -> None:
        values[second] = generator_fid.generator_fid(
            model.sampler, classifier, inputs.reference, cfg.tune.fid_samples,
            cfg.generate.seed, cfg.generate.batch_size)  # fmt: skip
        mlflow.log_metric(name, values[second], step=second)
        pruning(second, values[second])

    per_epoch = steps_per_epoch(cfg.train, len(inputs.images))
    return gan, (budget.Steps(share, per_epoch, at_mark),), values


def _equal_time(trial: optuna.Trial, cfg: Config, reference: Config,
                inputs: Inputs) -> tuple[Config, budget.Budget]:  # fmt: skip
    """The trial's config for tune.seconds of training, and its budget.plan: its step timed
    against the reference's and priced on the study's clock (see budget); what it got goes
    to the trial and its MLflow run."""
    mine, theirs = budget.step_seconds([cfg, reference], inputs.images, inputs.labels,
                                       inputs.n_classes)  # fmt: skip
    clock = trial.study.user_attrs.get(CLOCK_ATTR)
    if clock is None:  # the study's first timing
        clock = theirs
        trial.study.set_user_attr(CLOCK_ATTR, clock)
    per_epoch = steps_per_epoch(cfg.train, len(inputs.images))
    share = budget.plan(cfg.tune.seconds, cfg.tune.fid_every_seconds, clock * mine / theirs,
                        per_epoch)  # fmt: skip
    epochs = round(share.steps / per_epoch, 2)
    trial.set_user_attr(EPOCHS_ATTR, epochs)
    mlflow.log_params({"budget.steps": share.steps, "budget.epochs": epochs})
    mlflow.log_metrics({"step_seconds": mine, "reference_step_seconds": theirs})
    logger.info("trial %d: %.2fx the reference's step time, %d steps (%.2f epochs) in "
                "tune.seconds %d", trial.number, mine / theirs, share.steps, epochs,
                cfg.tune.seconds)  # fmt: skip
    return budget.fitted(cfg, share), share


def _upload_grid(trial: optuna.Trial, store: Any, grid: Path, named: Path) -> None:
    """The grid into the study's artifact store under a name that says what it is."""
    shutil.copyfile(grid, named)
    optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(named),
                                     study_or_trial=trial, mimetype="image/png")  # fmt: skip
