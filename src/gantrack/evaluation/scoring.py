"""Scoring: reference statistics, sample files, and all metrics of fake against real features."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gantrack.config.sections import MAX_SAMPLES as MAX_IMAGES  # what generate may write
from gantrack.evaluation import metrics
from gantrack.io import limits
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError, one_line

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import EvaluateConfig

logger = logging.getLogger(__name__)


def write_reference(path: Path, feats: np.ndarray, extractor: str,
                    labels: np.ndarray | None = None) -> None:  # fmt: skip
    """Save the real split's features (N, D), their mean, covariance and count, and the name
    of the extractor they come from: KID and precision/recall need the features themselves.
    labels: each image's class (labelled data), for the FID within each class."""
    mu, sigma = metrics.statistics(feats)
    extra = {} if labels is None else {"labels": np.asarray(labels, np.int64)}
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, sigma=sigma, n=len(feats), features=feats.astype(np.float32),
                 extractor=extractor, **extra)  # fmt: skip


def load_reference(path: Path, extractor: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(mu (D,), sigma (D, D), n) of the real split, written by the reference stage.

    extractor: the one the caller's features come from; statistics of another are refused.
    """
    found, mu, sigma, n = _reference(path, "extractor", "mu", "sigma", "n")
    if extractor and str(found) != extractor:
        raise UserError(
            f"{path} holds {found} statistics, {extractor} ones are needed; "
            f"run `dvc repro reference` with evaluate.extractor: {extractor}"
        )
    return mu, sigma, int(n)


def load_reference_features(path: Path) -> np.ndarray:
    """The real split's features (N, D) float64 saved by write_reference."""
    (features,) = _reference(path, "features")
    return features.astype(np.float64)


def load_reference_labels(path: Path, n: int) -> np.ndarray | None:
    """The real split's labels (n,) saved by write_reference; None when it has none (data
    without labels, or a file written before labels were kept)."""
    (labels,) = _reference(path, "labels", optional=True)
    if labels is None:
        return None
    return _labels(labels, n, f"{path}: labels", "run `dvc repro reference` to rebuild it")


def _reference(path: Path, *keys: str, optional: bool = False) -> list[np.ndarray]:
    """The named arrays of the reference .npz, checked against limits before they are read;
    optional: None for those it lacks."""
    fix = "run `dvc repro reference` to rebuild it"
    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro reference` first")
    try:
        limits.check_npz(path, keys, fix=fix)
        with np.load(path, allow_pickle=False) as ref:
            return [ref[k] if k in ref.files or not optional else None for k in keys]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(
            f"{path} is not a readable reference .npz ({one_line(exc)}); {fix}"
        ) from None


def load_samples(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read `images` (uint8 N, H, W, C) from a samples .npz, checking what users can get wrong."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise UserError(f"{path}: {what}; give a samples .npz (key 'images', uint8 NHWC)")
    try:
        declared = limits.check_npz(path, ("images",), fix="is it a samples file?")
        if "images" in declared:  # checked from its header, before it is loaded
            _check_images(path, *declared["images"], shape)
        with np.load(path, allow_pickle=False) as npz:
            fakes = npz["images"]
    # A damaged file fails in many ways: not a zip, truncated, empty, a pickle refused.
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a samples .npz with key 'images' ({one_line(exc)})") from None
    _check_images(path, fakes.shape, fakes.dtype, shape)
    return fakes


def _check_images(path: Path, declared: tuple[int, ...], dtype: np.dtype, shape) -> None:
    """UserError unless an array of dtype and shape `declared` is N>=2 uint8 images, at most
    MAX_IMAGES, each of `shape` when given."""
    if dtype != np.uint8 or len(declared) != 4 or declared[0] < 2:
        raise UserError(f"{path}: images must be uint8 (N>=2, H, W, C), got {dtype} {declared}")
    if declared[0] > MAX_IMAGES:
        raise UserError(f"{path}: {declared[0]} images; at most {MAX_IMAGES} are scored "
                        "(precision and recall compare every pair)")  # fmt: skip
    if shape is not None and tuple(declared[1:]) != tuple(shape):
        raise UserError(f"{path}: images are {declared[1:]}, the dataset's are {tuple(shape)}")


def load_sample_labels(path: Path, n: int) -> np.ndarray | None:
    """The class each of the n images of a samples .npz was drawn for (key `labels`, written
    for a class-conditional generator); None when the file has none."""
    try:
        limits.check_npz(path, ("labels",), fix="is it a samples file?")
        with np.load(path, allow_pickle=False) as npz:
            labels = npz["labels"] if "labels" in npz.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: its labels cannot be read ({one_line(exc)})") from None
    return None if labels is None else _labels(labels, n, f"{path}: labels", "")


def _labels(labels: np.ndarray, n: int, what: str, fix: str) -> np.ndarray:
    """labels as int64 (n,) >= 0, else a UserError naming what."""
    if labels.dtype.kind not in "iu" or labels.shape != (n,) or (n and labels.min() < 0):
        tail = f"; {fix}" if fix else ""
        raise UserError(f"{what} must be integers >= 0, one per image ({n}), got "
                        f"{labels.dtype} {labels.shape}{tail}")  # fmt: skip
    return labels.astype(np.int64)


def check_counts(e: EvaluateConfig, *sets: tuple[object, int]) -> None:
    """Each set of images (what, count) is large enough for every metric: precision/recall
    take each image's evaluate.pr_k-th nearest other one."""
    for what, n in sets:
        if e.pr_k >= n:
            raise UserError(f"evaluate.pr_k: {e.pr_k} needs more than {e.pr_k} images, {what} "
                            f"has {n}; allowed: 1 to {n - 1}, or more images")  # fmt: skip


def score(name: str, real_feats, fake_feats, fake_probs, e: EvaluateConfig,
          reference_stats=None) -> dict:  # fmt: skip
    """FID, KID, IS (when class probabilities exist) and precision/recall of fake against real
    features (N, D), named after the extractor, with the sample counts beside them.
    reference_stats: precomputed (mu, sigma) of the real features."""
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


def score_classes(name: str, real_feats, real_labels, fake_feats, fake_labels,
                  min_samples: int) -> dict:  # fmt: skip
    """Intra-FID: the FID within each class (fake images of class c, drawn for it, against the
    real ones of class c) and their mean, with the sample counts beside each; classes with
    fewer than min_samples images in either set are skipped, said in one INFO line."""
    scored, skipped = metrics.class_fids(real_feats, real_labels, fake_feats, fake_labels,
                                         min_samples)  # fmt: skip
    if skipped:
        logger.info("intra-FID: class(es) %s skipped: fewer than %d generated or test images "
                    "(evaluate.class_min_samples)", ", ".join(map(str, skipped)),
                    min_samples)  # fmt: skip
    results: dict = {}
    if scored:
        results[f"intra_fid_{name}"] = float(np.mean([fid for fid, _, _ in scored.values()]))
        results[f"intra_fid_{name}_classes"] = len(scored)
    for c, (fid, n_fake, n_real) in scored.items():
        results[f"fid_{name}_class_{c}"] = fid
        results[f"n_generated_{name}_class_{c}"] = n_fake
        results[f"n_reference_{name}_class_{c}"] = n_real
    return results


def table(results: dict) -> str:
    """results as a table a person reads: metric, value (a mean with its ± std), samples
    (generated / reference images the metric compared; classes averaged for intra-FID)."""
    suffixes = sorted((k.removeprefix("n_generated_") for k in results
                       if k.startswith("n_generated_")), key=len, reverse=True)  # fmt: skip
    rows = [("metric", "value", "samples (generated / reference)")]
    for key, value in results.items():
        if key.startswith("n_") or key.endswith(("_std", "_classes")):
            continue  # shown in the row of the metric they belong to
        text = _number(value)
        if f"{key}_std" in results:
            text += f" ± {_number(results[f'{key}_std'])}"
        rows.append((key, text, _samples(key, results, suffixes)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{m:<{widths[0]}}  {v:<{widths[1]}}  {s}".rstrip() for m, v, s in rows)


def _samples(key: str, results: dict, suffixes: list[str]) -> str:
    if f"{key}_classes" in results:
        return f"{results[f'{key}_classes']} classes"
    suffix = next((s for s in suffixes if key.endswith(f"_{s}")), None)
    if suffix is None:
        return ""
    generated = results[f"n_generated_{suffix}"]
    if key.startswith("is_"):  # the generated images alone
        return f"{generated}"
    return f"{generated} / {results.get(f'n_reference_{suffix}', '?')}"


def _number(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
