"""Sample quality at equal wall-clock budget: the TensorFlow DCGAN tutorial against gantrack.

Usage: python benchmarks/bench_quality.py [--seconds 300] [--chunk 30]
       [--variant NAME KEY=VALUE ...] [--samples 10000] [--json out.json]

Needs the pipeline's classifier and reference statistics (`dvc repro reference` in the project
given by --project, default "."). Trains the reference (benchmarks/reference_dcgan.py) and
gantrack with params.yaml's model and train sections (plus each --variant's overrides, e.g.
`--variant ema train.ema_decay=0.999`) on the full Fashion-MNIST training split, in turns of
--chunk seconds until each has trained --seconds, so that load on the machine falls on all of
them alike. Then --samples images of each are scored on the classifier's features against the
reference statistics (the same numbers `dvc repro` logs as fid_classifier, same sample count):
FID and its ratio to the reference's, precision/recall (k=3), and the normalised entropy of
the samples' class histogram (1: all classes equally often).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
from reference_dcgan import ReferenceDCGAN  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import (
    DataConfig,  # noqa: E402
    schema,
)
from gantrack.evaluation import classifier as classifier_lib  # noqa: E402
from gantrack.evaluation import metrics  # noqa: E402
from gantrack.evaluation.scoring import load_reference, load_reference_features  # noqa: E402
from gantrack.gan import devices, training  # noqa: E402
from gantrack.gan.sampling import sample  # noqa: E402
from gantrack.io import keras_files
from gantrack.io.images import grid, save_png  # noqa: E402
from gantrack.io.paths import PATHS  # noqa: E402


class TimeLimit(keras.callbacks.Callback):
    """Stop `fit` at the first batch that ends `seconds` after training began."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start >= self.seconds:
            self.model.stop_training = True


class Reference:
    def __init__(self, images):
        self.name, self.images_seen, self.seconds = "reference", 0, 0.0
        self.policy = "float32"
        self.gan = ReferenceDCGAN(seed=0)
        self.batches = iter(self.gan.dataset(images).repeat())
        self.generator = self.gan.generator

    def train(self, seconds: float) -> None:
        start = time.perf_counter()
        while True:  # at least one step, as fit stopped by TimeLimit takes one batch
            batch = next(self.batches)
            self.gan.train_step(batch)[0].numpy()
            self.images_seen += int(batch.shape[0])
            if time.perf_counter() - start >= seconds:
                break
        self.seconds += time.perf_counter() - start


