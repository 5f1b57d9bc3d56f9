"""train: the train split -> models/generator.keras, the loss history and plots, a grid of
fixed-noise samples every train.sample_every epochs; resumes from checkpoints/ after a kill and
keeps logging into the same MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout

from gantrack import data, tracking
from gantrack.config import Config, flat_params
from gantrack.evaluation import scoring
from gantrack.gan import best, checkpoints, devices, inputs, plots, training
from gantrack.io import keras_files
from gantrack.io.files import atomic_path, read_json
from gantrack.io.paths import PATHS, Paths, require
from gantrack.runtime import stop
from gantrack.runtime.errors import UserError
from gantrack.tracking import registry, selection

logger = logging.getLogger(__name__)
LOCK_WAIT_SECONDS = 10  # a train stopping on request lets go within a batch or an epoch's FID

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = (
    "base",
    "data",
    "model",
    "train",
    "generate.seed",
    "generate.batch_size",
    "tracking.experiment",
    "tracking.system_metrics",
)


def fingerprint(cfg: Config, dataset_sha256: str) -> str:
    """Identifies what a checkpoint was trained from: params that shape training, and data."""
    used = {k: asdict(getattr(cfg, k)) for k in ("base", "data", "model", "train")}
    blob = json.dumps({"params": used, "data": dataset_sha256}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run(cfg: Config, paths: Paths = PATHS) -> str | None:
    """Train the GAN (resuming from checkpoints after a kill); returns the MLflow run id.

    Everything a user can get wrong is checked before any file is written. One training per
    project at a time: a second one would write the same checkpoints. Under
    multi_worker_mirrored only the chief writes outputs, checkpoints and MLflow; the other
    workers train alongside it in a temporary directory and return None.
    """
    meta = read_json(require(paths.meta, "prepare"))
    split = data.load_split(paths.train)
    _verify(split, paths, meta)
    inputs.images_per_step(cfg.train, len(split.images))  # bad params fail before any output
    fid = _fid_watch(cfg, paths, has_labels=meta["n_classes"] > 1)
    gan = training.build_for_data(cfg.model, cfg.train, split.images.shape, meta["n_classes"],
                                  cfg.base.seed)  # fmt: skip
    if not devices.is_chief(gan.distribute_strategy):
        with tempfile.TemporaryDirectory(prefix="gantrack-worker-") as tmp:
            fid = dataclasses.replace(fid, kept=None) if fid else None  # the chief keeps them
            _train_gan(cfg, split, meta, gan, fid, Path(tmp) / "checkpoints", Path(tmp) / "grids")
        return None
    tracking.configure(cfg.tracking.experiment)  # an unusable store fails before training
    with _only_writer(paths.train_lock):
        return _train(cfg, paths, meta, split, gan, fid)


def _verify(split: data.Split, paths: Paths, meta: dict) -> None:
    """The prepared data is what `prepare` wrote (meta.json's digest), so that what the run
    records (tags, dataset, checkpoint fingerprint) is what it trains on."""
    found = data.digest(split, data.load_split(paths.test))
    if found != meta.get("sha256"):
        raise UserError(
            f"{paths.train} or {paths.test} is not what `prepare` wrote (sha256 {found[:12]}, "
            f"{paths.meta} says {str(meta.get('sha256'))[:12]}); run `dvc repro prepare` "
            "(or `dvc checkout`) to restore them"
        )


@contextlib.contextmanager
def _only_writer(lock_path: Path):
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        # A train that was asked to stop (its dvc killed, say) lets go within a batch or two.
        logger.debug("another `gantrack train` holds %s; waiting up to %d s", lock_path,
                    LOCK_WAIT_SECONDS)  # fmt: skip
        _acquire_or_refuse(lock, lock_path)
    try:
        yield
    finally:
        lock.release()


def _acquire_or_refuse(lock: FileLock, lock_path: Path) -> None:
    try:
        lock.acquire(timeout=LOCK_WAIT_SECONDS)
    except Timeout:
        raise UserError(
            f"another `gantrack train` is running in this project (it holds {lock_path}); "
            "wait for it to finish or stop it"
        ) from None


def _train_gan(
    cfg: Config,
    split: data.Split,
    meta: dict,
    gan,
    fid,
    checkpoint_dir: Path,
    grids_dir: Path,
    hooks: training.Hooks | None = None,
) -> training.Trained:
    return training.train(cfg.model, cfg.train, split.images, split.labels, meta["n_classes"],
                          seed=cfg.base.seed, checkpoint_dir=checkpoint_dir, grids_dir=grids_dir,
                          fid=fid, hooks=hooks, gan=gan)  # fmt: skip


def _train(cfg: Config, paths: Paths, meta: dict, split: data.Split, gan, fid) -> str:
    key = fingerprint(cfg, meta["sha256"])
    state, abandoned = checkpoints.read_state(paths.checkpoints, key)
    if abandoned.get("run_id"):  # its training will never be resumed
        tracking.end_abandoned(abandoned["run_id"])
    name = tracking.run_name(meta["dataset"])
    system_metrics = cfg.tracking.system_metrics
    with tracking.start_run(state.get("run_id"), name, system_metrics) as run_:
        checkpoints.write_state(paths.checkpoints, key, run_id=run_.info.run_id)
        tracking.log_params(flat_params(cfg, "base", "data", "model", "train"))
        mlflow.set_tags({
            "dataset": meta["dataset"], "dataset.sha256": meta["sha256"],
            "dataset.source": meta.get("source", "default"),
            "precision_policy": gan.generator.dtype_policy.name,
            "replicas": gan.distribute_strategy.num_replicas_in_sync,
            "conditional_classes": gan.num_classes,
        })  # fmt: skip
        tracking.log_dataset(split.images, meta["dataset"], meta["sha256"], paths.train)
        classes = {"class_names": meta.get("class_names")}
        log = functools.partial(registry.log_generator, **classes)
        models = selection.EpochModelSync(fid.kept, log) if fid and fid.kept else None
        sync = tracking.CheckpointSync(models, dataset=(meta["dataset"], meta["sha256"][:16]))
        hooks = training.Hooks(after_checkpoint=sync)
        trained = _train_gan(cfg, split, meta, gan, fid, paths.checkpoints, paths.grids_dir, hooks)
        result = trained.result
        if result.diverged_at:
            raise UserError(
                f"training diverged at epoch {result.diverged_at} (losses not finite); "
                "lower train.lr_g / train.lr_d or change train.loss"
            )
        generator, chosen = _chosen_generator(cfg, fid, gan, result.history)
        with atomic_path(paths.generator) as tmp:
            generator.save(tmp)
        with atomic_path(paths.losses_csv) as tmp:
            result.history.to_csv(tmp, index=False)
        figure = plots.loss_curves(result.history)
        figure.savefig(paths.losses_png, dpi=100)
        mlflow.log_figure(figure, "losses.png")
        registry.log_generator(generator, step=chosen, **classes)
        stop.raise_if_requested()  # asked to stop at the very end: keep the checkpoints
    tracking.write_run_file(paths.train_run, run_.info.run_id)
    shutil.rmtree(paths.checkpoints)  # finished: nothing left to resume
    return run_.info.run_id


def _chosen_generator(cfg: Config, fid: training.FidWatch | None, gan, history) -> tuple:
    """(the generator the run ends with, its epoch) by train.select (gan.best.choose), recorded
    on the run (selection.record_choice); an earlier epoch's is loaded from its kept file."""
    metric = fid.kept.metric if fid and fid.kept else None
    epoch, chosen_by = best.choose(history, metric, cfg.train.select)
    selection.record_choice(epoch, chosen_by, metric, best.scores(history, metric).get(epoch))
    if epoch == int(history["epoch"].max()):
        return gan.sampler, epoch
    logger.info("train.select best: the generator of epoch %d (%s %.4g)", epoch, metric,
                best.scores(history, metric)[epoch])  # fmt: skip
    path = fid.kept.path(epoch)
    return keras_files.load(path, str(path)), epoch


def _fid_watch(cfg: Config, paths: Paths, has_labels: bool) -> training.FidWatch | None:
    """The optional per-epoch FID (train.fid_every > 0) on the classifier extractor, which
    exists only for data with labels (Inception on every epoch would cost more than training)."""
    train_cfg = cfg.train
    if not train_cfg.fid_every:
        return None
    if not has_labels:
        logger.info("train.fid_every: no FID while training, the data has no labels")
        return None
    mu, sigma, _ = scoring.load_reference(paths.reference, extractor="classifier")
    path = require(paths.classifier, "classifier")
    classifier = keras_files.load(path, str(path))
    metric = f"fid_classifier_n{train_cfg.fid_samples}"  # PeriodicFID's name for it
    kept = best.EpochModels(paths.checkpoints / best.DIRECTORY, train_cfg.keep_best, metric)
    return training.FidWatch(classifier, (mu, sigma), train_cfg.fid_every, train_cfg.fid_samples,
                             cfg.generate.seed, cfg.generate.batch_size, kept=kept)  # fmt: skip
