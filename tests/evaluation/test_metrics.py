"""Tests for gantrack.evaluation.metrics: FID vs a SciPy sqrtm reference and closed forms;
KID, IS, P/R."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_limits

from gantrack.evaluation.metrics import (
    fid_from_features,
    frechet_distance,
    inception_score,
    kid,
    precision_recall,
    statistics,
)


@pytest.fixture(scope="module", autouse=True)
def single_threaded_blas():
    """Small matrices: BLAS threads only add latency, and can stall badly on a busy machine."""
    with threadpool_limits(limits=1):
        yield


def reference_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), real part."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def gaussian_feats(rng: np.random.Generator, n: int, dim: int, shift: float = 0.0) -> np.ndarray:
    """(n, dim) correlated Gaussian features of unit scale: z @ W / sqrt(dim) + shift."""
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    return rng.standard_normal((n, dim)) @ mixing + shift


@pytest.fixture(scope="module")
def well_conditioned():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 64))
    b = gaussian_feats(rng, 500, 64, shift=0.3)
    return a, b


@pytest.fixture(scope="module")
def rank_deficient():
    """D = 128 from N = 40 and N = 60 samples: covariance ranks 39 and 59."""
    rng = np.random.default_rng(1)
    return rng.standard_normal((40, 128)), gaussian_feats(rng, 60, 128, shift=0.1)


# ------------------------------------------------------------------ FID


def test_statistics_mean_and_unbiased_covariance(well_conditioned):
    feats = well_conditioned[1]
    mu, sigma = statistics(feats.astype(np.float32))
    centred = feats - feats.mean(axis=0)
    assert mu.dtype == sigma.dtype == np.float64
    assert mu.shape == (64,) and sigma.shape == (64, 64)
    np.testing.assert_allclose(mu, feats.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sigma, centred.T @ centred / (len(feats) - 1), atol=1e-6)


def test_frechet_distance_matches_sqrtm_reference(well_conditioned):
    stats_a, stats_b = statistics(well_conditioned[0]), statistics(well_conditioned[1])
    value = frechet_distance(*stats_a, *stats_b)
    assert isinstance(value, float)
    assert value == pytest.approx(reference_fid(*stats_a, *stats_b), rel=1e-6)
    assert value > 1.0  # the two sets differ: not a trivially small number


def test_frechet_distance_diagonal_closed_form():
    """Diagonal Gaussians: ||mu1 - mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2, zeros included."""
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    s1, s2 = rng.uniform(0.1, 3.0, 50), rng.uniform(0.1, 3.0, 50)
    s1[:5] = 0.0  # singular: five constant features on one side
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_zero_covariances_is_squared_mean_distance():
    mu1, mu2 = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 5.0])
    zeros = np.zeros((3, 3))
    assert frechet_distance(mu1, zeros, mu2, zeros) == pytest.approx(5.0, rel=1e-12)


def test_frechet_distance_rank_deficient_matches_reference(rank_deficient):
    stats_a, stats_b = statistics(rank_deficient[0]), statistics(rank_deficient[1])
    value = frechet_distance(*stats_a, *stats_b)
    assert isinstance(value, float) and np.isfinite(value)
    assert value == pytest.approx(reference_fid(*stats_a, *stats_b), rel=1e-6)
    # one singular, one full-rank covariance, both ways round
    full = statistics(np.random.default_rng(3).standard_normal((400, 128)))
    for first, second in [(stats_a, full), (full, stats_a)]:
        expected = reference_fid(*first, *second)
        assert frechet_distance(*first, *second) == pytest.approx(expected, rel=1e-6)


def test_fid_scaled_copy_closed_form(rank_deficient):
    """b = c * a: FID = (1 - c)^2 (||mu_a||^2 + tr(S_a)), for N < D and N > D."""
    for feats in [rank_deficient[1], np.random.default_rng(4).standard_normal((300, 16)) + 1.0]:
        mu, sigma = statistics(feats)
        expected = (1 - 2.5) ** 2 * (mu @ mu + np.trace(sigma))
        assert fid_from_features(feats, 2.5 * feats) == pytest.approx(expected, rel=1e-9)
        assert frechet_distance(mu, sigma, 2.5 * mu, 6.25 * sigma) == pytest.approx(
            expected, rel=1e-9
        )


def test_fid_from_features_low_rank_matches_covariance_path(rank_deficient):
    a, b = rank_deficient
    value = fid_from_features(a, b)
    assert isinstance(value, float)
    assert value == pytest.approx(frechet_distance(*statistics(a), *statistics(b)), rel=1e-6)
    assert value == pytest.approx(reference_fid(*statistics(a), *statistics(b)), rel=1e-6)
    full = np.random.default_rng(5).standard_normal((300, 128))  # Nb > D: covariance path
    expected = reference_fid(*statistics(a), *statistics(full))
    assert fid_from_features(a, full) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("case", ["well_conditioned", "rank_deficient"])
def test_fid_of_a_set_with_itself_is_zero(case, request):
    for feats in request.getfixturevalue(case):
        stats = statistics(feats)
        assert 0.0 <= frechet_distance(*stats, *stats) < 1e-6
        assert 0.0 <= fid_from_features(feats, feats) < 1e-6


@pytest.mark.parametrize("case", ["well_conditioned", "rank_deficient"])
def test_frechet_distance_is_symmetric(case, request):
    stats_a, stats_b = (statistics(f) for f in request.getfixturevalue(case))
    forward = frechet_distance(*stats_a, *stats_b)
    assert frechet_distance(*stats_b, *stats_a) == pytest.approx(forward, rel=1e-9)
    assert fid_from_features(*request.getfixturevalue(case)[::-1]) == pytest.approx(
        forward, rel=1e-6
    )


def test_fid_rejects_bad_shapes_and_non_finite_input():
    mu, sigma = np.zeros(4), np.eye(4)
    bad_calls = [
        (np.zeros(3), sigma, mu, sigma),  # mu1 vs sigma1
        (mu, sigma, np.zeros(5), sigma),  # mu2
        (mu, np.eye(4)[:3], mu, sigma),  # non-square
        (mu, sigma, mu, np.eye(5)),  # sigma2
        (mu, sigma, np.full(4, np.nan), sigma),
        (mu, sigma, mu, np.where(np.eye(4) > 0, np.inf, 0.0)),
    ]
    for args in bad_calls:
        with pytest.raises(ValueError):
            frechet_distance(*args)
    with pytest.raises(ValueError, match="rows"):
        statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="feature sizes"):
        fid_from_features(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fid_from_features(np.full((5, 4), np.nan), np.zeros((5, 4)))


# ------------------------------------------------------------------ KID


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, cubic polynomial kernel, by explicit loops over pairs."""
    dim, m = x.shape[1], len(x)

    def k(u, v):
        return (float(np.dot(u, v)) / dim + 1.0) ** 3

    pairs = [(i, j) for i, j in itertools.product(range(m), repeat=2) if i != j]
    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i, j in pairs) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), repeat=2)) / m**2
    return within - 2.0 * cross


