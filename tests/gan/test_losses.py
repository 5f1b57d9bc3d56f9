import math

import numpy as np
import pytest
import tensorflow as tf

from gantrack.config import TrainConfig
from gantrack.gan import losses
from gantrack.gan.loss_traits import TRAITS


def _np(x):
    return float(np.asarray(x))


def sp(x):
    return math.log1p(math.exp(x))


REAL = np.array([[2.0], [-1.0]], np.float32)
FAKE = np.array([[0.5], [-3.0]], np.float32)


def test_non_saturating_matches_hand_computed_bce():
    # D loss = mean(-log sigmoid(real)) + mean(-log(1 - sigmoid(fake)))
    expected_d = (sp(-2.0) + sp(1.0)) / 2 + (sp(0.5) + sp(-3.0)) / 2
    assert _np(losses.non_saturating_discriminator_loss(REAL, FAKE)) == pytest.approx(expected_d)
    expected_g = (sp(-0.5) + sp(3.0)) / 2
    assert _np(losses.non_saturating_generator_loss(FAKE)) == pytest.approx(expected_g)


def test_one_sided_label_smoothing_changes_only_real_targets():
    y = 0.9
    real = [y * sp(-r) + (1 - y) * sp(r) for r in (2.0, -1.0)]
    expected = sum(real) / 2 + (sp(0.5) + sp(-3.0)) / 2
    got = losses.non_saturating_discriminator_loss(REAL, FAKE, label_smoothing=0.1)
    assert _np(got) == pytest.approx(expected, rel=1e-6)


def test_minimax_least_squares_hinge_wgan_gp():
    assert _np(losses.minimax_generator_loss(FAKE)) == pytest.approx(-(sp(0.5) + sp(-3.0)) / 2)
    assert _np(losses.least_squares_generator_loss(FAKE)) == pytest.approx(
        0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2
    )
    assert _np(losses.least_squares_discriminator_loss(REAL, FAKE)) == pytest.approx(
        0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.5**2 + 3**2) / 2
    )
    assert _np(losses.hinge_discriminator_loss(REAL, FAKE)) == pytest.approx(
        (0 + 2) / 2 + (1.5 + 0) / 2
    )
    assert _np(losses.hinge_generator_loss(FAKE)) == pytest.approx(1.25)
    assert _np(losses.wgan_gp_discriminator_loss(REAL, FAKE)) == pytest.approx(-1.25 - 0.5)


def test_bce_is_stable_for_huge_logits():
    huge = np.array([[1e4], [-1e4]], np.float32)
    assert math.isfinite(_np(losses.non_saturating_discriminator_loss(huge, huge)))
    assert math.isfinite(_np(losses.non_saturating_generator_loss(huge)))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_registered_loss_is_a_scalar_float32_that_rewards_the_right_side(name):
    """What the training step relies on from any loss: scalar float32 results from (B, 1)
    logits, finite for huge logits, and gradients pointing the right way: the generator's loss
    falls as D scores fakes higher; the discriminator's falls as it scores reals higher and
    fakes lower (with and without label smoothing)."""
    loss = losses.LOSSES[name]
    low, high = np.full((4, 1), -1.0, np.float32), np.full((4, 1), 1.0, np.float32)
    for value in (loss.generator(low), loss.discriminator(low, high)):
        assert value.dtype == "float32" and tuple(value.shape) == ()
    assert _np(loss.generator(high)) < _np(loss.generator(low))
    for smoothing in (0.0, 0.1):
        good = _np(loss.discriminator(high, low, label_smoothing=smoothing))
        assert good < _np(loss.discriminator(low, high, label_smoothing=smoothing))
    huge = np.array([[1e4], [-1e4]], np.float32)
    assert math.isfinite(_np(loss.generator(huge)))
    assert math.isfinite(_np(loss.discriminator(huge, huge)))


