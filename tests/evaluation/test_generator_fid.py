import logging

import numpy as np
import tiny

from gantrack.config import ClassifierConfig
from gantrack.evaluation import classifier as classifier_lib
from gantrack.evaluation import metrics
from gantrack.evaluation.generator_fid import generator_fid


def test_fid_every_epoch_traces_the_networks_once(caplog):
    """A long run scores its generator every epoch: the same networks must not be retraced
    each time (TensorFlow warns on stderr, and every trace costs time)."""
    classifier = classifier_lib.build_classifier(ClassifierConfig(filters=4), tiny.SHAPE, 3)
    reference = metrics.statistics(np.random.default_rng(0).normal(size=(64, 32)))
    generator = tiny.gan().sampler
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        fids = [generator_fid(generator, classifier, reference, 40, 7, 16) for _ in range(7)]
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    assert len(set(fids)) == 1 and np.isfinite(fids[0])  # same noise seed, same FID
