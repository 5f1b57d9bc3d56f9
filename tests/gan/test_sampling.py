"""The truncation trick and latent walks: the noise math on seeded draws, then the images."""

import dataclasses

import numpy as np
import pytest
import scipy.stats
import tiny

from gantrack.gan import sampling
from gantrack.gan.networks import build_generator

CLASSES = 3


@pytest.mark.parametrize("truncation", [0.5, 1.0, 2.0])
def test_truncated_noise_is_the_normal_truncated_to_plus_minus_t(truncation):
    z = sampling.draw_noise(np.random.default_rng(0), (20_000, 8), truncation)
    assert z.shape == (20_000, 8) and np.abs(z).max() <= truncation
    truncated = scipy.stats.truncnorm(-truncation, truncation)
    assert scipy.stats.kstest(z.ravel()[:20_000], truncated.cdf).pvalue > 1e-3
    assert z.var() == pytest.approx(truncated.var(), rel=0.03)


def test_truncation_keeps_the_entries_already_within_t_and_a_large_t_changes_nothing():
    plain = sampling.draw_noise(np.random.default_rng(1), (500, 8))
    truncated = sampling.draw_noise(np.random.default_rng(1), (500, 8), 1.0)
    inside = np.abs(plain) <= 1.0
    np.testing.assert_array_equal(truncated[inside], plain[inside])
    assert not np.array_equal(truncated, plain)
    np.testing.assert_array_equal(sampling.draw_noise(np.random.default_rng(1), (500, 8), 1e9),
                                  plain)  # fmt: skip


def test_a_tiny_truncation_ends_quickly_within_its_bounds():
    """Few draws are accepted: the rest come from the truncated normal's inverse CDF."""
    z = sampling.draw_noise(np.random.default_rng(2), (1000, 16), 1e-4)
    assert np.abs(z).max() <= 1e-4
    # Uniform on [-T, T] to first order, mean 0.
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1e-4 / np.sqrt(3), rel=0.05)


def _rotated(a, b, t):
    """Unit vector a turned towards unit vector b, in their plane, by t of the angle between."""
    omega = np.arccos(a @ b)
    ortho = (b - (a @ b) * a) / np.linalg.norm(b - (a @ b) * a)
    return np.cos(t * omega) * a + np.sin(t * omega) * ortho


def test_slerp_ends_at_its_endpoints_and_turns_at_a_constant_rate():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(16), rng.standard_normal(16)
    t = np.linspace(0, 1, 9)
    path = sampling.slerp(a, b, t)
    assert path.shape == (9, 16)
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    # On the unit sphere: the great circle from a to b, equal angles per step.
    ua, ub = a / np.linalg.norm(a), b / np.linalg.norm(b)
    unit = sampling.slerp(ua, ub, t)
    np.testing.assert_allclose(unit, [_rotated(ua, ub, ti) for ti in t], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-12)
    # Parallel endpoints: the straight line, no division by sin(0).
    np.testing.assert_allclose(sampling.slerp(a, 2 * a, t), (1 + t)[:, None] * a, atol=1e-12)


def test_each_walk_keeps_its_class_and_the_requested_one():
    z = sampling.walk_noise(rows=6, steps=7, latent=8, seed=0, k=CLASSES)
    assert z.shape == (42, 8)
    classes = z[:, :CLASSES].argmax(axis=1).reshape(6, 7)
    np.testing.assert_array_equal(classes, np.repeat(np.arange(6) % CLASSES, 7).reshape(6, 7))
    asked = sampling.walk_noise(rows=4, steps=5, latent=8, seed=0, k=CLASSES, label=2)
    assert set(asked[:, :CLASSES].argmax(axis=1).tolist()) == {2}
    truncated = sampling.walk_noise(rows=4, steps=2, latent=8, seed=0, k=CLASSES, truncation=0.5)
    assert np.abs(truncated).max() <= 0.5  # the endpoints (steps=2: nothing between)
    np.testing.assert_array_equal(sampling.walk_noise(3, 4, 8, seed=5),
                                  sampling.walk_noise(3, 4, 8, seed=5))  # fmt: skip


def test_a_generator_samples_truncated_labelled_and_walks():
    conditional = dataclasses.replace(tiny.MODEL, conditional=True)
    generator = build_generator(conditional, tiny.SHAPE, num_classes=CLASSES)
    fakes, classes = sampling.sample_labelled(generator, 30, seed=0, batch_size=16)
    assert fakes.shape == (30, *tiny.SHAPE) and classes.dtype == np.int64
    np.testing.assert_array_equal(fakes, sampling.sample(generator, 30, seed=0, batch_size=16))
    z = np.random.default_rng(0).standard_normal((30, 8))
    np.testing.assert_array_equal(classes, z[:, :CLASSES].argmax(axis=1))
    _, threes = sampling.sample_labelled(generator, 10, 0, 16, label=2, truncation=0.7)
    assert set(threes.tolist()) == {2}
    walks = sampling.walk(generator, rows=2, steps=4, seed=0, batch_size=16)
    assert walks.shape == (8, *tiny.SHAPE) and walks.dtype == np.uint8
    plain = build_generator(tiny.MODEL, tiny.SHAPE)
    assert sampling.sample_labelled(plain, 4, 0, 4)[1] is None