def test_every_loss_has_its_traits_and_params_accept_exactly_those():
    assert set(losses.LOSSES) == set(TRAITS)
    assert TrainConfig.__dataclass_fields__["loss"].metadata["choices"] == tuple(TRAITS)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_the_boundary_is_where_the_discriminator_treats_real_and_fake_alike(name):
    """Adaptive augmentation calls an image real when D(x) > boundary: the discriminator's loss
    mirror there, costing a real at boundary + t what it costs a fake at boundary - t, so
    D(real=b+t, fake=b-s) == D(real=b+s, fake=b-t) (t past hinge's margin, where a shifted b
    would mirror too). A critic's loss mirrors at every b (its scores count only as
    differences): it has no boundary."""
    d = losses.LOSSES[name].discriminator

    def mirrors(b):
        one = d(np.float32([[b + 1.5]]), np.float32([[b - 0.2]]))
        other = d(np.float32([[b + 0.2]]), np.float32([[b - 1.5]]))
        return _np(one) == pytest.approx(_np(other), abs=1e-6)

    boundary = TRAITS[name].boundary
    if boundary is None:
        assert all(mirrors(b) for b in (-1.0, 0.0, 0.5, 3.0)) and TRAITS[name].gradient_penalty
    else:
        assert mirrors(boundary) and not mirrors(boundary + 0.3) and not mirrors(boundary - 0.3)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_label_smoothing_is_a_trait_exactly_where_it_changes_the_loss(name):
    """Config refuses train.label_smoothing with a loss whose trait says it does not apply:
    the trait must say so exactly where the discriminator's loss ignores it."""
    d = losses.LOSSES[name].discriminator
    changes = _np(d(REAL, FAKE, label_smoothing=0.2)) != pytest.approx(_np(d(REAL, FAKE)))
    assert changes == TRAITS[name].label_smoothing


def test_wgan_gp_generator_loss_is_minus_the_mean_critic_score():
    assert _np(losses.wgan_gp_generator_loss(FAKE)) == pytest.approx(-(0.5 - 3.0) / 2)


def _linear_critic(w):
    """D(x) = sum(w * x) per image: its gradient is w everywhere, so the penalty is known."""
    return lambda x, training=False: tf.reduce_sum(x * w, axis=(1, 2, 3))[:, None]


def test_gradient_penalty_of_a_linear_critic_is_its_squared_norm_distance_to_one():
    w = tf.constant(np.full((1, 2, 2, 1), 1.5, np.float32))  # ||w|| = 3
    real = tf.zeros((3, 2, 2, 1))
    fake = tf.ones((3, 2, 2, 1))
    alpha = tf.constant(np.array([0.1, 0.5, 0.9], np.float32).reshape(3, 1, 1, 1))
    penalty = losses.gradient_penalty(_linear_critic(w), real, fake, alpha)
    assert _np(penalty) == pytest.approx((3.0 - 1.0) ** 2)
    unit = tf.constant(np.full((1, 2, 2, 1), 0.5, np.float32))  # ||w|| = 1: 1-Lipschitz
    assert _np(losses.gradient_penalty(_linear_critic(unit), real, fake, alpha)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_gradient_penalty_is_taken_at_the_interpolates():
    """D(x) = sum(x^2)/2 has gradient x: at x_hat = alpha * fake (real = 0) the norm is
    alpha * ||fake||, so each pair's penalty depends on its own alpha."""
    critic = lambda x, training=False: 0.5 * tf.reduce_sum(x * x, axis=(1, 2, 3))[:, None]  # noqa: E731
    real = tf.zeros((2, 1, 2, 1))
    fake = tf.constant(np.array([[3.0, 4.0], [6.0, 8.0]], np.float32).reshape(2, 1, 2, 1))
    alpha = tf.constant(np.array([0.2, 0.5], np.float32).reshape(2, 1, 1, 1))
    expected = ((0.2 * 5 - 1) ** 2 + (0.5 * 10 - 1) ** 2) / 2
    assert _np(losses.gradient_penalty(critic, real, fake, alpha)) == pytest.approx(expected)


def test_r1_penalty_is_the_mean_squared_gradient_norm_on_the_reals():
    """D(x) = sum(x^2)/2 has gradient x: the penalty is the mean of ||x||^2 over the reals."""
    critic = lambda x: 0.5 * tf.reduce_sum(x * x, axis=(1, 2, 3))[:, None]  # noqa: E731
    real = tf.constant(np.array([[3.0, 4.0], [6.0, 8.0]], np.float32).reshape(2, 1, 2, 1))
    assert _np(losses.r1_penalty(critic, real)) == pytest.approx((25 + 100) / 2)
    w = tf.constant(np.full((1, 1, 2, 1), 1.5, np.float32))
    assert _np(losses.r1_penalty(_linear_critic(w), real)) == pytest.approx(4.5)
