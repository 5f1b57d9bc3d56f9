"""Equal-time trials (tune.seconds): each trial trains as many steps as its own GAN takes
tune.seconds to train on this machine, and reports its FIDs at the seconds of that budget they
stand for, so that trials of different widths, depths or batch sizes meet the pruner, and the
objective, at equal time rather than at equal epochs.

A trial's speed is timed before it trains, on a throwaway GAN built exactly as the trial's:
its first steps (tracing, the input's first fill) untimed, then TIMED_STEPS steps (two lazy R1
periods at train.r1_every's default). It then trains that many steps, its last epoch cut short
where the budget ends, and its learning-rate schedule spans exactly those steps, as the train
stage's spans its epochs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import keras
import numpy as np

from gantrack.config import Config
from gantrack.gan import training

WARM_STEPS = 3
TIMED_STEPS = 32


@dataclass(frozen=True)
class Budget:
    """A trial's share of tune.seconds: its training steps, the epochs they start (the last
    one cut short), and at which epoch's end each FID the pruner gets is measured,
    {epoch: (budget seconds it is reported at, ...)}."""

    steps: int
    epochs: int
    step_seconds: float
    reports: dict[int, tuple[int, ...]]


def plan(seconds: int, every: int, step_seconds: float, steps_per_epoch: int) -> Budget:
    """The steps that fill `seconds` at `step_seconds` each (at least one), and an FID at the
    epoch end nearest in time to every `every` seconds of them and at the end (the last step).
    Marks that fall nearest one epoch's end (epochs longer than `every`) share its FID."""
    steps = max(1, round(seconds / step_seconds))
    epochs = math.ceil(steps / steps_per_epoch)
    ends = [min(epoch * steps_per_epoch, steps) * step_seconds for epoch in range(1, epochs + 1)]
    reports: dict[int, tuple[int, ...]] = {}
    for mark in [*range(every, seconds, every), seconds]:
        epoch = 1 + min(range(epochs), key=lambda i: abs(ends[i] - mark))
        reports[epoch] = (*reports.get(epoch, ()), mark)
    return Budget(steps, epochs, step_seconds, reports)


def step_seconds(cfg: Config, images: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """Seconds a training step of cfg's GAN takes on these images here (see the module)."""
    gan = training.build(cfg.model, cfg.train, images.shape, n_classes, cfg.base.seed)
    dataset, _ = training.batches(gan, images, labels, cfg.train, cfg.base.seed)
    per_call = cfg.train.steps_per_execution
    warm, timed = (max(1, -(-steps // per_call)) for steps in (WARM_STEPS, TIMED_STEPS))
    timer = _StepTimer(skip=warm)
    gan.fit(dataset.repeat(), epochs=1, steps_per_epoch=(warm + timed) * per_call,
            callbacks=[timer], shuffle=False, verbose=0)  # fmt: skip
    keras.backend.clear_session(free_memory=True)
    return timer.seconds_per_step()


def fitted(cfg: Config, budget: Budget) -> Config:
    """cfg training budget.epochs (the last cut short by StopAfter), checkpointed and sampled
    every epoch (where FIDs are measured, the tracker logs, as with the epochs' budget)."""
    train = replace(cfg.train, epochs=budget.epochs, checkpoint_every=1, sample_every=1)
    return replace(cfg, train=train)


class StopAfter(keras.callbacks.Callback):
    """End training once `steps` steps are done (epochs of `steps_per_epoch`): the epoch in
    progress ends there, with its grid, FID and checkpoint."""

    def __init__(self, steps: int, steps_per_epoch: int):
        super().__init__()
        self.steps, self.steps_per_epoch, self.epoch = steps, steps_per_epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):  # batch: the execution's last step
        if self.epoch * self.steps_per_epoch + batch + 1 >= self.steps:
            self.model.stop_training = True


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
