"""Where training runs: the mixed-precision policy the hardware supports, and the
tf.distribute strategy named in params."""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import tensorflow as tf

from gantrack.runtime.errors import UserError

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
def precision_policy(mixed: bool | str) -> str:
    """The Keras dtype policy for `train.mixed_precision` (True, False or "auto").

    mixed_float16 (with loss scaling, see gan.GAN) on a GPU of compute capability >= 7.0,
    mixed_bfloat16 on a CPU with bf16 instructions, else float32: silently for "auto", with a
    warning for True (once per process: the result is cached). Emulated bf16 (CPUs without
    the instructions) is many times slower than float32, so it is never picked.
    """
    if mixed is False:
        return "float32"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
        if capability and tuple(capability) >= MIN_FP16_COMPUTE_CAPABILITY:
            return "mixed_float16"
        reason = f"GPU compute capability {capability} < 7.0"
    elif flags := cpu_flags() & set(BF16_CPU_FLAGS):
        logger.debug("mixed precision: bfloat16 (CPU flags %s)", ", ".join(sorted(flags)))
        return "mixed_bfloat16"
    else:
        reason = f"no GPU and the CPU has none of {', '.join(BF16_CPU_FLAGS)}"
    if mixed is True:
        logger.warning(
            "train.mixed_precision: not supported here (%s); training in float32", reason
        )
    return "float32"


def _mirrored() -> tf.distribute.Strategy:
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _multi_worker() -> tf.distribute.Strategy:
    """The workers of TF_CONFIG (unset: this process alone), checked before TensorFlow reads it."""
    raw = os.environ.get("TF_CONFIG")
    if raw:
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"TF_CONFIG: not valid JSON ({exc})") from None
        _check_tf_config(spec)
    return tf.distribute.MultiWorkerMirroredStrategy()


TF_CONFIG_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": '
                     '{"type": "worker", "index": 0}}')  # fmt: skip


def _check_tf_config(spec) -> None:
    """TF_CONFIG's shape, which TensorFlow reads with tracebacks: a cluster of task types, each
    a list of "host:port", and this process's task, a type of the cluster and an index in it."""
    if not isinstance(spec, dict) or not {"cluster", "task"} <= set(spec):
        raise UserError(f'TF_CONFIG: must hold "cluster" and "task", {TF_CONFIG_EXAMPLE}')
    cluster, task = spec["cluster"], spec["task"]
    hosts = cluster.values() if isinstance(cluster, dict) else ()
    if not hosts or not all(isinstance(h, list) and h and all(
            isinstance(a, str) and ":" in a for a in h) for h in hosts):  # fmt: skip
        raise UserError(f'TF_CONFIG: "cluster" must map task types to lists of "host:port", '
                        f"{TF_CONFIG_EXAMPLE}")  # fmt: skip
    kind = task.get("type") if isinstance(task, dict) else None
    index = task.get("index", 0) if isinstance(task, dict) else None
    if kind not in ("chief", "worker") or kind not in cluster:  # a list as type: not hashed
        raise UserError(f'TF_CONFIG: "task" "type" must be chief or worker, one of the '
                        f"cluster's, got {kind!r}")  # fmt: skip
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise UserError(f'TF_CONFIG: "task" "index" {index!r} is out of range; the cluster has '
                        f"{len(cluster[kind])} {kind} task(s)")  # fmt: skip


# train.strategy -> the tf.distribute strategy. default: the current (single-device) one;
# mirrored: one replica per local GPU, or per logical CPU device when there is no GPU;
# multi_worker_mirrored: the workers in TF_CONFIG.
STRATEGIES = {
    "default": tf.distribute.get_strategy,
    "mirrored": _mirrored,
    "multi_worker_mirrored": _multi_worker,
}


def strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `train.strategy` (see STRATEGIES)."""
    return STRATEGIES[name]()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes outputs: always, but under multi-worker training, where
    only the chief does (TF_CONFIG's `chief` task, else worker 0: TensorFlow's convention)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
