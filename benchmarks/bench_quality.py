"""Sample quality at equal wall-clock budget: the TensorFlow DCGAN tutorial against gantrack.

Usage: python benchmarks/bench_quality.py [--seconds 300] [--chunk 30]
       [--variant NAME KEY=VALUE ...] [--samples 10000] [--json out.json]

Needs the pipeline's classifier and reference statistics (`dvc repro reference` in the project
given by --project, default "."). Trains the reference (benchmarks/reference_dcgan.py) and
gantrack with params.yaml's model and train sections (plus each --variant's overrides, e.g.
`--variant ema train.ema_decay=0.999`) on the project's prepared training split
(data/prepared/train.npz, what `prepare` wrote: full Fashion-MNIST by default; the reference,
the tutorial's own code, takes only 28x28x1 images, so leave it out elsewhere with
--no-reference), in turns of
--chunk seconds until each has trained --seconds, so that load on the machine falls on all of
them alike. Each candidate runs in its own process and trains as the pipeline does, in one
loop (gantrack: one `fit`), which waits between its turns; a turn's seconds are wall-clock,
from the turn being given to the first step ending after it. The first step of each is
untimed (tracing, the input's first fill). Then --samples images of each are scored on the
classifier's features against the reference statistics (the same numbers `dvc repro` logs as
fid_classifier, same sample count):
FID and its ratio to the reference's, precision/recall (k=3), and the normalised entropy of
the samples' class histogram (1: all classes equally often). With --curve-samples N (default
1000; 0: off) each candidate also scores N samples at the end of every turn, outside its
training time: its FID curve over seconds, images and epochs (fid_classifier_n<N>, not
comparable with the final 10,000-sample FID).

With --equal-time every gantrack candidate's learning rates decay over the steps --seconds
buy it on this machine rather than over its train.epochs (as `gantrack tune` with
tune.seconds does): before any of them trains, a throwaway copy of each is timed side by side
with the others (tuning.budget.step_seconds), so that a narrower or faster variant does not
spend the end of the budget at its final rate, nor a slower one stop before its rates fall.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import signal
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
from gantrack.config import schema  # noqa: E402
from gantrack.evaluation import classifier as classifier_lib  # noqa: E402
from gantrack.evaluation import metrics  # noqa: E402
from gantrack.evaluation.generator_fid import generator_fid  # noqa: E402
from gantrack.evaluation.scoring import load_reference, load_reference_features  # noqa: E402
from gantrack.gan import devices, training  # noqa: E402
from gantrack.gan.sampling import sample  # noqa: E402
from gantrack.io import keras_files
from gantrack.io.images import grid, save_png  # noqa: E402
from gantrack.io.paths import PATHS  # noqa: E402
from gantrack.tuning import budget  # noqa: E402


class Reference:
    """The TensorFlow DCGAN tutorial's own loop (benchmarks/reference_dcgan.py)."""

    policy = "float32"

    def __init__(self, split: data.Split, cfg: config.Config, steps: int | None = None):
        self.gan = ReferenceDCGAN(seed=0)
        self.batches = iter(self.gan.dataset(split.images).repeat())
        self.generator = self.gan.generator
        self.images_seen = 0

    def run(self, turns: Turns) -> None:
        while not turns.stopped():
            batch = next(self.batches)
            self.gan.train_step(batch)[0].numpy()
            self.images_seen += int(batch.shape[0])
            turns.step_done(self.images_seen)


