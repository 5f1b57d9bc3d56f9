import keras
import numpy as np
import pytest

from gantrack import data
from gantrack.config import ClassifierConfig
from gantrack.data import datasets
from gantrack.errors import UserError
from gantrack.evaluation import classifier as classifier_lib
from gantrack.evaluation import extractors, inception


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """Random-init InceptionV3 weights written to a file: the real loading path, no download."""
    path = tmp_path_factory.mktemp("weights") / "inception.weights.h5"
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(299, 299, 3)
    )
    model.save_weights(path)
    return path


def test_auto_picks_inception_only_when_its_weights_exist(tmp_path, monkeypatch, inception_weights):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    assert extractors.resolve_extractor("auto", None) == "classifier"
    assert extractors.resolve_extractor("auto", str(inception_weights)) == "inception"
    assert extractors.resolve_extractor("classifier", str(inception_weights)) == "classifier"
    with pytest.raises(UserError, match="inception needs InceptionV3 weights"):
        extractors.resolve_extractor("inception", None)
    cache = tmp_path / "models" / inception.INCEPTION_WEIGHTS_FILE
    cache.parent.mkdir()
    cache.write_bytes(b"")
    assert extractors.resolve_extractor("auto", None) == "inception"


def test_inception_features_from_configured_weights(inception_weights):
    extract = extractors.load_extractor("inception", "unused.keras", str(inception_weights))
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    feats, probs = extract(gray, 2)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and probs is None
    # Grayscale is tiled to RGB: the same picture given as 3 equal channels has equal features.
    rgb, _ = extract(np.repeat(gray, 3, axis=-1), 2)
    np.testing.assert_allclose(rgb, feats, rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[0], feats[1])


@pytest.mark.skipif(
    not datasets.SYSTEM_FASHION_MNIST.is_dir(), reason="needs the dataset-fashion-mnist package"
)
def test_classifier_learns_fashion_mnist_subset():
    train, test = data.load_dataset("fashion_mnist")
    train, test = data.subsample(train, 12000, seed=0), data.subsample(test, 2000, seed=0)
    keras.utils.set_random_seed(0)
    model, accuracy = classifier_lib.train_classifier(
        ClassifierConfig(epochs=3), train.images, train.labels, test.images, test.labels
    )
    # The default params (all 60k images, 4 epochs) reach 90%; a fifth of the data, 85%.
    assert accuracy >= 0.85
    feats, probs = classifier_lib.extract(model, test.images[:10], 5)
    assert feats.shape == (10, 128) and probs.shape == (10, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
