import os

# Quiet TensorFlow's C++ banner; must be set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """Random-init InceptionV3 weights written to a file: the real loading path, no download."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "inception.weights.h5"
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, pooling="avg", input_shape=(299, 299, 3)
    )
    model.save_weights(path)
    return path
