"""Equal-time trials (tune.seconds): each trial trains as many epochs as its own GAN takes
tune.seconds to train on this machine, and reports its FIDs at the seconds of that budget they
stand for, so that trials of different widths, depths or batch sizes meet the pruner, and the
objective, at equal time rather than at equal epochs.

A trial's speed is timed before it trains, on a throwaway GAN built exactly as the trial's:
its first steps (tracing, the input's first fill) untimed, then TIMED_STEPS steps (two lazy R1
periods at train.r1_every's default). Its learning-rate schedule then spans the epochs it gets,
as in the train stage. Epochs are whole, so a trial's training lasts the budget to within half
an epoch (and at least one epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import keras
import numpy as np

from gantrack.config import Config
from gantrack.gan import training
from gantrack.gan.inputs import steps_per_epoch

WARM_STEPS = 3
TIMED_STEPS = 32


@dataclass(frozen=True)
class Budget:
    """A trial's share of tune.seconds: its epochs, and at which epoch each FID the pruner gets
    is measured, {epoch: (budget seconds it is reported at, ...)}."""

    epochs: int
    epoch_seconds: float
    reports: dict[int, tuple[int, ...]]


def plan(seconds: int, every: int, epoch_seconds: float) -> Budget:
    """The epochs that fill `seconds` at `epoch_seconds` each (nearest whole number, >= 1), and
    an FID at the epoch nearest every `every` seconds of them and at the end. Marks that fall on
    one epoch (epochs longer than `every`) share its FID."""

    def epoch_at(mark: int) -> int:
        return max(1, round(mark / epoch_seconds))

    epochs = epoch_at(seconds)
    marks = [*range(every, seconds, every), seconds]
    reports: dict[int, tuple[int, ...]] = {}
    for mark in marks:
        epoch = min(epochs, epoch_at(mark))
        reports[epoch] = (*reports.get(epoch, ()), mark)
    return Budget(epochs, epoch_seconds, reports)


def epoch_seconds(cfg: Config, images: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Seconds an epoch of cfg's GAN takes to train on these images here (see the module)."""
    gan = training.build(cfg.model, cfg.train, images.shape, n_classes, cfg.base.seed)
    dataset, _ = training.batches(gan, images, labels, cfg.train, cfg.base.seed)
    per_call = cfg.train.steps_per_execution
    warm, timed = (max(1, -(-steps // per_call)) for steps in (WARM_STEPS, TIMED_STEPS))
    timer = _StepTimer(skip=warm)
    gan.fit(dataset.repeat(), epochs=1, steps_per_epoch=(warm + timed) * per_call,
            callbacks=[timer], shuffle=False, verbose=0)  # fmt: skip
    keras.backend.clear_session(free_memory=True)
    return timer.seconds_per_step() * steps_per_epoch(cfg.train, len(images))


def fitted(cfg: Config, budget: Budget) -> Config:
    """cfg training budget.epochs, checkpointed and sampled every epoch (where FIDs are
    measured, the tracker logs, as in the epochs' budget)."""
    train = replace(cfg.train, epochs=budget.epochs, checkpoint_every=1, sample_every=1)
    return replace(cfg, train=train)


class _StepTimer(keras.callbacks.Callback):
    """Seconds per step from the end of the first `skip` executions of steps to the last's."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip, self.ends = skip, []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((batch, time.perf_counter()))  # batch: the execution's last step

    def seconds_per_step(self) -> float:
        (first, start), (last, end) = self.ends[self.skip - 1], self.ends[-1]
        return (end - start) / (last - first)
