"""Equal-time trials (tune.seconds): how a trial's budget becomes epochs and pruner steps, and
the timing it rests on (in-process; the studies themselves: test_tuning.py)."""

import dataclasses

import numpy as np
import pytest
import tiny

from gantrack import config
from gantrack.gan import training
from gantrack.tuning import budget


def test_the_steps_fill_the_seconds_and_each_mark_falls_on_the_step_its_second_ends():
    share = budget.plan(600, 120, step_seconds=0.05, steps_per_epoch=1000)
    assert (share.steps, share.epochs, share.step_seconds) == (12000, 12, 0.05)
    assert share.marks == {120: 2400, 240: 4800, 360: 7200, 480: 9600, 600: 12000}
    # a budget that ends inside an epoch cuts it short; the last mark is its last step, also
    # when the budget is no multiple of the FID interval
    share = budget.plan(100, 30, step_seconds=0.3, steps_per_epoch=100)
    assert (share.steps, share.epochs) == (333, 4)
    assert share.marks == {30: 100, 60: 200, 90: 300, 100: 333}
    # a budget shorter than one step still trains one
    assert budget.plan(1, 1, step_seconds=5.0, steps_per_epoch=10) == budget.Budget(
        1, 1, 5.0, {1: 1})  # fmt: skip


def test_a_trial_config_trains_its_epochs_checkpointing_and_sampling_each():
    cfg = config.from_dict({"tune": {"seconds": 300}})
    fitted = budget.fitted(cfg, budget.plan(300, 60, step_seconds=0.02, steps_per_epoch=1000))
    assert (fitted.train.epochs, fitted.train.checkpoint_every, fitted.train.sample_every) == (
        15, 1, 1)  # fmt: skip
    assert fitted.train.lr_g == cfg.train.lr_g and fitted.model == cfg.model


def test_a_trial_trains_exactly_its_steps_and_measures_at_each_mark_inside_its_epochs(tmp_path):
    """7 steps of 3 per epoch: 3 epochs, the last cut after one step, where the linear decay
    of both rates (over those 7 steps, not over 3 whole epochs) reaches 0; the marks fall on
    steps 2, 4 and 6, two of them inside an epoch, and on the last."""
    images = tiny.random_images(96)  # batch 32: 3 steps per epoch
    train = dataclasses.replace(tiny.train_cfg(lr_decay="linear"), epochs=3)
    share = budget.plan(7, 2, step_seconds=1.0, steps_per_epoch=3)
    assert (share.steps, share.epochs) == (7, 3)
    gan = training.build_for_data(tiny.MODEL, train, images.shape, 1, seed=0, steps=share.steps)
    seen = []
    steps = budget.Steps(share, 3, lambda second, model: seen.append(
        (second, int(model.g_optimizer.iterations))))  # fmt: skip
    trained = training.train(tiny.MODEL, train, images, np.zeros(96, int), 1, seed=0,
                             checkpoint_dir=tmp_path / "ckpt", grids_dir=tmp_path / "grids",
                             hooks=training.Hooks(callbacks=(steps,)), gan=gan)  # fmt: skip
    assert seen == [(2, 2), (4, 4), (6, 6), (7, 7)]
    assert list(trained.result.history["epoch"]) == [1, 2, 3]
    assert int(gan.g_optimizer.iterations) == int(gan.d_optimizer.iterations) == 7
    assert float(gan.g_optimizer.learning_rate) == float(gan.d_optimizer.learning_rate) == 0.0
    assert (tmp_path / "grids" / "3.png").is_file()  # the cut epoch has its grid


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_a_wider_gan_is_timed_slower_per_step_side_by_side(steps_per_execution, monkeypatch):
    """The timing a trial's steps come from: measured on the trial's own GAN and the
    reference's, in turns (not a constant), so a network many times wider gets fewer steps in
    the same seconds, also when steps run several per call."""
    monkeypatch.setattr(budget, "ROUNDS", 4)  # 25x apart here: four turns each, not eight
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
