"""Memory hygiene between trials: what a finished trial built is freed, so a worker's memory
stays flat over a long study (benchmarks/bench_tune_memory.py)."""

from __future__ import annotations

import ctypes
import gc

import optuna
from optuna.trial import FrozenTrial

from gantrack.runtime import compat


class TrialMemory:
    """Optuna callback that frees what the finished trial built.

    Keras' clear_session and gc are not enough with TensorFlow: each traced optimizer step goes
    through tf.distribute's all_reduce, a tf.custom_gradient, which in graph mode registers a
    "CustomGradient-<uid>" gradient function in TensorFlow's global gradient registry and never
    removes it. That function holds the traced graph, so every trial's train function (and its
    native counterpart) outlived the trial: about 12 MiB per trial. The entries added since the
    study started are dropped after each trial (their graphs are no longer used), then gc runs
    and glibc gives the freed heap back to the OS.
    """

    def __init__(self):
        self.registry = compat.gradient_registry()
        self.before = set(self.registry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        import keras

        keras.backend.clear_session(free_memory=True)
        for name in set(self.registry) - self.before:
            if name.startswith("CustomGradient-"):
                del self.registry[name]
        gc.collect()
        _malloc_trim()


def _malloc_trim() -> None:
    """Return the heap's free pages to the OS, where the C library is glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
