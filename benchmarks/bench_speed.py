"""Training speed: the TensorFlow DCGAN tutorial against gantrack, side by side.

Usage: python benchmarks/bench_speed.py [--steps 20] [--rounds 3] [--json out.json]

Both train on Fashion-MNIST (data.source_dir or /usr/share/datasets/fashion-mnist):
- reference: the tutorial (benchmarks/reference_dcgan.py): its models, batch 256, Adam 1e-4,
  BCE on logits, GradientTape step in tf.function, Python loop over an unprefetched dataset;
- gantrack-tutorial: gantrack's GAN.fit with the tutorial's architecture and batch (kernel 5,
  64/256 filters, 3 generator and 2 discriminator layers, batch 256, Adam 1e-4, beta_1 0.9),
  in float32 or under the mixed-precision policy the hardware supports (--mixed);
- gantrack-default: gantrack's GAN.fit with params.yaml's model and train sections.
Each round times --steps steps of each, in turn (order rotated every round), after a warm-up
that traces the step; both loops keep their input pipeline's state between steps. Reports the
best round's images/s, ratios to the reference, and the achieved FLOP/s (FLOPs of one step
counted by hand from the layers' shapes, see step_flops_by_hand; TensorFlow's profiler count of
the step's graph is reported beside it) against the measured float32 matmul ceiling of this
machine (and its bf16 one with --mixed) and the nominal fp32 peak (cores x clock x FLOP per
cycle of the CPU's vector units).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).parent))
from reference_dcgan import BATCH_SIZE, ReferenceDCGAN  # noqa: E402

from gantrack import config, data  # noqa: E402
from gantrack.config import DataConfig  # noqa: E402
from gantrack.gan import devices, inputs, training  # noqa: E402

TUTORIAL_MODEL = config.ModelConfig(
    latent_dim=100,
    kernel_size=5,
    generator=config.GeneratorNetConfig(
        layers=3, filters=64, max_filters=256, activation="leaky_relu"
    ),
    discriminator=config.DiscriminatorNetConfig(
        layers=2, filters=64, max_filters=256, dropout=0.3, batch_norm=False
    ),
)


def graph_flops(concrete_function) -> int:
    """Float operations in a traced function's graph (TensorFlow's profiler count)."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(concrete_function.graph, options=options).total_float_ops


def forward_flops(model: keras.Model) -> dict[str, int]:
    """Multiply-add FLOPs (2 per MAC) of one image's forward pass, per weight layer (name ->
    FLOPs) in order: Conv2D 2*Ho*Wo*k*k*Ci*Co, Conv2DTranspose 2*Hi*Wi*k*k*Ci*Co, Dense
    2*in*out. Element-wise layers (BatchNorm, activations, dropout) are left out."""
    counts = {}
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)  # SpectralNormalization wraps its layer
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            k = int(np.prod(layer.kernel_size))
            c_in, c_out = (
                layer.kernel.shape[-2:]
                if isinstance(layer, keras.layers.Conv2D)
                else (layer.kernel.shape[-1], layer.kernel.shape[-2])
            )
            spatial = (
                layer.output.shape if isinstance(layer, keras.layers.Conv2D) else layer.input.shape
            )
            counts[layer.name] = 2 * spatial[1] * spatial[2] * k * c_in * c_out
        elif isinstance(layer, keras.layers.Dense):
            counts[layer.name] = 2 * int(np.prod(layer.kernel.shape))
    return counts


def step_flops_by_hand(generator: keras.Model, discriminator: keras.Model) -> int:
    """FLOPs per image of the tutorial's joint step (both networks updated from one forward
    pass), from forward_flops F of each weight layer. A layer's weight gradient and its input
    gradient each cost F.
    - generator layer: forward F, weight gradient F, input gradient F (not for the first
      layer, whose input is noise): 3F, the first 2F;
    - discriminator layer: forward on real and fake 2F; the generator's loss backpropagates
      to the images through the fake pass, F; the discriminator's loss takes weight gradients
      of both passes 2F and input gradients of both 2F (not for the first layer): 7F, the
      first 5F."""
    g = list(forward_flops(generator).values())
    d = list(forward_flops(discriminator).values())
    return 2 * g[0] + 3 * sum(g[1:]) + 5 * d[0] + 7 * sum(d[1:])


def matmul_ceiling(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """Best achieved GFLOP/s of an n x n matmul in `dtype`."""
    a = tf.random.normal((n, n), dtype="float32")
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: x @ x)
    matmul(a).numpy()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def nominal_peak_gflops() -> float | None:
    """fp32 peak from /proc/cpuinfo: cores x MHz x FLOP/cycle (2 FMA units x 8 lanes x 2 with
    AVX2+FMA, twice that with AVX-512). The clock is the reported one, not the boost clock."""
    from gantrack.gan.devices import cpu_flags

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    mhz = [float(ln.split(":")[1]) for ln in text.splitlines() if ln.startswith("cpu MHz")]
    flags = cpu_flags()
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else None
    if not mhz or per_cycle is None:
        return None
    return os.cpu_count() * mhz[0] * per_cycle / 1e3


