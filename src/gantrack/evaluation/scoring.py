"""Scoring: reference statistics, sample files, and all metrics of fake against real features."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gantrack.evaluation import metrics
from gantrack.io import limits
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError, one_line

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import EvaluateConfig


def write_reference(path: Path, feats: np.ndarray, extractor: str) -> None:
    """Save the real split's features (N, D), their mean, covariance and count, and the name
    of the extractor they come from: KID and precision/recall need the features themselves."""
    mu, sigma = metrics.statistics(feats)
    with atomic_path(path) as tmp:
        np.savez(tmp, mu=mu, sigma=sigma, n=len(feats), features=feats.astype(np.float32),
                 extractor=extractor)  # fmt: skip


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


def _reference(path: Path, *keys: str) -> list[np.ndarray]:
    """The named arrays of the reference .npz, checked against limits before they are read."""
    fix = "run `dvc repro reference` to rebuild it"
    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro reference` first")
    try:
        limits.check_npz(path, keys, fix=fix)
        with np.load(path, allow_pickle=False) as ref:
            return [ref[key] for key in keys]
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
        limits.check_npz(path, ("images",), fix="is it a samples file?")
        with np.load(path, allow_pickle=False) as npz:
            fakes = npz["images"]
    # A damaged file fails in many ways: not a zip, truncated, empty, a pickle refused.
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a samples .npz with key 'images' ({one_line(exc)})") from None
    if fakes.dtype != np.uint8 or fakes.ndim != 4 or len(fakes) < 2:
        raise UserError(
            f"{path}: images must be uint8 (N>=2, H, W, C), got {fakes.dtype} {fakes.shape}"
        )
    if shape is not None and tuple(fakes.shape[1:]) != tuple(shape):
        raise UserError(f"{path}: images are {fakes.shape[1:]}, the dataset's are {tuple(shape)}")
    return fakes


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
