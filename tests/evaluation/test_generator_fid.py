import numpy as np
import tiny

from gantrack.config import ClassifierConfig
from gantrack.evaluation import classifier as classifier_lib
from gantrack.evaluation import metrics
from gantrack.evaluation.generator_fid import generator_fid


def test_fid_every_epoch_traces_the_networks_once():
    """A long run scores its generator every epoch: the same networks must not be traced again
    each time (past five traces TensorFlow warns on stderr, and every trace costs time)."""
    classifier = classifier_lib.build_classifier(ClassifierConfig(filters=4), tiny.SHAPE, 3)
    reference = metrics.statistics(np.random.default_rng(0).normal(size=(64, 32)))
    generator = tiny.gan().sampler

    def fid():
        return generator_fid(generator, classifier, reference, 40, 7, 16)

    def traces():  # the predict functions of the generator and the classifier's two heads
        heads = classifier_lib._HEADS[classifier]
        return [m.predict_function.experimental_get_tracing_count() for m in (generator, heads)]

    first = fid()
    after_first = traces()
    later = [fid() for _ in range(6)]
    assert traces() == after_first
    assert set(later) == {first} and np.isfinite(first)  # same noise seed, same FID
