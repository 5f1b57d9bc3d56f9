"""Equal-time trials (tune.seconds): each trial trains as many steps as its own GAN takes
tune.seconds to train on this machine, and reports its FIDs at the seconds of that budget they
stand for, so that trials of different widths, depths or batch sizes meet the pruner, and the
objective, at equal time rather than at equal epochs.

A machine's speed drifts by several percent within minutes, more than the gaps a search looks
for, so a trial is not timed alone: before it trains, a throwaway copy of its GAN and one of
the reference's (params.yaml's own config) are timed side by side, in turns (ROUNDS of
TIMED_STEPS steps each, one lazy R1 period at train.r1_every's default, after WARM_STEPS
untimed ones; the same config against itself measured 0.99-1.01 on 2 shared cores), and the
trial's step costs the study's clock (the reference's first timing, kept on the study) times
that ratio. It then trains the steps that fill the budget at that cost, its last epoch cut
short where they end and its learning-rate schedule spanning exactly those steps, as the train
stage's spans its epochs; its FIDs are measured at the steps the budget's marks fall on, also
inside an epoch, so that every trial meets the pruner after the same seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import keras
import numpy as np

from gantrack.config import Config
from gantrack.gan import training
from gantrack.gan.callbacks import finite

WARM_STEPS = 3
TIMED_STEPS = 16
ROUNDS = 8


@dataclass(frozen=True)
class Budget:
    """A trial's share of tune.seconds: its training steps, the epochs they start (the last
    one cut short), and the step each FID the pruner gets is measured at, {budget second:
    step}."""

    steps: int
    epochs: int
    step_seconds: float
    marks: dict[int, int]


def plan(seconds: int, every: int, step_seconds: float, steps_per_epoch: int) -> Budget:
    """The steps that fill `seconds` at `step_seconds` each (at least one), and the step that
    every `every` seconds of them, and their end, fall on."""
    steps = steps_in(seconds, step_seconds)
    marks = {mark: min(steps, steps_in(mark, step_seconds)) for mark in
             range(every, seconds, every)}  # fmt: skip
    return Budget(steps, math.ceil(steps / steps_per_epoch), step_seconds,
                  {**marks, seconds: steps})  # fmt: skip


def steps_in(seconds: float, step_seconds: float) -> int:
    """The steps that fill `seconds` at `step_seconds` each: at least one."""
    return max(1, round(seconds / step_seconds))


def step_seconds(cfgs: Sequence[Config], images: np.ndarray, labels: np.ndarray,
                 n_classes: int) -> list[float]:  # fmt: skip
    """Seconds a training step of each config's GAN takes on these images here, timed in turns
    (see the module)."""
    gans = [
        training.build_for_data(c.model, c.train, images.shape, n_classes, c.base.seed)
        for c in cfgs
    ]
    datasets = [training.batches(gan, images, labels, c.train, c.base.seed)[0].repeat()
                for gan, c in zip(gans, cfgs, strict=True)]  # fmt: skip
    timed = [[0.0, 0] for _ in cfgs]  # seconds, steps
    for _ in range(ROUNDS):
        for gan, dataset, cfg, total in zip(gans, datasets, cfgs, timed, strict=True):
            per_call = cfg.train.steps_per_execution
            warm, steps = (max(1, -(-n // per_call)) for n in (WARM_STEPS, TIMED_STEPS))
            timer = _StepTimer(skip=warm)
            gan.fit(dataset, epochs=1, steps_per_epoch=(warm + steps) * per_call,
                    callbacks=[timer], shuffle=False, verbose=0)  # fmt: skip
            seconds, done = timer.timed()
            total[0] += seconds
            total[1] += done
    keras.backend.clear_session(free_memory=True)
    return [seconds / steps for seconds, steps in timed]


def fitted(cfg: Config, budget: Budget) -> Config:
    """cfg training budget.epochs (the last cut short by Steps), checkpointed and sampled every
    epoch (the tracker logs each, as with the epochs' budget)."""
    train = replace(cfg.train, epochs=budget.epochs, checkpoint_every=1, sample_every=1)
    return replace(cfg, train=train)


class Steps(keras.callbacks.Callback):
    """A budget's steps (epochs of `steps_per_epoch`): at each mark's step `at_mark(second,
    gan)` (the FID the pruner gets), unless training is stopping or the losses are not finite
    (the divergence guard ends the epoch); after the last step the epoch in progress ends,
    with its grid and checkpoint (with train.steps_per_execution > 1, at the end of the
    execution that holds it)."""

    def __init__(self, budget: Budget, steps_per_epoch: int,
                 at_mark: Callable[[int, keras.Model], None]):  # fmt: skip
        super().__init__()
        self.budget, self.steps_per_epoch, self.at_mark = budget, steps_per_epoch, at_mark
        self.pending = sorted(budget.marks.items(), key=lambda item: item[1])
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):  # batch: the execution's last step
        done = self.epoch * self.steps_per_epoch + batch + 1
        if self._due(done) and finite(logs):
            while self._due(done) and not self.model.stop_training:
                second, _ = self.pending.pop(0)
                self.at_mark(second, self.model)
        if done >= self.budget.steps:
            self.model.stop_training = True

    def _due(self, done: int) -> bool:
        return bool(self.pending) and self.pending[0][1] <= done


class _StepTimer(keras.callbacks.Callback):
    """When each execution of steps ended, to time those after the first `skip`."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip, self.ends = skip, []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((batch, time.perf_counter()))  # batch: the execution's last step

    def timed(self) -> tuple[float, int]:
        """(seconds, steps) after the first `skip` executions."""
        (first, start), (last, end) = self.ends[self.skip - 1], self.ends[-1]
        return end - start, last - first
