"""Intra-FID (the FID within each class, and their mean) against a direct computation on
seeded features; the labels it needs in sample and reference files; the table evaluate prints."""

import logging

import numpy as np
import pytest
import scipy.linalg

from gantrack.evaluation import metrics, scoring
from gantrack.runtime.errors import UserError


def _direct_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula on the features' mean and unbiased covariance, sqrtm by SciPy."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(s_a + s_b - 2 * covmean))


@pytest.fixture(scope="module")
def features():
    """Real and fake features (D = 6) of 3 classes, each class its own shifted Gaussian; fake
    class 2 has 4 samples only."""
    rng = np.random.default_rng(0)
    real_labels = np.repeat([0, 1, 2], [80, 90, 70])
    fake_labels = np.repeat([0, 1, 2], [60, 75, 4])
    real = rng.standard_normal((240, 6)) + real_labels[:, None]
    fake = 1.3 * rng.standard_normal((139, 6)) + 0.8 * fake_labels[:, None] + 0.2
    return real, real_labels, fake, fake_labels


def test_class_fids_match_a_direct_computation_per_class(features):
    real, real_labels, fake, fake_labels = features
    scored, skipped = metrics.class_fids(real, real_labels, fake, fake_labels, min_samples=2)
    assert skipped == [] and sorted(scored) == [0, 1, 2]
    for c, (fid, n_fake, n_real) in scored.items():
        direct = _direct_fid(fake[fake_labels == c], real[real_labels == c])
        assert fid == pytest.approx(direct, rel=1e-6)
        assert (n_fake, n_real) == ((fake_labels == c).sum(), (real_labels == c).sum())
    # Not the FID of everything: the classes' FIDs differ from the pooled one.
    assert metrics.fid_from_features(fake, real) not in [fid for fid, _, _ in scored.values()]


def test_score_classes_names_each_class_skips_small_ones_and_says_so(features, caplog):
    real, real_labels, fake, fake_labels = features
    with caplog.at_level(logging.INFO, logger="gantrack.evaluation.scoring"):
        results = scoring.score_classes("classifier", real, real_labels, fake, fake_labels, 10)
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "class(es) 2 skipped" in record.getMessage()
    fids = [_direct_fid(fake[fake_labels == c], real[real_labels == c]) for c in (0, 1)]
    assert results["intra_fid_classifier"] == pytest.approx(np.mean(fids), rel=1e-6)
    assert results["intra_fid_classifier_classes"] == 2
    assert results["fid_classifier_class_1"] == pytest.approx(fids[1], rel=1e-6)
    assert results["n_generated_classifier_class_0"] == 60
    assert results["n_reference_classifier_class_0"] == 80
    assert not any(key.endswith("_class_2") for key in results)
    assert scoring.score_classes("inception", real, real_labels, fake, fake_labels, 1000) == {}


def test_class_fids_refuse_misaligned_labels_and_a_minimum_below_two(features):
    real, real_labels, fake, fake_labels = features
    with pytest.raises(ValueError, match="labels must be"):
        metrics.class_fids(real, real_labels[:-1], fake, fake_labels)
    with pytest.raises(ValueError, match="min_samples must be >= 2"):
        metrics.class_fids(real, real_labels, fake, fake_labels, min_samples=1)


def test_labels_travel_in_sample_and_reference_files_and_older_files_have_none(tmp_path):
    images = np.zeros((5, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "old.npz", images=images)
    assert scoring.load_sample_labels(tmp_path / "old.npz", 5) is None
    np.savez(tmp_path / "new.npz", images=images, labels=np.array([0, 1, 2, 1, 0]))
    np.testing.assert_array_equal(scoring.load_sample_labels(tmp_path / "new.npz", 5),
                                  [0, 1, 2, 1, 0])  # fmt: skip
    for bad in (np.array([0.0, 1, 2, 1, 0]), np.array([0, 1]), np.array([0, -1, 2, 1, 0])):
        np.savez(tmp_path / "bad.npz", images=images, labels=bad)
        with pytest.raises(UserError, match="bad.npz: labels must be integers >= 0"):
            scoring.load_sample_labels(tmp_path / "bad.npz", 5)
    feats = np.random.default_rng(0).standard_normal((6, 3))
    scoring.write_reference(tmp_path / "ref.npz", feats, "classifier")
    assert scoring.load_reference_labels(tmp_path / "ref.npz", 6) is None
    scoring.write_reference(tmp_path / "ref.npz", feats, "classifier", np.arange(6) % 2)
    np.testing.assert_array_equal(scoring.load_reference_labels(tmp_path / "ref.npz", 6),
                                  np.arange(6) % 2)  # fmt: skip


def test_the_table_shows_each_metric_with_its_spread_and_samples():
    results = {"fid_classifier": 12.3456789, "kid_classifier": 0.01, "kid_classifier_std": 0.002,
               "n_generated_classifier": 300, "n_reference_classifier": 359, "is_classifier": 5.5,
               "is_classifier_std": 0.3, "intra_fid_classifier": 40.1,
               "intra_fid_classifier_classes": 9, "fid_classifier_class_10": 30.0,
               "n_generated_classifier_class_10": 31, "n_reference_classifier_class_10": 36,
               "fid_classifier_class_1": 20.0, "n_generated_classifier_class_1": 29,
               "n_reference_classifier_class_1": 33, "classifier_test_accuracy": 0.93}  # fmt: skip
    rows = [line.split() for line in scoring.table(results).splitlines()]
    assert rows[0] == ["metric", "value", "samples", "(generated", "/", "reference)"]
    assert rows[1:] == [
        ["fid_classifier", "12.3457", "300", "/", "359"],
        ["kid_classifier", "0.01", "±", "0.002", "300", "/", "359"],
        ["is_classifier", "5.5", "±", "0.3", "300"],
        ["intra_fid_classifier", "40.1", "9", "classes"],
        ["fid_classifier_class_10", "30", "31", "/", "36"],
        ["fid_classifier_class_1", "20", "29", "/", "33"],
        ["classifier_test_accuracy", "0.93"],
    ]
