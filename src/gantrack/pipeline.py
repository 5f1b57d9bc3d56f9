"""The pipeline's stages, one function each: config in, files out (the paths dvc.yaml declares).

Stages talk only through these files. train, generate and evaluate log into one MLflow run,
whose id travels in the small run files (see gantrack.tracking).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gantrack import config as config_lib
from gantrack import data, images
from gantrack.config import Config, EvaluateConfig
from gantrack.errors import UserError
from gantrack.files import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paths:
    """Every file a stage reads or writes, relative to the project root (as in dvc.yaml)."""

    train: Path = Path("data/prepared/train.npz")
    test: Path = Path("data/prepared/test.npz")
    meta: Path = Path("data/prepared/meta.json")
    classifier: Path = Path("models/classifier.keras")
    classifier_metrics: Path = Path("metrics/classifier.json")
    reference: Path = Path("data/reference/stats.npz")
    generator: Path = Path("models/generator.keras")
    train_run: Path = Path("models/run.json")
    checkpoints: Path = Path("checkpoints")
    samples_dir: Path = Path("plots/samples")
    losses_csv: Path = Path("plots/losses.csv")
    losses_png: Path = Path("plots/losses.png")
    samples: Path = Path("data/generated/samples.npz")
    generate_run: Path = Path("data/generated/run.json")
    samples_png: Path = Path("plots/generated.png")
    progress_gif: Path = Path("plots/progress.gif")
    eval_metrics: Path = Path("metrics/eval.json")


PATHS = Paths()


def write_json(path: Path, values: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2) + "\n")


def read_json(path: Path, stage: str) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro {stage}` first")
    return json.loads(Path(path).read_text())


def prepare(cfg: Config, paths: Paths = PATHS) -> dict:
    """Dataset -> train/test .npz (uint8 NHWC + labels) and meta.json (shape, counts, sha256)."""
    d = cfg.data
    train, test = data.load_dataset(
        d.dataset, d.source_dir, test_fraction=d.test_fraction, seed=cfg.base.seed
    )
    train = data.subsample(train, d.limit, cfg.base.seed)
    meta = {
        "dataset": d.dataset,
        "shape": list(train.images.shape[1:]),
        "n_train": len(train),
        "n_test": len(test),
        "n_classes": int(max(train.labels.max(), test.labels.max())) + 1,
        "sha256": data.digest(train, test),
    }
    data.save_split(paths.train, train)
    data.save_split(paths.test, test)
    write_json(paths.meta, meta)
    logger.info("prepared %s: %d train, %d test images", d.dataset, len(train), len(test))
    return meta


def train_classifier(cfg: Config, paths: Paths = PATHS) -> float:
    """Train the feature-extractor CNN on the train split; save it and its test accuracy."""
    import keras

    from gantrack import features

    train, test = data.load_split(paths.train), data.load_split(paths.test)
    keras.utils.set_random_seed(cfg.base.seed)
    model, accuracy = features.train_classifier(
        cfg.classifier, train.images, train.labels, test.images, test.labels
    )
    with atomic_path(paths.classifier) as tmp:
        model.save(tmp)
    write_json(paths.classifier_metrics, {"classifier_test_accuracy": accuracy})
    logger.info("classifier test accuracy: %.4f", accuracy)
    return accuracy


def reference(cfg: Config, paths: Paths = PATHS) -> None:
    """Feature statistics (mu, sigma, n) and features of the test split, once per extractor."""
    from gantrack import metrics

    name, extract = _extractor(cfg, paths)
    test = data.load_split(paths.test)
    feats, _ = extract(test.images, cfg.evaluate.batch_size)
    mu, sigma = metrics.statistics(feats)
    with atomic_path(paths.reference) as tmp:
        # features too: KID and precision/recall need the samples, not only their moments.
        np.savez(tmp, mu=mu, sigma=sigma, n=len(feats), features=feats.astype(np.float32),
                 extractor=name)  # fmt: skip


def _extractor(cfg: Config, paths: Paths):
    """(resolved extractor name, its extract function); see features.load_extractor."""
    from gantrack import features

    e = cfg.evaluate
    name = features.resolve_extractor(e.extractor, e.inception_weights)
    return name, features.load_extractor(name, paths.classifier, e.inception_weights)


def _load_model(path: Path, stage: str):
    import keras

    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro {stage}` first")
    return keras.models.load_model(path)


def fingerprint(cfg: Config, dataset_sha256: str) -> str:
    """Identifies what a checkpoint was trained from: params that shape training, and data."""
    used = {k: asdict(getattr(cfg, k)) for k in ("base", "data", "model", "train")}
    blob = json.dumps({"params": used, "data": dataset_sha256}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def train(cfg: Config, paths: Paths = PATHS) -> str:
    """Train the GAN (resuming from checkpoints after a kill); returns the MLflow run id."""
    import keras
    import mlflow

    from gantrack import callbacks, plotting, tracking, training

    meta = read_json(paths.meta, "prepare")
    split = data.load_split(paths.train)
    training.images_per_step(cfg.train, len(split.images))  # bad params fail before any output
    key = fingerprint(cfg, meta["sha256"])
    state = training.read_state(paths.checkpoints, key)
    keras.utils.set_random_seed(cfg.base.seed)
    gan = training.build_gan(cfg.model, cfg.train, split.images.shape[1:], cfg.base.seed)
    tracking.configure(cfg.tracking.experiment)
    with tracking.start_run(state.get("run_id")) as run:
        training.write_state(paths.checkpoints, key, run_id=run.info.run_id)
        mlflow.log_params(_flat(cfg, "base", "data", "model", "train"))
        mlflow.set_tags({
            "dataset": meta["dataset"], "dataset.sha256": meta["sha256"],
            "precision_policy": gan.generator.dtype_policy.name,
            "replicas": gan.distribute_strategy.num_replicas_in_sync,
        })  # fmt: skip
        result = training.fit(
            gan, split.images, cfg.train, seed=cfg.base.seed,
            checkpoint_dir=paths.checkpoints, samples_dir=paths.samples_dir,
            extra_callbacks=[callbacks.MLflowMetrics(), *_fid_callbacks(cfg, paths)],
        )  # fmt: skip
        if result.diverged_at:
            raise UserError(
                f"training diverged at epoch {result.diverged_at} (losses not finite); "
                "lower train.lr_g / train.lr_d or change train.loss"
            )
        with atomic_path(paths.generator) as tmp:
            gan.sampler.save(tmp)
        with atomic_path(paths.losses_csv) as tmp:
            result.history.to_csv(tmp, index=False)
        figure = plotting.loss_curves(result.history)
        figure.savefig(paths.losses_png, dpi=100)
        mlflow.log_figure(figure, "losses.png")
        tracking.log_generator(gan.sampler)
    tracking.write_run_file(paths.train_run, run.info.run_id)
    shutil.rmtree(paths.checkpoints)  # finished: nothing left to resume
    return run.info.run_id


def _fid_callbacks(cfg: Config, paths: Paths) -> list:
    """The optional per-epoch FID (train.fid_every > 0) on the classifier extractor."""
    from gantrack import callbacks

    t = cfg.train
    if not t.fid_every:
        return []
    mu, sigma, _ = load_reference(paths.reference, extractor="classifier")
    classifier = _load_model(paths.classifier, "classifier")
    return [
        callbacks.PeriodicFID(t.fid_every, classifier, (mu, sigma), t.fid_samples,
                              cfg.generate.seed, cfg.generate.batch_size)
    ]  # fmt: skip


def load_reference(path: Path, extractor: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu (D,), sigma (D, D), n) of the real split, written by the reference stage.

    extractor: the one the caller's features come from; statistics of another are refused.
    """
    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro reference` first")
    with np.load(path) as ref:
        found = str(ref["extractor"])
        if extractor and found != extractor:
            raise UserError(
                f"{path} holds {found} statistics, {extractor} ones are needed; "
                f"run `dvc repro reference` with evaluate.extractor: {extractor}"
            )
        return ref["mu"], ref["sigma"], int(ref["n"])


def generate(cfg: Config, paths: Paths = PATHS) -> np.ndarray:
    """Sample n images from a fixed seed -> samples.npz (key `images`, uint8 NHWC), grid, GIF."""
    import mlflow

    from gantrack import gan, tracking

    generator = _load_model(paths.generator, "train")
    g = cfg.generate
    fakes = gan.sample(generator, g.n_samples, g.seed, g.batch_size)
    tracking.configure(cfg.tracking.experiment)
    with tracking.continue_run(paths.train_run, _flat(cfg, "generate")) as run:
        with atomic_path(paths.samples) as tmp:
            np.savez(tmp, images=fakes)
        images.save_png(paths.samples_png, images.grid(fakes[: cfg.train.grid_rows**2]))
        frames = [images.load_png(p) for p in sorted(Path(paths.samples_dir).glob("epoch_*.png"))]
        if frames:
            images.save_gif(paths.progress_gif, frames)
            mlflow.log_artifact(str(paths.progress_gif))
        mlflow.log_artifact(str(paths.samples_png))
    tracking.write_run_file(paths.generate_run, run.info.run_id)
    return fakes


def load_samples(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read `images` (uint8 N, H, W, C) from a samples .npz, checking what users can get wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with np.load(path) as npz:
            fakes = npz["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a samples .npz with key 'images' ({exc})") from None
    if fakes.dtype != np.uint8 or fakes.ndim != 4 or len(fakes) < 2:
        raise UserError(
            f"{path}: images must be uint8 (N>=2, H, W, C), got {fakes.dtype} {fakes.shape}"
        )
    if shape is not None and tuple(fakes.shape[1:]) != tuple(shape):
        raise UserError(f"{path}: images are {fakes.shape[1:]}, the dataset's are {tuple(shape)}")
    return fakes


def evaluate(cfg: Config, paths: Paths = PATHS) -> dict:
    """FID, KID, IS, precision/recall of the samples against the reference -> metrics/eval.json."""
    import mlflow

    from gantrack import tracking

    meta = read_json(paths.meta, "prepare")
    fakes = load_samples(paths.samples, meta["shape"])
    name, extract = _extractor(cfg, paths)
    ref_mu, ref_sigma, _ = load_reference(paths.reference, extractor=name)
    with np.load(paths.reference) as ref:
        ref_feats = ref["features"].astype(np.float64)
    feats, probs = extract(fakes, cfg.evaluate.batch_size)
    results = {
        **score(name, ref_feats, feats, probs, cfg.evaluate, reference_stats=(ref_mu, ref_sigma)),
        **read_json(paths.classifier_metrics, "classifier"),
    }
    write_json(paths.eval_metrics, results)
    tracking.configure(cfg.tracking.experiment)
    with tracking.continue_run(paths.generate_run, _flat(cfg, "evaluate")):
        mlflow.log_metrics(results)
    logger.info("%s", results)
    return results


def score(name: str, real_feats, fake_feats, fake_probs, e: EvaluateConfig,
          reference_stats=None) -> dict:  # fmt: skip
    """FID, KID, IS (when class probabilities exist) and precision/recall of fake against real
    features (N, D), named after the extractor, with the sample counts beside them.
    reference_stats: precomputed (mu, sigma) of the real features."""
    from gantrack import metrics

    mu, sigma = metrics.statistics(fake_feats)
    ref_mu, ref_sigma = reference_stats or metrics.statistics(real_feats)
    kid_mean, kid_std = metrics.kid(real_feats, fake_feats, n_subsets=e.kid_subsets,
                                    subset_size=e.kid_subset_size, seed=e.seed)  # fmt: skip
    precision, recall = metrics.precision_recall(real_feats, fake_feats, k=e.pr_k)
    results = {
        f"fid_{name}": metrics.frechet_distance(mu, sigma, ref_mu, ref_sigma),
        f"kid_{name}": kid_mean,
        f"kid_{name}_std": kid_std,
        f"precision_{name}": precision,
        f"recall_{name}": recall,
        f"n_generated_{name}": len(fake_feats),
        f"n_reference_{name}": len(real_feats),
    }
    if fake_probs is not None:
        splits = min(e.is_splits, len(fake_probs))
        results[f"is_{name}"], results[f"is_{name}_std"] = metrics.inception_score(
            fake_probs, n_splits=splits
        )
    return results


def compare(path_a: Path, path_b: Path, cfg: Config, paths: Paths = PATHS) -> dict:
    """`gantrack fid A B`: all metrics of B's images against A's (sample .npz or prepared split,
    both with key `images`), on the configured extractor."""
    real, fake = load_samples(path_a), load_samples(path_b)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(
            f"images differ in shape: {path_a} {real.shape[1:]}, {path_b} {fake.shape[1:]}"
        )
    name, extract = _extractor(cfg, paths)
    try:
        real_feats, _ = extract(real, cfg.evaluate.batch_size)
    except ValueError as exc:  # e.g. the classifier was trained on other image sizes
        raise UserError(f"{name} cannot read {path_a}: {str(exc).splitlines()[0]}") from None
    fake_feats, fake_probs = extract(fake, cfg.evaluate.batch_size)
    return score(name, real_feats, fake_feats, fake_probs, cfg.evaluate)


def _flat(cfg: Config, *sections: str) -> dict:
    flat = {}
    for section in sections:
        flat.update(config_lib.to_flat_dict(getattr(cfg, section), prefix=f"{section}."))
    return flat
