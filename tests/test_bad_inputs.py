"""Values the params' own checks let through but a library or a later stage would reject: data
too small for its classes or a metric, files of the wrong kind, outputs that cannot be written,
stores that do not exist. Each is one line on stderr, exit code 2, and nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest
from project import cli, one_line_error, user_env

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

DIGITS = "data:\n  dataset: digits\n"


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (DIGITS + "  test_fraction: 0.001\n",
         "data.test_fraction: 0.001 splits 1797 images into 1795 train and 2 test images; 10 "
         "classes need 10 or more images in each split (stratified); allowed: 0.005565 to"),
        (DIGITS + "  test_fraction: 0.999\n", "into 1 train and 1796 test images; 10 classes"),
        (DIGITS + "  limit: 5\n", "data.limit: 5 images cannot hold the 10 classes of digits; "
         "allowed: null (all), 10 or more"),
        (DIGITS + "generate:\n  n_samples: 300\nevaluate:\n  pr_k: 300\n",
         "evaluate.pr_k: 300 needs more than 300 samples (generate.n_samples is 300); allowed: "
         "1 to 299"),
    ],
)  # fmt: skip
def test_data_too_small_for_its_classes_or_metrics_is_refused_by_prepare(tmp_path, params, message):
    (tmp_path / "params.yaml").write_text(params)
    one_line_error(cli(tmp_path, "prepare"), "prepare", message)
    assert _files(tmp_path) == {Path("params.yaml")}


def _npz(path: Path, n: int, shape=(8, 8, 1)) -> str:
    np.savez(path, images=np.zeros((n, *shape), np.uint8))
    return path.name


def test_sample_refuses_outputs_it_cannot_write_before_any_work(tmp_path):
    """Checked before the generator is loaded (here it does not even exist)."""
    (tmp_path / "params.yaml").write_text(DIGITS)
    (tmp_path / "taken.png").mkdir()
    for out, message in [
        ("missing/grid.png", "--out: missing/grid.png: no folder missing; create it"),
        ("taken.png", "--out: taken.png is a folder; give a file name ending in .png or .npz"),
        ("params.yaml/x.npz", "--out: params.yaml/x.npz: no folder params.yaml"),
    ]:
        one_line_error(cli(tmp_path, "sample", "--out", out), "sample", message)
    assert _files(tmp_path) == {Path("params.yaml"), Path("taken.png")}


def test_stores_that_do_not_exist_are_refused_and_not_created(tmp_path):
    """A registry URI with no store, DVC_ROOT or a sqlite URI naming a missing folder, a study
    to apply from a store that does not exist: one line, and no database, lock or folder."""
    (tmp_path / "params.yaml").write_text(DIGITS)
    model = ["sample", "--model", "models:/gantrack-generator@champion"]
    missing = tmp_path / "gone" / "deeper"
    for args, env, message in [
        (model, {}, f"MLflow store sqlite:///{tmp_path}/mlflow.db: no such file"),
        (model, {"DVC_ROOT": str(missing)}, f"DVC_ROOT: {missing} is not a folder"),
        (model, {"MLFLOW_TRACKING_URI": f"sqlite:///{missing}/m.db"},
         f"MLFLOW_TRACKING_URI: sqlite:///{missing}/m.db: no folder {missing}"),
        (["tune", "--apply"], {}, "tune.storage: sqlite:///"),
        # in memory: a run or a study lost when the process ends, without a word
        (model, {"MLFLOW_TRACKING_URI": "sqlite://"}, "MLFLOW_TRACKING_URI: sqlite:// is in "
                                                      "memory, gone with the process"),
        (["tune", "--create-only"], {"GANTRACK_TUNE_STORAGE": "sqlite:///:memory:"},
         "tune.storage: sqlite:///:memory: is in memory, gone with the process; give a file"),
    ]:  # fmt: skip
        proc = cli(tmp_path, *args, env={**user_env(), **env})
        one_line_error(proc, args[0], message)
    assert _files(tmp_path) == {Path("params.yaml")}
    params = tmp_path / "params.yaml"
    params.write_text(DIGITS + f"tune:\n  storage: sqlite:///{missing}/optuna.db\n")
    proc = cli(tmp_path, "tune", "--create-only")
    one_line_error(proc, "tune", f"tune.storage: sqlite:///{missing}/optuna.db: no folder")
    assert _files(tmp_path) == {Path("params.yaml")}


def test_fid_refuses_too_few_images_and_folders_before_tensorflow(tmp_path):
    (tmp_path / "params.yaml").write_text(DIGITS)
    b = _npz(tmp_path / "b.npz", 20)
    for a, message in [
        (_npz(tmp_path / "two.npz", 2), "evaluate.pr_k: 3 needs more than 3 images, two.npz has 2"),
        (".", ".: a folder; give a samples .npz (key 'images', uint8 NHWC)"),
        # precision and recall compare every pair: 100,000 images took 6 min, 1e6 would take
        # hours (8.5 MB of small images)
        (
            _npz(tmp_path / "many.npz", 200_001, (1, 1, 1)),
            "many.npz: 200001 images; at most 200000 are scored",
        ),
    ]:
        one_line_error(cli(tmp_path, "fid", a, b), "fid", message)


def test_files_the_extractor_cannot_read_are_one_line(tmp_path):
    """Images of another size than the classifier's, a PNG as Inception weights; and a test
    split smaller than evaluate.pr_k needs, found before any feature is extracted."""
    from gantrack.config import ClassifierConfig
    from gantrack.evaluation.classifier import build_classifier

    (tmp_path / "models/classifier").mkdir(parents=True)
    build_classifier(ClassifierConfig(filters=2), (8, 8, 1), 10).save(
        tmp_path / "models/classifier/classifier.keras"
    )
    (tmp_path / "params.yaml").write_text(DIGITS)
    big = _npz(tmp_path / "big.npz", 20, (28, 28, 1))
    proc = cli(tmp_path, "fid", big, big)
    one_line_error(proc, "fid", "the classifier extractor reads 8x8x1 images, not 28x28x1 ones")

    Path(tmp_path / "weights.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "params.yaml").write_text(
        DIGITS + "evaluate:\n  extractor: inception\n  inception_weights: weights.png\n"
    )
    proc = cli(tmp_path, "reference")
    one_line_error(proc, "reference", "evaluate.inception_weights: weights.png is not ")

    (tmp_path / "params.yaml").write_text(DIGITS + "generate:\n  n_samples: 20\n")
    (tmp_path / "data/prepared").mkdir(parents=True)
    meta = {"dataset": "digits", "shape": [8, 8, 1], "n_train": 10, "n_test": 3, "n_classes": 10}
    (tmp_path / "data/prepared/meta.json").write_text(json.dumps(meta))
    (tmp_path / "data/generated").mkdir(parents=True)
    _npz(tmp_path / "data/generated/samples.npz", 20)
    before = _files(tmp_path)
    proc = cli(tmp_path, "evaluate")
    one_line_error(proc, "evaluate", "evaluate.pr_k: 3 needs more than 3 images, the test split")
    assert _files(tmp_path) == before