class Gantrack:
    """gantrack trained the way the pipeline trains it (training.train), in turns: each turn
    goes on with the same GAN until TimeLimit stops it (no checkpoints, grids or FID)."""

    def __init__(self, name: str, split: data.Split, cfg: config.Config, workdir: Path):
        self.name, self.images_seen, self.seconds = name, 0, 0.0
        self.batch = cfg.train.batch_size * cfg.train.n_critic
        self.policy = devices.precision_policy(cfg.train.mixed_precision)
        self.split, self.cfg, self.workdir = split, cfg, workdir
        self.n_classes = int(split.labels.max()) + 1
        never = 10**9
        self.train_cfg = dataclasses.replace(cfg.train, epochs=never, checkpoint_every=never,
                                             sample_every=never, fid_every=0)  # fmt: skip
        self.gan = training.build(cfg.model, cfg.train, split.images.shape[1:], self.n_classes,
                                  cfg.base.seed)  # fmt: skip
        self.generator = self.gan.sampler

    def train(self, seconds: float) -> None:
        start = time.perf_counter()
        training.train(
            self.cfg.model, self.train_cfg, self.split.images, self.split.labels,
            self.n_classes, seed=self.cfg.base.seed, gan=self.gan,
            checkpoint_dir=self.workdir / self.name / "checkpoints",
            grids_dir=self.workdir / self.name / "grids",
            hooks=training.Hooks(callbacks=(TimeLimit(seconds),)),
        )  # fmt: skip
        self.seconds += time.perf_counter() - start
        steps = self.gan.d_optimizer.iterations.numpy() // self.gan.n_critic
        self.images_seen = int(steps) * self.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="training budget of each")
    parser.add_argument("--chunk", type=float, default=30, help="seconds per turn")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project", default=".", help="where `dvc repro reference` ran")
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
        help="another gantrack configuration: params.yaml plus dotted overrides",
    )  # fmt: skip
    parser.add_argument("--no-reference", action="store_true", help="leave the tutorial out")
    parser.add_argument("--baseline", default="reference", help="FID ratios are to this run")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--grids", help="also save an 8x8 grid of each one's samples here")
    args = parser.parse_args()

    project = Path(args.project)
    raw = YAML(typ="safe", pure=True).load(Path(args.params).read_text())
    cfg = config.from_dict(raw)
    reference_stats = load_reference(project / PATHS.reference, extractor="classifier")
    classifier = keras_files.load(project / PATHS.classifier, str(PATHS.classifier))
    split = data.load_dataset(DataConfig(dataset="fashion_mnist", source_dir=cfg.data.source_dir))[
        0
    ]
    images = split.images

    workdir = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    runners = [] if args.no_reference else [Reference(images)]
    runners.append(Gantrack("gantrack", split, cfg, workdir))
    for name, *overrides in args.variant:
        variant = config.from_dict(_override(raw, overrides))
        runners.append(Gantrack(name, split, variant, workdir))
    # One untimed batch each first (its images count, its seconds do not): the process's
    # one-time start (TensorFlow's first graphs, oneDNN's kernels) would otherwise fall on
    # whichever runner trains first.
    for runner in runners:
        runner.train(0.0)
        runner.seconds = 0.0
    turn = 0
    while any(r.seconds < args.seconds for r in runners):
        for runner in runners[turn % len(runners) :] + runners[: turn % len(runners)]:
            if runner.seconds < args.seconds:
                runner.train(min(args.chunk, args.seconds - runner.seconds))
        turn += 1
        print(" | ".join(f"{r.name} {r.seconds:.0f}s {r.images_seen} img" for r in runners),
              flush=True)  # fmt: skip

    results = {"seconds": args.seconds, "samples": args.samples, "runs": {}}
    real_feats = load_reference_features(project / PATHS.reference)
    for runner in runners:
        fakes = sample(runner.generator, args.samples, seed=1234, batch_size=500)
        feats, probs = classifier_lib.extract(classifier, fakes, 500)
        fid = metrics.frechet_distance(*metrics.statistics(feats), *reference_stats[:2])
        precision, recall = metrics.precision_recall(real_feats, feats, k=3)
        if args.grids:
            save_png(Path(args.grids) / f"{runner.name}.png", grid(fakes[:64], rows=8))
        results["runs"][runner.name] = {
            "fid_classifier": round(fid, 2),
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "class_entropy": round(class_entropy(probs), 3),
            "policy": runner.policy,
            "train_seconds": round(runner.seconds, 1),
            "images_seen": runner.images_seen,
            "epochs": round(runner.images_seen / len(images), 2),
        }
    base = results["runs"][args.baseline]["fid_classifier"]
    for run in results["runs"].values():
        run[f"fid_ratio_to_{args.baseline}"] = round(run["fid_classifier"] / base, 3)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def class_entropy(probs: np.ndarray) -> float:
    """Entropy of the samples' class histogram (argmax of the classifier) over its maximum,
    log K: 1 when every class is drawn equally often, lower when some dominate or vanish."""
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(probs.shape[1]))


def _override(raw: dict, overrides: list[str]) -> dict:
    """A copy of the params dict with dotted KEY=VALUE overrides (values parsed as YAML)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, _, value = item.partition("=")
        schema.set_dotted(raw, key, YAML(typ="safe", pure=True).load(value))
    return raw


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
