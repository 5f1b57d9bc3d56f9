"""Sampling filtered by the discriminator, on one training run: does it lower the FID?

Usage: python benchmarks/bench_rejection.py [KEY=VALUE ...] [--seeds 42 3] [--project DIR]
       [--json out.json]

For each seed (base.seed), trains gantrack once as the pipeline does (training.train,
params.yaml plus dotted overrides), then draws --pool samples (noise seed 1234) and scores
--samples of them (fid_classifier on the project's classifier and reference statistics,
precision, recall, class entropy), chosen four ways from the same pool:
- plain: the first --samples (what `gantrack generate` writes), and the next --samples (the
  spread between two draws);
- topQ: within each class, the fraction Q of the first --samples / Q draws that the trained
  discriminator scores highest (its logit);
- drsP: discriminator rejection sampling (Azadi et al. 2019): draw x kept with probability
  sigmoid(F(x) - gamma), F = D(x) - D_max - log(1 - exp(D(x) - D_max - 1e-6)), gamma the P-th
  percentile of F over the pool.
Training is unchanged, so every way costs the same train time; only sampling costs more.

Needs `dvc repro reference` in --project (default ".").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import class_entropy  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import schema  # noqa: E402
from gantrack.evaluation import classifier as classifier_lib  # noqa: E402
from gantrack.evaluation import metrics  # noqa: E402
from gantrack.evaluation.scoring import load_reference, load_reference_features  # noqa: E402
from gantrack.gan import sampling, training  # noqa: E402
from gantrack.io import keras_files  # noqa: E402
from gantrack.io.paths import PATHS  # noqa: E402

FRACTIONS = (0.9, 0.75, 0.5, 0.25)
PERCENTILES = (95, 80, 50, 20)


def top_per_class(logits: np.ndarray, classes: np.ndarray, q: float, n: int) -> np.ndarray:
    """Indices of the fraction q of the first round(n / q) draws each class's logits rank
    highest, topped up to n with the draws after them."""
    first = int(round(n / q))
    kept = []
    for c in np.unique(classes[:first]):
        ids = np.flatnonzero(classes[:first] == c)
        kept.append(ids[np.argsort(-logits[ids])[: int(round(len(ids) * q))]])
    kept = np.sort(np.concatenate(kept))[:n]
    return np.concatenate([kept, np.arange(first, first + n - len(kept))])


def rejection(logits: np.ndarray, percentile: float, seed: int) -> np.ndarray:
    """Indices discriminator rejection sampling accepts (see the module's docstring)."""
    top = logits.max()
    f = logits - top - np.log1p(-np.exp(logits - top - 1e-6))
    gamma = np.percentile(f, percentile)
    u = np.random.default_rng(seed).uniform(size=len(logits))
    return np.flatnonzero(u < 1.0 / (1.0 + np.exp(-(f - gamma))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 3])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--pool", type=int, default=60000)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project", default=".", help="where `dvc repro reference` ran")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    raw = YAML(typ="safe", pure=True).load(Path(args.params).read_text())
    project = Path(args.project)
    inputs = Inputs(
        data.load_split(project / PATHS.train),
        load_reference(project / PATHS.reference, extractor="classifier")[:2],
        load_reference_features(project / PATHS.reference),
        keras_files.load(project / PATHS.classifier, str(PATHS.classifier)),
    )
    results = {"overrides": args.overrides, "samples": args.samples, "pool": args.pool}
    for seed in args.seeds:
        cfg = config.from_dict(schema.override(raw, [*args.overrides, f"base.seed={seed}"]))
        results[str(seed)] = one_seed(cfg, inputs, args.samples, args.pool)
        print(json.dumps({seed: results[str(seed)]}, indent=1), flush=True)
        keras.backend.clear_session(free_memory=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What every seed's run reads from the project, read once."""

    split: data.Split
    reference: tuple  # (mu, sigma) of the test split's classifier features
    real_feats: np.ndarray
    classifier: keras.Model


def one_seed(cfg: config.Config, inputs: Inputs, n: int, pool: int) -> dict:
    """The train time and every way's scores for one training run (see the module)."""
    split, (mu, sigma), real_feats = inputs.split, inputs.reference, inputs.real_feats
    n_classes = int(split.labels.max()) + 1
    never = 10**9
    train_cfg = dataclasses.replace(cfg.train, checkpoint_every=never, sample_every=never,
                                    fid_every=0)  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-rejection-") as tmp:
        gan = training.train(cfg.model, train_cfg, split.images, split.labels, n_classes,
                             seed=cfg.base.seed, checkpoint_dir=Path(tmp) / "checkpoints",
                             grids_dir=Path(tmp) / "grids").gan  # fmt: skip
    seconds = time.perf_counter() - start

    images, classes = sampling.sample_labelled(gan.sampler, pool, seed=1234, batch_size=500)
    scaled = images.astype(np.float32) / 127.5 - 1.0  # what the discriminator trained on
    named = [scaled, classes.astype(np.int32)] if gan.num_classes else scaled
    logits = gan.discriminator.predict(named, batch_size=500, verbose=0).reshape(-1)
    logits = logits.astype(np.float64)
    feats, probs = classifier_lib.extract(inputs.classifier, images, 500)

    def score(ids: np.ndarray) -> dict:
        ids = ids[:n]
        assert len(ids) == n, "the pool is too small"
        fid = metrics.frechet_distance(*metrics.statistics(feats[ids]), mu, sigma)
        precision, recall = metrics.precision_recall(real_feats, feats[ids], k=3)
        entropy = class_entropy(probs[ids])
        return {"fid_classifier": round(fid, 3), "precision": round(precision, 3),
                "recall": round(recall, 3), "class_entropy": round(entropy, 3)}  # fmt: skip

    results = {"epochs": cfg.train.epochs, "train_seconds": round(seconds, 1),
               "plain": score(np.arange(n)), "plain_next": score(np.arange(n, 2 * n))}  # fmt: skip
    for q in FRACTIONS:
        results[f"top{q}"] = score(top_per_class(logits, classes, q, n))
    for p in PERCENTILES:
        accepted = rejection(logits, p, seed=7)
        results[f"drs{p}"] = {"accepted": round(len(accepted) / pool, 3)}
        if len(accepted) >= n:
            results[f"drs{p}"] |= score(accepted)
    return results


if __name__ == "__main__":
    main()