class Gantrack:
    """gantrack trained the way the pipeline trains it: training.train, one `fit` (no
    checkpoints, grids or FID)."""

    def __init__(self, split: data.Split, cfg: config.Config, steps: int | None = None):
        self.split, self.cfg = split, cfg
        self.policy = devices.precision_policy(cfg.train.mixed_precision)
        self.n_classes = int(split.labels.max()) + 1
        self.gan = training.build_for_data(cfg.model, cfg.train, split.images.shape, self.n_classes,
                                           cfg.base.seed, steps=steps)  # fmt: skip
        self.generator = self.gan.sampler
        self.step_images = cfg.train.batch_size * cfg.train.n_critic

    def run(self, turns: Turns) -> None:
        gan, step_images = self.gan, self.step_images

        class Steps(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                steps = int(gan.d_optimizer.iterations.numpy()) // gan.n_critic
                turns.step_done(steps * step_images)
                gan.stop_training = turns.stopped()

        never = 10**9
        train_cfg = dataclasses.replace(self.cfg.train, epochs=never, checkpoint_every=never,
                                        sample_every=never, fid_every=0)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
            training.train(
                self.cfg.model, train_cfg, self.split.images, self.split.labels,
                self.n_classes, seed=self.cfg.base.seed, gan=gan,
                checkpoint_dir=Path(tmp) / "checkpoints", grids_dir=Path(tmp) / "grids",
                hooks=training.Hooks(callbacks=(Steps(),)),
            )  # fmt: skip


class Turns:
    """A candidate's side of taking turns, in its own process: after its first step (untimed:
    tracing, the input's first fill) it reports and waits; given a turn of s seconds, it trains
    until a step ends s seconds after the turn was given, reports and waits again. Its report:
    the images seen, and after a turn the value of `measure()` (None: none) with the seconds
    measuring took, which the orchestrator takes off the turn's time."""

    def __init__(self, conn, measure=None):
        self.conn, self.measure, self.deadline, self.finish = conn, measure, None, False

    def step_done(self, images_seen: int) -> None:
        if self.deadline is not None and time.perf_counter() < self.deadline:
            return
        value, took = None, 0.0
        if self.measure is not None and self.deadline is not None:
            start = time.perf_counter()
            value = self.measure()
            took = time.perf_counter() - start
        self.conn.send((images_seen, value, took))
        message = self.conn.recv()
        if message == "finish":
            self.finish = True
        else:
            self.deadline = time.perf_counter() + message

    def stopped(self) -> bool:
        return self.finish


def candidate(conn, kind: str, raw: dict, project: str, samples: int, grid_path: str | None,
              curve_samples: int = 0, steps: int | None = None):  # fmt: skip
    """A child process: build one candidate (gantrack's rates decaying over `steps`, None: its
    train.epochs), train it in turns (see Turns), measuring its FID on curve_samples samples
    after each turn (0: not), score it, send the scores."""
    tf.get_logger().setLevel("ERROR")
    cfg = config.from_dict(raw)
    train = data.load_split(Path(project) / PATHS.train)  # what `prepare` wrote there
    runner = (Reference if kind == "reference" else Gantrack)(train, cfg, steps)
    reference = load_reference(Path(project) / PATHS.reference, extractor="classifier")[:2]
    classifier = keras_files.load(Path(project) / PATHS.classifier, str(PATHS.classifier))

    def measure():
        fid = generator_fid(runner.generator, classifier, reference, curve_samples,
                            seed=1234, batch_size=500)  # fmt: skip
        return round(fid, 3)

    turns = Turns(conn, measure if curve_samples else None)
    runner.run(turns)
    scores = score(runner.generator, classifier, reference, Path(project), samples, grid_path)
    adaptive = getattr(getattr(runner, "gan", None), "adaptive", False)
    if adaptive:  # where adaptive augmentation ended
        scores["augment_p"] = round(float(runner.gan.augment_p.numpy()), 3)
    conn.send(scores | {"policy": runner.policy, "n_images": len(train.images)})


def score(generator, classifier, reference: tuple, project: Path, samples: int,
          grid_path: str | None) -> dict:  # fmt: skip
    """FID (against reference (mu, sigma)), precision/recall and class entropy of `samples`
    samples on the classifier's features, as the pipeline scores."""
    fakes = sample(generator, samples, seed=1234, batch_size=500)
    feats, probs = classifier_lib.extract(classifier, fakes, 500)
    fid = metrics.frechet_distance(*metrics.statistics(feats), *reference)
    real_feats = load_reference_features(project / PATHS.reference)
    precision, recall = metrics.precision_recall(real_feats, feats, k=3)
    if grid_path:
        save_png(Path(grid_path), grid(fakes[:64], rows=8))
    return {
        "fid_classifier": round(fid, 2),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "class_entropy": round(class_entropy(probs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="training budget of each")
    parser.add_argument("--chunk", type=float, default=30, help="seconds per turn")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--curve-samples", type=int, default=1000,
                        help="samples of the FID after each turn (the curve); 0: none")  # fmt: skip
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--project", default=".", help="where `dvc repro reference` ran")
    add_variant_argument(parser)
    parser.add_argument("--no-reference", action="store_true", help="leave the tutorial out")
    parser.add_argument(
        "--baseline",
        help="FID ratios are to this run (default: reference, or gantrack with --no-reference)",
    )
    parser.add_argument(
        "--equal-time",
        action="store_true",
        help="gantrack's rates decay over the steps --seconds buy each candidate",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--grids", help="also save an 8x8 grid of each one's samples here")
    args = parser.parse_args()

    raw = YAML(typ="safe", pure=True).load(Path(args.params).read_text())
    config.from_dict(raw)  # bad params fail here, before any process starts
    named = [] if args.no_reference else [("reference", "reference", raw)]
    named.append(("gantrack", "gantrack", raw))
    for name, *overrides in args.variant:
        changed = schema.override(raw, overrides)
        config.from_dict(changed)
        named.append((name, "gantrack", changed))
    baseline = args.baseline or ("gantrack" if args.no_reference else "reference")
    if baseline not in [name for name, *_ in named]:
        parser.error(f"--baseline {baseline}: no such candidate")
    steps = equal_time_steps(named, args.seconds, args.project) if args.equal_time else {}

    # SIGTERM (kill, pkill) exits as Ctrl-C does, through exit handlers: multiprocessing's
    # terminates the candidates (daemon processes), which would otherwise outlive this one.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    spawn = multiprocessing.get_context("spawn")
    runs = []
    for name, kind, params in named:
        conn, child = spawn.Pipe()
        grid_path = str(Path(args.grids) / f"{name}.png") if args.grids else None
        process = spawn.Process(target=candidate, name=name, daemon=True, args=(
            child, kind, params, args.project, args.samples, grid_path,
            args.curve_samples, steps.get(name, (None, None))[0]))  # fmt: skip
        process.start()
        child.close()  # a candidate that dies is then an EOFError here, not a hang
        runs.append({"name": name, "conn": conn, "process": process, "seconds": 0.0,
                     "images_seen": conn.recv()[0], "curve": []})  # fmt: skip
    turn = 0
    while any(r["seconds"] < args.seconds for r in runs):
        for run in runs[turn % len(runs) :] + runs[: turn % len(runs)]:
            if run["seconds"] < args.seconds:
                start = time.perf_counter()
                run["conn"].send(min(args.chunk, args.seconds - run["seconds"]))
                run["images_seen"], fid, took = run["conn"].recv()
                run["seconds"] += time.perf_counter() - start - took
                if fid is not None:
                    point = {"seconds": round(run["seconds"], 1), "fid": fid}
                    run["curve"].append(point | {"images_seen": run["images_seen"]})
        turn += 1
        print(" | ".join(f"{r['name']} {r['seconds']:.0f}s {r['images_seen']} img" for r in runs),
              flush=True)  # fmt: skip

    results = {"seconds": args.seconds, "samples": args.samples, "runs": {}}
    if args.curve_samples:
        results["curve_metric"] = f"fid_classifier_n{args.curve_samples}"
    for run in runs:
        run["conn"].send("finish")
        scores = run["conn"].recv()
        run["process"].join()
        n_images = scores.pop("n_images")
        results["runs"][run["name"]] = scores | {
            "train_seconds": round(run["seconds"], 1),
            "images_seen": run["images_seen"],
            "epochs": round(run["images_seen"] / n_images, 2),
        }
        if run["name"] in steps:
            results["runs"][run["name"]]["schedule"] = dict(zip(
                ("steps", "timed_step_seconds"), steps[run["name"]], strict=True))  # fmt: skip
        if args.curve_samples:
            results["runs"][run["name"]]["curve"] = [
                point | {"epochs": round(point["images_seen"] / n_images, 2)}
                for point in run["curve"]
            ]
    base = results["runs"][baseline]["fid_classifier"]
    for run in results["runs"].values():
        run[f"fid_ratio_to_{baseline}"] = round(run["fid_classifier"] / base, 3)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def equal_time_steps(named: list, seconds: float, project: str) -> dict[str, tuple[int, float]]:
    """{name: (steps, step seconds)} of each gantrack candidate: its step timed side by side
    with the others' on the project's training split, and the steps `seconds` buy at that."""
    gantracks = [(name, config.from_dict(raw)) for name, kind, raw in named if kind == "gantrack"]
    split = data.load_split(Path(project) / PATHS.train)
    times = budget.step_seconds([cfg for _, cfg in gantracks], split.images, split.labels,
                                int(split.labels.max()) + 1)  # fmt: skip
    steps = {name: (budget.steps_in(seconds, t), round(t, 5))
             for (name, _), t in zip(gantracks, times, strict=True)}  # fmt: skip
    print(" | ".join(f"{name} {t * 1000:.1f} ms/step: {n} steps" for name, (n, t) in
                     steps.items()), flush=True)  # fmt: skip
    return steps


def class_entropy(probs: np.ndarray) -> float:
    """Entropy of the samples' class histogram (argmax of the classifier) over its maximum,
    log K: 1 when every class is drawn equally often, lower when some dominate or vanish."""
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(probs.shape[1]))


def add_variant_argument(parser: argparse.ArgumentParser) -> None:
    """--variant NAME KEY=VALUE ..., repeatable: params.yaml plus dotted overrides
    (schema.override)."""
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
        help="another gantrack configuration: params.yaml plus dotted overrides",
    )  # fmt: skip


if __name__ == "__main__":
    main()
