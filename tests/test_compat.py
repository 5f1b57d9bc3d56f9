"""The private behaviour of other libraries that gantrack.runtime.compat leans on: each test fails
loudly when a new release changes it, instead of a workaround silently doing nothing."""

import inspect
import os
import subprocess
import sys

import keras
import numpy as np

from gantrack.runtime import compat


def test_keras_fit_still_builds_through_maybe_symbolic_build():
    """NoSymbolicBuild overrides Keras' private hook by name: it must exist, take the same
    arguments and be what fit calls."""
    hook = getattr(keras.Model, "_maybe_symbolic_build", None)
    assert hook is not None, "keras.Model._maybe_symbolic_build is gone: revisit compat"
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]
    assert "_maybe_symbolic_build" in inspect.getsource(keras.Model.fit)


def test_tensorflow_keeps_its_gradient_registry_where_compat_looks():
    import tensorflow as tf

    registry = compat.gradient_registry()
    assert registry, "ops._gradient_registry._registry is gone: tuning's memory would leak"
    before = set(registry)

    @tf.custom_gradient
    def double(x):
        return 2 * x, lambda dy: 2 * dy

    tf.function(lambda x: tf.gradients(double(x), x))(tf.constant(1.0))
    assert any(n.startswith("CustomGradient-") for n in set(registry) - before)


def test_mlflow_still_names_stepped_images_as_image_steps_reads_them(tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            for step in (1, 3):
                mlflow.log_image(np.zeros((4, 4, 3), np.uint8), key="samples", step=step,
                                 synchronous=True)  # fmt: skip
        paths = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "images")]
    finally:
        mlflow.set_tracking_uri(None)
    assert compat.image_steps(paths, "samples") == {1, 3}


def test_the_quiet_import_hook_silences_tensorflows_banners_and_only_them():
    """Through the hook, importing TensorFlow writes nothing to stderr; a Python error after
    it still does."""
    code = (
        "import sys; from gantrack.runtime import compat; compat.quiet_tensorflow_import();"
        "import tensorflow; print(tensorflow.__version__); print('after', file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "after\n"


_EXTRAS = "import sys; print(sorted({'sklearn', 'matplotlib.pyplot'} & set(sys.modules)))"


def test_keras_loads_without_its_optional_extras_and_gantrack_still_has_them():
    """Keras imports scikit-learn and matplotlib.pyplot when it loads (the cost the hook
    saves); through the hook it does not, still runs a layer, and gantrack's own imports of
    both work after it."""
    plain = subprocess.run([sys.executable, "-c", f"import keras; {_EXTRAS}"],
                           capture_output=True, text=True)  # fmt: skip
    assert plain.stdout.strip() == "['matplotlib.pyplot', 'sklearn']", plain.stderr
    code = (
        "from gantrack.runtime import compat; compat.lean_keras_import(); import keras;"
        f"{_EXTRAS}; print(keras.layers.Dense(2)(keras.ops.ones((1, 3))).shape);"
        "from sklearn.datasets import load_digits; import matplotlib.pyplot;"
        "from gantrack.gan import plots; print(load_digits().images.shape)"
    )
    lean = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert lean.returncode == 0, lean.stderr
    assert lean.stdout.split("\n")[:3] == ["[]", "(1, 2)", "(1797, 8, 8)"]


def test_keras_home_is_this_users_own_when_the_home_directory_is_not_writable(tmp_path):
    """Keras falls back to /tmp/.keras (its config and download cache), which any local user
    can create first; gantrack points KERAS_HOME at a 0700 folder of this user's instead, and
    at a new one when another owns that name or can write into it."""
    code = ("from gantrack.runtime import compat; compat.private_keras_home(); "
            "from keras.src.backend.config import keras_home; print(keras_home())")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"}
    (tmp_path / "a-file").touch()  # a home no one can create or write, not even root
    env.update(HOME=str(tmp_path / "a-file" / "home"), TMPDIR=str(tmp_path))

    def home() -> str:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        return done.stdout.strip().splitlines()[-1]

    own = tmp_path / f"gantrack-keras-{os.getuid()}"
    assert home() == str(own) and (own.stat().st_mode & 0o777) == 0o700
    assert home() == str(own)  # the next command: the same folder, its cache kept
    own.chmod(0o777)  # as if planted by someone else, writable by all
    other = home()
    assert other != str(own) and other.startswith(str(tmp_path / "gantrack-keras-"))
    assert (os.stat(other).st_mode & 0o777) == 0o700
