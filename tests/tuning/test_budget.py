"""Equal-time trials (tune.seconds): how a trial's budget becomes epochs and pruner steps, and
the timing it rests on (in-process; the studies themselves: test_tuning.py)."""

import dataclasses

import pytest
import tiny

from gantrack import config
from gantrack.tuning import budget


def test_the_epochs_fill_the_seconds_and_each_mark_is_reported_at_its_nearest_epoch():
    share = budget.plan(600, 120, epoch_seconds=50.0)  # 12 epochs: marks at 2.4, 4.8, ... epochs
    assert (share.epochs, share.epoch_seconds) == (12, 50.0)
    assert share.reports == {2: (120,), 5: (240,), 7: (360,), 10: (480,), 12: (600,)}
    # a budget that is not a multiple of the FID interval still ends on a report at its end
    assert budget.plan(100, 30, epoch_seconds=10.0).reports == {3: (30,), 6: (60,), 9: (90,),
                                                                10: (100,)}  # fmt: skip


def test_epochs_longer_than_the_fid_interval_report_one_fid_at_every_mark_they_hold():
    share = budget.plan(100, 20, epoch_seconds=45.0)  # 2.2 epochs -> 2
    assert share.epochs == 2
    assert share.reports == {1: (20, 40, 60), 2: (80, 100)}
    # a budget shorter than one epoch trains one, reported at every mark
    assert budget.plan(30, 10, epoch_seconds=100.0) == budget.Budget(1, 100.0, {1: (10, 20, 30)})


def test_a_trial_config_trains_its_epochs_checkpointing_and_sampling_each():
    cfg = config.from_dict({"tune": {"seconds": 300}})
    fitted = budget.fitted(cfg, budget.plan(300, 60, epoch_seconds=20.0))
    assert (fitted.train.epochs, fitted.train.checkpoint_every, fitted.train.sample_every) == (
        15, 1, 1)  # fmt: skip
    assert fitted.train.lr_g == cfg.train.lr_g and fitted.model == cfg.model


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_a_wider_gan_is_timed_slower_per_epoch(steps_per_execution):
    """The timing a trial's epochs come from: measured on the trial's own GAN (not a constant),
    so a network many times wider gets fewer epochs in the same seconds, also when steps run
    several per call."""
    images = tiny.random_images(256)
    labels = images[:, 0, 0, 0] % 2
    base = config.Config()
    train = dataclasses.replace(tiny.train_cfg(steps_per_execution=steps_per_execution),
                                lr_decay="linear")  # fmt: skip

    def seconds(filters: int) -> float:
        nets = {"filters": filters, "max_filters": filters}
        model = dataclasses.replace(
            tiny.MODEL,
            generator=dataclasses.replace(tiny.MODEL.generator, **nets),
            discriminator=dataclasses.replace(tiny.MODEL.discriminator, **nets),
        )
        cfg = dataclasses.replace(base, model=model, train=train)
        return budget.epoch_seconds(cfg, images, labels, n_classes=2)

    narrow, wide = seconds(4), seconds(256)
    assert 0 < narrow < wide
    assert wide / narrow > 2  # ~100x the multiply-adds per step
