"""Step speed of the default GAN against variants of it, side by side, on this CPU.

Usage: python benchmarks/bench_step.py [--xla] [--variant NAME KEY=VALUE ...] [--json out.json]

Builds the default networks (params.yaml, class-conditional on Fashion-MNIST's labels) and one
GAN per candidate: `--variant spe4 train.steps_per_execution=4` overrides params (values as
YAML); `--xla` adds the default compiled with XLA (`jit_compile`, which Keras leaves off on
CPUs). Each is traced first, then the candidates take turns of --steps steps of `fit` for
--rounds rounds (the order rotated every round); the best turn's ms per step is reported, with
each candidate's speed as a ratio to the default's. With --xla DiffAugment is off in every
candidate: XLA cannot compile the gradient of its tf.cond (adaptive p).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import add_variant_argument, override  # noqa: E402
from bench_speed import StepTimer  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import DataConfig  # noqa: E402
from gantrack.gan import devices, inputs, training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--xla", action="store_true", help="add the default under XLA")
    add_variant_argument(parser)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    raw = YAML(typ="safe", pure=True).load(Path(args.params).read_text())
    if args.xla:
        raw["train"]["augment"] = []
    named = [("default", raw, False)] + [(name, override(raw, items), False)
                                         for name, *items in args.variant]  # fmt: skip
    named += [("xla", raw, True)] if args.xla else []
    split = data.load_dataset(DataConfig(dataset="fashion_mnist",
                                         source_dir=raw["data"]["source_dir"]))[0]  # fmt: skip
    runs = {}
    for name, params, jit in named:
        cfg = config.from_dict(params)
        keras.utils.set_random_seed(0)
        gan = training.build_gan(cfg.model, cfg.train, split.images.shape[1:], 0,
                                 policy=devices.precision_policy(cfg.train.mixed_precision),
                                 num_classes=10, n_images=len(split.images))  # fmt: skip
        gan.jit_compile = jit
        dataset = inputs.make_dataset(split.images, cfg.train.batch_size, seed=0,
                                      labels=split.labels).repeat()  # fmt: skip
        gan.fit(dataset, steps_per_epoch=8, epochs=1, verbose=0)  # tracing, XLA compilation
        runs[name] = (gan, dataset, cfg.train.steps_per_execution)
    best = {}
    for round_ in range(args.rounds):
        order = list(runs)[round_ % len(runs) :] + list(runs)[: round_ % len(runs)]
        for name in order:
            gan, dataset, per_call = runs[name]
            steps = -(-args.steps // per_call) * per_call  # whole calls
            timer = StepTimer()  # called once per call: steps / per_call + 1 ends
            gan.fit(dataset, steps_per_epoch=steps + per_call, epochs=1, verbose=0,
                    callbacks=[timer])  # fmt: skip
            ms = (timer.ends[-1] - timer.ends[0]) / steps * 1000
            print(f"round {round_ + 1} {name}: {ms:.1f} ms/step", flush=True)
            best[name] = min(best.get(name, float("inf")), ms)
    results = {
        "policy": devices.precision_policy(config.from_dict(raw).train.mixed_precision),
        "ms_per_step": {name: round(ms, 1) for name, ms in best.items()},
        "speed_ratio_to_default": {
            name: round(best["default"] / ms, 2) for name, ms in best.items()
        },
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
