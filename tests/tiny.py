"""A GAN small enough to train in seconds on 8x8x1 images (shared by the training tests)."""

import dataclasses

import keras
import numpy as np

from gantrack.config import Config, DiscriminatorNetConfig, GeneratorNetConfig, ModelConfig
from gantrack.gan import training

SHAPE = (8, 8, 1)
MODEL = ModelConfig(
    latent_dim=8,
    kernel_size=3,
    generator=GeneratorNetConfig(layers=2, filters=8, max_filters=16, conditional_bn=False),
    discriminator=DiscriminatorNetConfig(layers=2, filters=8, max_filters=16),
)


def random_images(n: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def train_cfg(**changes):
    """Default train params at batch 32 with a 2x2 grid every epoch, constant learning rates
    (gan() builds without an image count, which lr_decay needs), plus `changes`."""
    base = dataclasses.replace(Config().train, batch_size=32, sample_every=1, grid_rows=2,
                               lr_decay="constant")  # fmt: skip
    return dataclasses.replace(base, **changes)


def gan(model=MODEL, seed=0, policy=None, **changes):
    """A freshly seeded GAN built with train_cfg(**changes)."""
    keras.utils.set_random_seed(seed)
    return training.build_gan(model, train_cfg(**changes), SHAPE, seed, policy=policy)
