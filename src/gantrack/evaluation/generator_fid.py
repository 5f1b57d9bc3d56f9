"""The FID of a generator on the classifier's features: once (tuning's final score) or every
few epochs during training (a Keras callback writing it into the epoch's logs)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras

from gantrack.evaluation import classifier as classifier_lib
from gantrack.evaluation import metrics
from gantrack.gan.callbacks import finite
from gantrack.gan.sampling import sample

logger = logging.getLogger(__name__)


def generator_fid(generator, classifier, reference: tuple, n: int, seed: int,
                  batch_size: int) -> float:  # fmt: skip
    """FID of n generator samples (noise from `seed`) on the classifier's features against
    reference (mu, sigma) of the real split."""
    fakes = sample(generator, n, seed, batch_size)
    feats, _ = classifier_lib.extract(classifier, fakes, batch_size)
    return metrics.frechet_distance(*metrics.statistics(feats), *reference)


class PeriodicFID(keras.callbacks.Callback):
    """Every `every` epochs, FID of `n` generator samples (fixed seed) against reference stats.

    The value goes into the epoch's logs as `fid_<extractor>_n<n>` (so callbacks after this one,
    such as a tracker's, see it with the losses): its sample count is in its name, so it is never
    mistaken for the final evaluation's FID. `on_value(epoch, fid)` lets a caller react (Optuna
    reports and prunes through it); `values` keeps {epoch: fid}.
    """

    def __init__(self, every: int, classifier: keras.Model, reference: tuple, n: int, seed: int,
                 batch_size: int, extractor: str = "classifier",
                 on_value: Callable[[int, float], None] | None = None):  # fmt: skip
        super().__init__()
        self.every, self.classifier, self.reference = every, classifier, reference
        self.n, self.seed, self.batch_size, self.on_value = n, seed, batch_size, on_value
        self.name = f"fid_{extractor}_n{n}"
        self.values: dict[int, float] = {}

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every or not finite(logs):
            return
        fid = generator_fid(self.model.sampler, self.classifier, self.reference, self.n,
                            self.seed, self.batch_size)  # fmt: skip
        self.values[done] = fid
        logger.info("epoch %d: %s = %.3f", done, self.name, fid)
        if logs is not None:
            logs[self.name] = fid
        if self.on_value:
            self.on_value(done, fid)
