"""EMA decays compared on one training run: the same weights averaged several ways.

Usage: python benchmarks/bench_ema.py [--decays 0.999 0.9995:5 ...] [KEY=VALUE ...]
       [--curve-every 6] [--samples 10000] [--standing BATCHES] [--json out.json]
       [--grids DIR] [--save DIR]

An EMA of the generator's weights does not change training, so one run can keep several:
this trains gantrack once, as the pipeline does (training.train, params.yaml's model and
train sections plus dotted overrides, e.g. `train.epochs=66 train.batch_size=128`), and keeps,
beside the run's own generator, one EMA copy per --decays value DECAY[:WARMUP], updated after
every generator step exactly as `train.ema_decay` and `train.ema_warmup` update the
pipeline's (warm-up min(DECAY, (1 + t) / (WARMUP + t)) at generator step t, WARMUP 10 unless
given, BatchNorm statistics included). Every --curve-every epochs each copy scores 1,000
samples (fid_classifier_n1000, fixed noise); after the last epoch each scores --samples
(fid_classifier, as `dvc repro` logs it: noise seed 1234, the project's classifier and
reference statistics), with precision and recall; with --standing also as NAME+standing, its
BatchNorm statistics re-estimated on BATCHES batches (standing_statistics). "raw" is the
trained generator itself; with `train.ema_decay` set, "run" is the pipeline's own EMA
generator, a check on the copies.

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
import tensorflow as tf
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import score  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import schema  # noqa: E402
from gantrack.evaluation.generator_fid import generator_fid  # noqa: E402
from gantrack.evaluation.scoring import load_reference  # noqa: E402
from gantrack.gan import training  # noqa: E402
from gantrack.gan.model import update_ema  # noqa: E402
from gantrack.io import keras_files  # noqa: E402
from gantrack.io.paths import PATHS  # noqa: E402

DEFAULT_WARMUP = config.TrainConfig().ema_warmup


def _copy(generator: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(generator)
    copy.set_weights(generator.get_weights())
    return copy


class Averages(keras.callbacks.Callback):
    """One EMA copy of the generator per decay, updated after every generator step; n1000
    FIDs of every copy each `every` epochs (and after the last) into self.curve."""

    def __init__(self, gan, decays: list[str], measure, every: int, epochs: int):
        super().__init__()
        self.gan, self.measure, self.every, self.epochs = gan, measure, every, epochs
        self.copies = {}
        for spec in decays:
            decay, _, warmup = spec.partition(":")
            self.copies[f"ema_{spec}"] = (float(decay), float(warmup or DEFAULT_WARMUP),
                                          _copy(gan.generator))  # fmt: skip
        self.curve: list[dict] = []
        self._update = tf.function(self._assign)

    def _assign(self):
        for decay, warmup, copy in self.copies.values():
            update_ema(copy, self.gan.generator, decay, self.gan.g_optimizer.iterations, warmup)

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def generators(self) -> dict[str, keras.Model]:
        found = {"raw": self.gan.generator}
        if self.gan.ema_generator is not None:
            found["run"] = self.gan.ema_generator
        return found | {name: copy for name, (*_, copy) in self.copies.items()}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.epochs:
            return
        point = {"epoch": epoch + 1}
        for name, generator in self.generators().items():
            point[name] = round(self.measure(generator), 3)
        self.curve.append(point)
        print(json.dumps(point), flush=True)


def standing_statistics(generator: keras.Model, batches: int, batch_size: int,
                        seed: int) -> keras.Model:  # fmt: skip
    """A copy of generator whose BatchNorm moving means and variances are the average, over
    `batches` batches of batch_size seeded noise run in training mode, of each batch's own
    (BigGAN's standing statistics). An EMA generator's moving statistics are an average of
    earlier weights' statistics; these are its own weights'. batches 0: generator itself."""
    if not batches:
        return generator
    copy = _copy(generator)
    norms = [layer for layer in copy.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    rng = np.random.default_rng(seed)
    for k in range(batches):
        for layer in norms:
            layer.momentum = k / (k + 1)  # the running mean of the batches' statistics
        copy(rng.standard_normal((batch_size, copy.input_shape[-1]), np.float32), training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--decays", nargs="+", default=["0.999", "0.9995", "0.9999"],
                        metavar="DECAY[:WARMUP]")  # fmt: skip
    parser.add_argument("--curve-every", type=int, default=6)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project", default=".", help="where `dvc repro reference` ran")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--grids", help="also save an 8x8 grid of each one's samples here")
    parser.add_argument("--save", help="also save each final generator here (NAME.keras)")
    parser.add_argument("--standing", type=int, default=0, metavar="BATCHES",
                        help="also score each with standing BatchNorm statistics")  # fmt: skip
    args = parser.parse_args()

    raw = YAML(typ="safe", pure=True).load(Path(args.params).read_text())
    raw = schema.override(raw, args.overrides)
    cfg = config.from_dict(raw)
    project = Path(args.project)
    split = data.load_split(project / PATHS.train)
    reference = load_reference(project / PATHS.reference, extractor="classifier")[:2]
    classifier = keras_files.load(project / PATHS.classifier, str(PATHS.classifier))
    n_classes = int(split.labels.max()) + 1
    gan = training.build_for_data(
        cfg.model, cfg.train, split.images.shape, n_classes, cfg.base.seed
    )

    def measure(generator):
        return generator_fid(generator, classifier, reference, 1000, seed=1234, batch_size=500)

    averages = Averages(gan, args.decays, measure, args.curve_every, cfg.train.epochs)
    never = 10**9
    train_cfg = dataclasses.replace(cfg.train, checkpoint_every=never, sample_every=never,
                                    fid_every=0)  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ema-") as tmp:
        training.train(cfg.model, train_cfg, split.images, split.labels, n_classes,
                       seed=cfg.base.seed, gan=gan, checkpoint_dir=Path(tmp) / "checkpoints",
                       grids_dir=Path(tmp) / "grids",
                       hooks=training.Hooks(callbacks=(averages,)))  # fmt: skip
    seconds = time.perf_counter() - start
    results = {"overrides": args.overrides, "seed": cfg.base.seed, "epochs": cfg.train.epochs,
               "seconds": round(seconds, 1), "samples": args.samples, "final": {},
               "curve_metric": "fid_classifier_n1000", "curve": averages.curve}  # fmt: skip
    generators = averages.generators()
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        for name, generator in generators.items():
            generator.save(Path(args.save) / f"{name}.keras")
    if args.standing:
        generators |= {f"{name}+standing": standing_statistics(
            generator, args.standing, cfg.train.batch_size, cfg.base.seed)
            for name, generator in generators.items()}  # fmt: skip
    for name, generator in generators.items():
        grid_path = str(Path(args.grids) / f"{name}.png") if args.grids else None
        results["final"][name] = score(generator, classifier, reference, project, args.samples,
                                       grid_path)  # fmt: skip
        print(name, json.dumps(results["final"][name]), flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