class Reference:
    name = "reference"

    def __init__(self, images: np.ndarray):
        self.gan = ReferenceDCGAN(seed=0)
        self.batches = iter(self.gan.dataset(images).repeat())
        self.flops_per_image = (
            graph_flops(self.gan.train_step.get_concrete_function(next(self.batches))) / BATCH_SIZE
        )
        self.hand_flops = step_flops_by_hand(self.gan.generator, self.gan.discriminator)

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps of the tutorial's loop."""
        start = time.perf_counter()
        for _ in range(steps):
            g_loss, _ = self.gan.train_step(next(self.batches))
        g_loss.numpy()
        return time.perf_counter() - start


class Gantrack:
    def __init__(self, name: str, images, model_cfg, train_cfg, policy: str):
        self.name, self.batch = name, train_cfg.batch_size
        keras.utils.set_random_seed(0)
        self.gan = training.build_gan(model_cfg, train_cfg, images.shape[1:], 0, policy=policy)
        self.dataset = inputs.make_dataset(images, train_cfg.batch_size, seed=0).repeat()
        batch = next(iter(self.dataset))
        step = tf.function(self.gan.train_step)
        self.flops_per_image = graph_flops(step.get_concrete_function(batch)) / self.batch
        self.hand_flops = step_flops_by_hand(self.gan.generator, self.gan.discriminator)

    def run(self, steps: int) -> float:
        """Seconds per `steps` steps of GAN.fit in steady state: timed from the end of its first
        step to the end of its last (input pipeline and callbacks included; the new iterator
        and shuffle buffer of each fit call, once per epoch in training, excluded)."""
        timer = StepTimer()
        self.gan.fit(self.dataset, steps_per_epoch=steps + 1, epochs=1, shuffle=False, verbose=0,
                     callbacks=[timer])  # fmt: skip
        return timer.ends[-1] - timer.ends[0]


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mixed", action="store_true", help="gantrack under mixed precision")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    cfg = config.load(args.params)
    images = data.load_dataset(DataConfig(dataset="fashion_mnist", source_dir=cfg.data.source_dir))[
        0
    ].images
    policy = devices.precision_policy(args.mixed)
    tutorial_train = dataclasses.replace(
        cfg.train, batch_size=BATCH_SIZE, lr_g=1e-4, lr_d=1e-4, beta1_g=0.9, beta1_d=0.9,
        loss="non_saturating", label_smoothing=0.0, n_critic=1, ema_decay=None,
    )  # fmt: skip
    runners = [
        Reference(images),
        Gantrack("gantrack-tutorial", images, TUTORIAL_MODEL, tutorial_train, policy),
        Gantrack("gantrack-default", images, cfg.model, cfg.train, policy),
    ]
    for runner in runners:  # warm-up: tracing, caches, oneDNN primitives
        runner.run(3)
    best = {r.name: np.inf for r in runners}
    for round_ in range(args.rounds):
        order = runners[round_ % len(runners) :] + runners[: round_ % len(runners)]
        for runner in order:
            seconds = runner.run(args.steps)
            batch = BATCH_SIZE if runner.name == "reference" else runner.batch
            print(f"round {round_ + 1} {runner.name}: {args.steps * batch / seconds:.1f} img/s")
            best[runner.name] = min(best[runner.name], seconds / (args.steps * batch))

    ceiling = {"float32": matmul_ceiling("float32")}
    if policy == "mixed_bfloat16":
        ceiling["bfloat16"] = matmul_ceiling("bfloat16")
    peak = nominal_peak_gflops()
    results = {
        "cpus": os.cpu_count(),
        "policy": policy,
        "nominal_peak_gflops": peak and round(peak, 1),
        "matmul_gflops": {k: round(v, 1) for k, v in ceiling.items()},
        "runs": {},
    }
    reference_rate = 1 / best["reference"]
    for runner in runners:
        rate = 1 / best[runner.name]
        gflops = rate * runner.hand_flops / 1e9
        results["runs"][runner.name] = {
            "images_per_s": round(rate, 1),
            "ratio_to_reference": round(rate / reference_rate, 2),
            "mflop_per_image": round(runner.hand_flops / 1e6, 1),
            "profiler_mflop_per_image": round(runner.flops_per_image / 1e6, 1),
            "gflops": round(gflops, 1),
            **{f"share_of_{k}_matmul_ceiling": round(gflops / v, 2) for k, v in ceiling.items()},
            "share_of_nominal_peak": peak and round(gflops / peak, 2),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
