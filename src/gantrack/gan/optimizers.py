"""The two Adam optimizers of a GAN, with train.lr_decay's learning-rate schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import TrainConfig


def adam_pair(
    cfg: TrainConfig, loss_scaling: bool, g_steps: int | None
) -> list[keras.optimizers.Optimizer]:
    """Adam for the generator and the discriminator, each with its own rate and betas. With
    cfg.lr_decay the rates fall to cfg.lr_decay_to times themselves at the generator's step
    g_steps (the last step of cfg.epochs; ValueError without it) and the discriminator's
    g_steps * n_critic, and stay there.
    loss_scaling (mixed float16): both wrapped in LossScaleOptimizer."""
    if cfg.lr_decay != "constant" and g_steps is None:
        raise ValueError(f"train.lr_decay {cfg.lr_decay} needs the number of images")
    d_steps = None if g_steps is None else g_steps * cfg.n_critic
    optimizers = [
        keras.optimizers.Adam(_decay(cfg.lr_decay, cfg.lr_g, g_steps, cfg.lr_decay_to),
                              beta_1=cfg.beta1_g, beta_2=cfg.beta2_g),
        keras.optimizers.Adam(_decay(cfg.lr_decay, cfg.lr_d, d_steps, cfg.lr_decay_to),
                              beta_1=cfg.beta1_d, beta_2=cfg.beta2_d),
    ]  # fmt: skip
    if loss_scaling:  # mixed float16: small gradients would underflow unscaled
        optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
    return optimizers


def _decay(kind: str, rate: float, steps: int | None, to: float = 0.0):
    """The learning rate `rate`, constant or falling to `to` * rate at optimizer step `steps`."""
    schedules = keras.optimizers.schedules
    if kind == "linear":
        return schedules.PolynomialDecay(rate, steps, end_learning_rate=rate * to, power=1.0)
    if kind == "cosine":
        return schedules.CosineDecay(rate, steps, alpha=to)
    return rate