def test_kid_whole_set_matches_brute_force():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((25, 6)), rng.standard_normal((25, 6)) + 0.5
    mean, std = kid(x, y, n_subsets=1, subset_size=25)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_near_zero_for_one_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same_mean, same_std = kid(a, b, n_subsets=50, subset_size=100)
    assert abs(same_mean) < 3 * same_std
    shifted_mean, shifted_std = kid(a, b + 0.5, n_subsets=50, subset_size=100)
    assert shifted_mean > 3 * shifted_std and shifted_mean > 10 * abs(same_mean)


def test_kid_is_seeded_and_validates():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((60, 4)), rng.standard_normal((50, 4))
    assert kid(a, b, n_subsets=5, subset_size=20) == kid(a, b, n_subsets=5, subset_size=20)
    assert kid(a, b, n_subsets=5, subset_size=20, seed=1) != kid(a, b, n_subsets=5, subset_size=20)
    with pytest.raises(ValueError):
        kid(a, b[:, :3])
    with pytest.raises(ValueError):
        kid(a, b, n_subsets=0)


# ------------------------------------------------------------------ Inception Score


def test_inception_score_is_one_for_constant_predictions():
    row = np.random.default_rng(9).dirichlet(np.ones(7))
    mean, std = inception_score(np.tile(row, (200, 1)), n_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_is_class_count_for_confident_balanced_predictions():
    classes, splits = 8, 10
    one_hot = np.eye(classes)[np.arange(classes * splits * 3) % classes]
    mean, std = inception_score(one_hot, n_splits=splits)
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    assert inception_score(one_hot[:24], n_splits=1)[0] == pytest.approx(classes, rel=1e-9)


def test_inception_score_validates_probabilities():
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(np.full((20, 4), 0.3))
    with pytest.raises(ValueError, match="n_splits"):
        inception_score(np.full((5, 4), 0.25), n_splits=6)


# ------------------------------------------------------------------ precision / recall


def test_precision_recall_known_answer_on_a_line():
    """Real 0..9 (k=1 radii 1); fake 0.5 (radius 19.5) and 20: precision 1/2, recall 1."""
    real = np.arange(10.0)[:, None]
    fake = np.array([[0.5], [20.0]])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)


def test_precision_recall_identical_distributions_are_high():
    rng = np.random.default_rng(10)
    precision, recall = precision_recall(
        rng.standard_normal((2000, 4)), rng.standard_normal((2000, 4))
    )
    assert precision > 0.8 and recall > 0.8


def test_precision_recall_disjoint_sets_are_zero():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((300, 8))
    assert precision_recall(real, rng.standard_normal((300, 8)) + 50.0) == (0.0, 0.0)


def test_precision_recall_tight_cluster_inside_real_data():
    """Mode collapse: fake is a tight blob at the centre of real: precision ~1, recall ~0."""
    rng = np.random.default_rng(12)
    real = rng.standard_normal((2000, 4))
    precision, recall = precision_recall(real, 0.05 * rng.standard_normal((500, 4)))
    assert precision > 0.95 and recall < 0.05


def test_precision_recall_blocks_agree_with_one_shot(monkeypatch):
    rng = np.random.default_rng(13)
    real, fake = rng.standard_normal((300, 5)), rng.standard_normal((250, 5)) * 1.3
    expected = precision_recall(real, fake, k=5)
    monkeypatch.setattr("gantrack.evaluation.metrics._BATCH_ELEMENTS", 1000)  # blocks of 3-4 rows
    assert precision_recall(real, fake, k=5) == expected
    assert 0.0 < expected[0] < 1.0 and 0.0 < expected[1] < 1.0
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(real, fake, k=250)
