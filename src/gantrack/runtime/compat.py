"""Where gantrack leans on other libraries' private behaviour, in one place: each workaround
says why it is needed, and tests/test_compat.py fails loudly when a dependency changes under it
(rather than the workaround silently doing nothing).

- NoSymbolicBuild: Keras' private `Model._maybe_symbolic_build`, skipped for the GAN.
- gradient_registry: TensorFlow's private registry of gradient functions (tuning's memory).
- image_steps: the artifact names MLflow gives images logged with a step.
- quiet_tensorflow_import: TensorFlow's import, run with file descriptor 2 silenced.
- lean_keras_import: Keras' optional scikit-learn and matplotlib extras, not imported.
- private_keras_home: Keras' fallback to a shared /tmp/.keras (home not writable), avoided.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from typing import Any


class NoSymbolicBuild:
    """Mixin for a keras.Model whose parts are built already: Keras' fit calls the private
    `_maybe_symbolic_build`, which under a tf.distribute strategy all-reduces a first batch,
    and that fails for an (images, labels) batch under MultiWorkerMirroredStrategy (it cannot
    reduce a nested batch). Nothing needs building, so it does nothing."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return


def gradient_registry() -> dict[str, Any]:
    """TensorFlow's gradient functions by op type: `ops._gradient_registry._registry`. Each
    traced tf.custom_gradient (tf.distribute's all_reduce) adds an entry holding its graph and
    none is ever removed; tuning drops those of finished trials. {} if the internals move."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else {}


def image_steps(artifact_paths: Iterable[str], key: str) -> set[int]:
    """The steps of the images logged under key (mlflow.log_image(key=..., step=...)), from
    their artifact names: MLflow stores them as images/<key>+step+<step>+timestamp+...; its
    client has no public call that lists an image key's steps."""
    prefix = f"{key}+step+"
    names = (path.rsplit("/", 1)[-1] for path in artifact_paths)
    return {int(name[len(prefix) :].split("+")[0]) for name in names if name.startswith(prefix)}


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 goes to /dev/null inside: C++ writes there, not through sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports `tensorflow`, whenever something first does, with native stderr silenced.

    At import TensorFlow's C++ side prints absl's "All log messages before
    absl::InitializeLog()" warning and oneDNN's notice (CPUs with AVX-512) straight to file
    descriptor 2, before TF_CPP_MIN_LOG_LEVEL is read. The finder wraps the module loader's
    exec_module (import machinery, not a public hook). An exception raised by the import still
    reaches the user (it is raised after the descriptor is back); a native abort during the
    import loses its message: `gantrack --verbose` imports without this.
    """

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; find_spec below must not come back here
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            with _native_stderr_silenced():
                execute(module)

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Silence TensorFlow's import-time banners (see QuietTensorFlowImport), unless imported."""
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, QuietTensorFlowImport())


# Keras modules that import scikit-learn or matplotlib.pyplot when they load, each in a
# try/except ImportError (its sklearn wrappers, its image-gallery plots: gantrack uses neither)
KERAS_OPTIONAL_EXTRAS = ("keras.src.wrappers.", "keras.src.visualization.")
_IMPORT_MACHINERY = ("importlib", "_frozen_importlib")


class LeanKerasImport(importlib.abc.MetaPathFinder):
    """Refuses `sklearn` and `matplotlib` to the module-level imports of Keras' optional
    extras (KERAS_OPTIONAL_EXTRAS), which then load without them, as when they are not
    installed: ~1.2 s of CPU off every process that imports TensorFlow (its import loads Keras),
    a third of the import. Any other importer, gantrack's own code included, gets them as
    usual. The importer is the first frame outside the import machinery (CPython's frames)."""

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] not in ("sklearn", "matplotlib"):
            return None
        frame = sys._getframe(1)
        while frame is not None and _module_of(frame).startswith(_IMPORT_MACHINERY):
            frame = frame.f_back
        at_load = frame is not None and frame.f_code.co_name == "<module>"
        if at_load and _module_of(frame).startswith(KERAS_OPTIONAL_EXTRAS):
            raise ImportError(f"{name}: not loaded for Keras' optional extras")
        return None


def _module_of(frame) -> str:
    return frame.f_globals.get("__name__", "")


def lean_keras_import() -> None:
    """Keep Keras' optional extras from importing scikit-learn and matplotlib (see
    LeanKerasImport), unless Keras is imported already."""
    if "keras" not in sys.modules:
        sys.meta_path.insert(0, LeanKerasImport())


def private_keras_home(base: str | None = None) -> None:
    """Keras reads its config (keras.json: backend, float type, image layout) from ~/.keras and
    caches downloads there, or in /tmp/.keras when the home directory is not writable: a folder
    any local user can create first and fill. There, KERAS_HOME is pointed at a folder of this
    user's alone: <base, the temporary folder>/gantrack-keras-<uid> (0700), kept for the next
    command's cache, or a new temporary one when that name is taken by anything else. Unless
    KERAS_HOME is set or Keras is imported already."""
    if "KERAS_HOME" in os.environ or "keras" in sys.modules:
        return
    if os.access(os.path.expanduser("~"), os.W_OK):
        return
    home = os.path.join(base or tempfile.gettempdir(), f"gantrack-keras-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(home, 0o700)
    info = os.lstat(home)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        home = tempfile.mkdtemp(prefix="gantrack-keras-")
    os.environ["KERAS_HOME"] = home
