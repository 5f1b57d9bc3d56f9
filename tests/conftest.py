import os

# Quiet TensorFlow's C++ banner; must be set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402
from project import PREPARED, TINY, cli, commit, copy_project, copy_tiny, make_project, run  # noqa: E402


def pytest_configure(config):
    """Stop at once when the tests would import another tree's gantrack (a second clone sharing
    this venv, whose editable install points elsewhere): they would test that code."""
    import gantrack

    here = Path(__file__).resolve().parents[1] / "src" / "gantrack"
    if Path(gantrack.__file__).resolve().parent != here:
        found = Path(gantrack.__file__).parent
        pytest.exit(f"gantrack is imported from {found}, not {here}: install this tree "
                    "(bash scripts/setup.sh) or give it its own venv", returncode=2)  # fmt: skip


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


# --- projects built once per session (once for all pytest-xdist workers), copied per test ------


@pytest.fixture(scope="session")
def _shared(tmp_path_factory, worker_id) -> Path:
    """A directory every worker of this session sees (the parent of each worker's own)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def _built_once(shared: Path, name: str, build) -> Path:
    """shared/name, built by build(path) in the first worker that asks; the others wait."""
    path = shared / name
    with FileLock(f"{path}.lock"):
        if not (path / ".built").exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            (path / ".built").touch()
    return path


def _prepare(path: Path) -> None:
    (path / "params.yaml").write_text(PREPARED)
    proc = cli(path, "prepare")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def prepared(_shared, tmp_path) -> Path:
    """tmp_path holding params.yaml (project.PREPARED) and the digits prepared, as after
    `gantrack prepare`: what train reads."""
    return copy_project(_built_once(_shared, "prepared", _prepare), tmp_path)


def _reproduce_before_train(path: Path) -> None:
    project = make_project(path, TINY)
    run(project, "dvc", "repro", "reference")  # prepare, classifier, reference
    commit(project, "prepared")


@pytest.fixture(scope="session")
def tiny_built(_shared) -> Path:
    """The session's git and DVC project with TINY params in which `dvc repro` has run prepare,
    classifier and reference (committed). Copy it (copy_tiny); never change it."""
    return _built_once(_shared, "tiny", _reproduce_before_train) / "project"


@pytest.fixture
def tiny_project(tiny_built, tmp_path):
    """Returns project(changes): a copy of tiny_built with changes (see copy_tiny)."""
    return lambda changes=None: copy_tiny(tiny_built, tmp_path / "project", changes)
