"""GAN losses as pure functions of discriminator logits (TF-GAN naming).

Each variant has `<variant>_generator_loss(fake_logits)` and
`<variant>_discriminator_loss(real_logits, fake_logits, label_smoothing=0.0)`. Inputs are raw
discriminator outputs (B, 1) (logits, no sigmoid); results are scalar means over the batch, in
float32. Adding a loss is one entry in LOSSES, one in loss_traits.TRAITS, plus its tests
(tests/gan/test_losses.py runs every entry through the same checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf
from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def non_saturating_generator_loss(fake_logits):
    """-E[log D(G(z))] = E[softplus(-l_fake)]  (Goodfellow et al. 2014, section 3)."""
    return ops.mean(ops.softplus(-_f32(fake_logits)))


def non_saturating_discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """BCE on logits: -E[y log D(x)] - E[(1 - y) log(1 - D(x))] - E[log(1 - D(G(z)))].

    y = 1 - label_smoothing: one-sided label smoothing (Salimans et al. 2016) softens only the
    real targets; fake targets stay 0.
    """
    real_logits, fake_logits = _f32(real_logits), _f32(fake_logits)
    target = 1.0 - label_smoothing
    # BCE(l, y) = y * softplus(-l) + (1 - y) * softplus(l): stable for large |l|.
    real = target * ops.softplus(-real_logits) + (1.0 - target) * ops.softplus(real_logits)
    return ops.mean(real) + ops.mean(ops.softplus(fake_logits))


def minimax_generator_loss(fake_logits):
    """E[log(1 - D(G(z)))] = -E[softplus(l_fake)]: the original saturating minimax objective."""
    return -ops.mean(ops.softplus(_f32(fake_logits)))


def minimax_discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Same discriminator objective as the non-saturating game."""
    return non_saturating_discriminator_loss(real_logits, fake_logits, label_smoothing)


def least_squares_generator_loss(fake_logits):
    """1/2 E[(D(G(z)) - 1)^2]  (LSGAN, Mao et al. 2017, a=0, b=c=1)."""
    return 0.5 * ops.mean(ops.square(_f32(fake_logits) - 1.0))


def least_squares_discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]. Label smoothing does not apply."""
    del label_smoothing
    real = ops.mean(ops.square(_f32(real_logits) - 1.0))
    return 0.5 * real + 0.5 * ops.mean(ops.square(_f32(fake_logits)))


def hinge_generator_loss(fake_logits):
    """-E[D(G(z))]  (Lim & Ye 2017; Miyato et al. 2018)."""
    return -ops.mean(_f32(fake_logits))


def hinge_discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]. Label smoothing does not apply."""
    del label_smoothing
    real = ops.mean(ops.relu(1.0 - _f32(real_logits)))
    return real + ops.mean(ops.relu(1.0 + _f32(fake_logits)))


def wgan_gp_generator_loss(fake_logits):
    """-E[D(G(z))]  (Arjovsky et al. 2017): the critic's score of fakes, maximised."""
    return -ops.mean(_f32(fake_logits))


def wgan_gp_discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """E[D(G(z))] - E[D(x)]: the critic loss. The training step adds
    gp_weight * `gradient_penalty` (Gulrajani et al. 2017), the Lipschitz constraint that makes
    it estimate the Wasserstein-1 distance. Label smoothing does not apply."""
    del label_smoothing
    return ops.mean(_f32(fake_logits)) - ops.mean(_f32(real_logits))


def gradient_penalty(critic, real_images, fake_images, alpha):
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = real + alpha * (fake - real).

    alpha (B, 1, 1, 1) holds one interpolation weight per pair, drawn from U(0, 1) by the
    caller. The norm is taken over each image's pixels; 1e-12 keeps its gradient finite at 0.
    """
    x_hat = real_images + alpha * (fake_images - real_images)
    squared = _squared_gradient_norms(lambda x: critic(x, training=True), x_hat)
    return ops.mean(ops.square(ops.sqrt(squared + 1e-12) - 1.0))


def r1_penalty(critic, real_images):
    """E[||grad_x D(x)||_2^2] over real images x (Mescheder et al. 2018, R1): the
    discriminator's gradient on the data, pushed towards 0 (zero-centred; any loss).

    critic maps images to logits (B, 1); the caller weights the result by gamma / 2.
    """
    return ops.mean(_squared_gradient_norms(critic, real_images))


def _squared_gradient_norms(critic, images):
    """||grad_x critic(x)||_2^2 of each image x (B,), float32, recorded by the caller's tapes."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = _f32(critic(images))
    grads = _f32(tape.gradient(scores, images))
    return ops.sum(ops.square(grads), axis=(1, 2, 3))


@dataclass(frozen=True)
class Loss:
    """A GAN loss variant: generator(fake_logits) and discriminator(real_logits, fake_logits,
    label_smoothing). What it asks of the rest of the GAN (the gradient penalty, the real/fake
    boundary) is its entry in loss_traits.TRAITS, which config reads without TensorFlow."""

    generator: Callable
    discriminator: Callable


LOSSES: dict[str, Loss] = {
    "non_saturating": Loss(non_saturating_generator_loss, non_saturating_discriminator_loss),
    "minimax": Loss(minimax_generator_loss, minimax_discriminator_loss),
    "least_squares": Loss(least_squares_generator_loss, least_squares_discriminator_loss),
    "hinge": Loss(hinge_generator_loss, hinge_discriminator_loss),
    "wgan_gp": Loss(wgan_gp_generator_loss, wgan_gp_discriminator_loss),
}
