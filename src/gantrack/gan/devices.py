"""Where training runs: the mixed-precision policy the hardware supports, and the
tf.distribute strategy named in params."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import tensorflow as tf

logger = logging.getLogger(__name__)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_FP16_COMPUTE_CAPABILITY = (7, 0)  # tensor cores: Volta and later


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where it is not readable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@functools.cache
def precision_policy(mixed: bool) -> str:
    """The Keras dtype policy for `train.mixed_precision`.

    mixed_float16 (with loss scaling, see gan.GAN) on a GPU of compute capability >= 7.0,
    mixed_bfloat16 on a CPU with bf16 instructions, else float32 with a warning (once per
    process: the result is cached). Emulated bf16 is many times slower than float32.
    """
    if not mixed:
        return "float32"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and tuple(capability) >= MIN_FP16_COMPUTE_CAPABILITY:
            return "mixed_float16"
        reason = f"GPU compute capability {capability} < 7.0"
    elif flags := cpu_flags() & set(BF16_CPU_FLAGS):
        logger.info("mixed precision: bfloat16 (CPU flags %s)", ", ".join(sorted(flags)))
        return "mixed_bfloat16"
    else:
        reason = f"no GPU and the CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    logger.warning("train.mixed_precision: not supported here (%s); training in float32", reason)
    return "float32"


def _mirrored() -> tf.distribute.Strategy:
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


# train.strategy -> the tf.distribute strategy. default: the current (single-device) one;
# mirrored: one replica per local GPU, or per logical CPU device when there is no GPU;
# multi_worker_mirrored: the workers in TF_CONFIG.
STRATEGIES = {
    "default": tf.distribute.get_strategy,
    "mirrored": _mirrored,
    "multi_worker_mirrored": tf.distribute.MultiWorkerMirroredStrategy,
}


def strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `train.strategy` (see STRATEGIES)."""
    return STRATEGIES[name]()
