"""Equal-time trials (tune.seconds): how a trial's budget becomes epochs and pruner steps, and
the timing it rests on (in-process; the studies themselves: test_tuning.py)."""

import dataclasses

import numpy as np
import pytest
import tiny

from gantrack import config
from gantrack.gan import training
from gantrack.tuning import budget


def test_the_steps_fill_the_seconds_and_each_mark_is_reported_at_the_nearest_epoch_end():
    share = budget.plan(600, 120, step_seconds=0.05, steps_per_epoch=1000)  # epochs of 50 s
    assert (share.steps, share.epochs, share.step_seconds) == (12000, 12, 0.05)
    assert share.reports == {2: (120,), 5: (240,), 7: (360,), 10: (480,), 12: (600,)}
    # the budget ends inside an epoch: that epoch is cut short and ends on the last report,
    # also when the budget is not a multiple of the FID interval
    share = budget.plan(100, 30, step_seconds=0.1, steps_per_epoch=300)  # ends 30, 60, 90, 100 s
    assert (share.steps, share.epochs) == (1000, 4)
    assert share.reports == {1: (30,), 2: (60,), 3: (90,), 4: (100,)}


def test_epochs_longer_than_the_fid_interval_report_one_fid_at_every_mark_nearest_them():
    share = budget.plan(100, 20, step_seconds=1.0, steps_per_epoch=45)  # ends 45, 90, 100 s
    assert (share.steps, share.epochs) == (100, 3)
    assert share.reports == {1: (20, 40, 60), 2: (80,), 3: (100,)}
    # a budget shorter than one epoch trains part of one, reported at every mark
    assert budget.plan(30, 10, step_seconds=0.5, steps_per_epoch=1000) == budget.Budget(
        60, 1, 0.5, {1: (10, 20, 30)})  # fmt: skip


def test_a_trial_config_trains_its_epochs_checkpointing_and_sampling_each():
    cfg = config.from_dict({"tune": {"seconds": 300}})
    fitted = budget.fitted(cfg, budget.plan(300, 60, step_seconds=0.02, steps_per_epoch=1000))
    assert (fitted.train.epochs, fitted.train.checkpoint_every, fitted.train.sample_every) == (
        15, 1, 1)  # fmt: skip
    assert fitted.train.lr_g == cfg.train.lr_g and fitted.model == cfg.model


def test_a_trial_trains_exactly_its_steps_and_its_rates_reach_their_end_at_the_last(tmp_path):
    """7 steps of 3 per epoch: 3 epochs, the last cut after one step, where the linear decay
    of both rates (over those 7 steps, not over 3 whole epochs) reaches 0."""
    images = tiny.random_images(96)  # batch 32: 3 steps per epoch
    train = dataclasses.replace(tiny.train_cfg(lr_decay="linear"), epochs=3)
    gan = training.build(tiny.MODEL, train, images.shape, 1, seed=0, steps=7)
    trained = training.train(tiny.MODEL, train, images, np.zeros(96, int), 1, seed=0,
                             checkpoint_dir=tmp_path / "ckpt", grids_dir=tmp_path / "grids",
                             hooks=training.Hooks(callbacks=(budget.StopAfter(7, 3),)),
                             gan=gan)  # fmt: skip
    assert list(trained.result.history["epoch"]) == [1, 2, 3]
    assert int(gan.g_optimizer.iterations) == int(gan.d_optimizer.iterations) == 7
    assert float(gan.g_optimizer.learning_rate) == float(gan.d_optimizer.learning_rate) == 0.0
    assert (tmp_path / "grids" / "3.png").is_file()  # the cut epoch has its grid


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_a_wider_gan_is_timed_slower_per_step_side_by_side(steps_per_execution):
    """The timing a trial's steps come from: measured on the trial's own GAN and the
    reference's, in turns (not a constant), so a network many times wider gets fewer steps in
    the same seconds, also when steps run several per call."""
    images = tiny.random_images(256)
    labels = images[:, 0, 0, 0] % 2
    train = dataclasses.replace(tiny.train_cfg(steps_per_execution=steps_per_execution),
                                lr_decay="linear")  # fmt: skip

    def cfg(filters: int) -> config.Config:
        nets = {"filters": filters, "max_filters": filters}
        model = dataclasses.replace(
            tiny.MODEL,
            generator=dataclasses.replace(tiny.MODEL.generator, **nets),
            discriminator=dataclasses.replace(tiny.MODEL.discriminator, **nets),
        )
        return dataclasses.replace(config.Config(), model=model, train=train)

    narrow, wide = budget.step_seconds([cfg(4), cfg(256)], images, labels, n_classes=2)
    assert 0 < narrow < wide
    assert wide / narrow > 2  # ~100x the multiply-adds per step
