"""Where a training step's time goes: TensorFlow's profiler over a few steps, by op type.

Usage: python benchmarks/profile_step.py [--steps 10] [--json out.json]

Profiles the tutorial's own loop (benchmarks/reference_dcgan.py) and gantrack's GAN.fit at the
tutorial's architecture and batch (as bench_speed.py builds it) in float32 and, where the CPU
has bf16 instructions, under mixed_bfloat16. For each it reports the wall time per step and
the TensorFlow ops' time summed by op type (threads run ops side by side, so the sums can
exceed the wall time), with the share of each type; casts, BatchNorm, element-wise gradients
and the input pipeline show up beside the convolutions.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

sys.path.insert(0, str(Path(__file__).parent))
from bench_speed import TUTORIAL_MODEL, StepTimer  # noqa: E402
from reference_dcgan import BATCH_SIZE, ReferenceDCGAN  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import DataConfig  # noqa: E402
from gantrack.gan import devices, inputs, training  # noqa: E402

OP_EVENT = re.compile(r"[^:\s]+:(\w+)")


def op_times(logdir: Path, by_name: bool = False) -> dict[str, float]:
    """Seconds spent per TensorFlow op type (by_name: per op) in the profile under logdir."""
    totals: collections.Counter[str] = collections.Counter()
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if plane.name != "/host:CPU":
                continue
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_"):  # TensorFlow's own threads
                    continue
                for event in line.events:
                    # Kernels are named "op/name:OpType"; the executor's own events are not.
                    name = names.get(event.metadata_id, "")
                    if match := OP_EVENT.fullmatch(name):
                        totals[name if by_name else match[1]] += event.duration_ps / 1e12
    return dict(totals)


def profile(run_steps, steps: int, by_name: bool = False) -> tuple[float, dict[str, float]]:
    """(wall seconds per step, {op type: seconds per step}) of run_steps(steps) under the
    profiler, after a warm-up; run_steps returns the wall seconds of one step."""
    run_steps(3)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        wall = run_steps(steps)
        tf.profiler.experimental.stop()
        ops = op_times(Path(logdir), by_name)
    return wall, {k: v / steps for k, v in ops.items()}


def reference_runner(images):
    gan = ReferenceDCGAN(seed=0)
    batches = iter(gan.dataset(images).repeat())

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            loss, _ = gan.train_step(next(batches))
        loss.numpy()
        return (time.perf_counter() - start) / steps

    return run


def gantrack_runner(images, policy: str, train_cfg):
    keras.utils.set_random_seed(0)
    gan = training.build_gan(TUTORIAL_MODEL, train_cfg, images.shape[1:], 0, policy=policy)
    dataset = inputs.make_dataset(images, BATCH_SIZE, seed=0).repeat()

    def run(steps):
        """As bench_speed times it: from the end of the first step to the end of the last (each
        fit call's new iterator refills the shuffle buffer first)."""
        timer = StepTimer()
        gan.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0,
                callbacks=[timer])  # fmt: skip
        return (timer.ends[-1] - timer.ends[0]) / (steps - 1)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="op types listed per run")
    parser.add_argument("--by-name", action="store_true", help="per op, not per op type")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    cfg = config.Config()
    images = data.load_dataset(DataConfig(dataset="fashion_mnist"))[0].images
    tutorial_train = dataclasses.replace(
        cfg.train, batch_size=BATCH_SIZE, lr_g=1e-4, lr_d=1e-4, beta1_g=0.9, beta1_d=0.9,
        loss="non_saturating", label_smoothing=0.0, n_critic=1, ema_decay=None,
    )  # fmt: skip
    runs = {"reference": reference_runner(images),
            "gantrack-fp32": gantrack_runner(images, "float32", tutorial_train)}  # fmt: skip
    if devices.precision_policy("auto") == "mixed_bfloat16":
        runs["gantrack-bf16"] = gantrack_runner(images, "mixed_bfloat16", tutorial_train)
    results = {}
    for name, run in runs.items():
        wall, ops = profile(run, args.steps, args.by_name)
        total = sum(ops.values())
        top = sorted(ops.items(), key=lambda kv: -kv[1])[: args.top]
        results[name] = {
            "ms_per_step": round(wall * 1e3, 1),
            "images_per_s": round(BATCH_SIZE / wall, 1),
            "op_ms_per_step": round(total * 1e3, 1),
            "ops": {k: {"ms": round(v * 1e3, 2), "share": round(v / total, 3)} for k, v in top},
        }
        print(f"\n{name}: {wall * 1e3:.1f} ms/step wall, {total * 1e3:.1f} ms of ops")
        for op, seconds in top:
            print(f"  {op:<32} {seconds * 1e3:8.2f} ms  {seconds / total:6.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
