"""`GAN(keras.Model)`: one generator and one discriminator trained together by `fit`.

The step follows the TensorFlow DCGAN tutorial: one batch of noise, one generator forward pass,
and both models updated from the same forward pass (two tapes). Losses are passed in
(gantrack.losses); tracking lives in callbacks, never here.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from gantrack.images import to_uint8


class GAN(keras.Model):
    """Wraps generator (B, latent) -> (B, H, W, C) and discriminator (B, H, W, C) -> (B, 1).

    `fit` takes batches of real images scaled to [-1, 1], float32 (B, H, W, C).
    Metrics per epoch: g_loss, d_loss, d_real and d_fake (mean sigmoid of the logits).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = generator.input_shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in ("g_loss", "d_loss", "d_real", "d_fake")
        }

    def compile(self, g_optimizer, d_optimizer, g_loss_fn, d_loss_fn, **kwargs):
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_loss_fn = g_loss_fn
        self.d_loss_fn = d_loss_fn

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, noise, training=False):
        return self.generator(noise, training=training)

    def train_step(self, data):
        real_images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        batch = ops.shape(real_images)[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake_images = self.generator(noise, training=True)
            real_logits = self.discriminator(real_images, training=True)
            fake_logits = self.discriminator(fake_images, training=True)
            g_loss = self.g_loss_fn(fake_logits)
            d_loss = self.d_loss_fn(real_logits, fake_logits)
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
        values = {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": ops.mean(ops.sigmoid(ops.cast(real_logits, "float32"))),
            "d_fake": ops.mean(ops.sigmoid(ops.cast(fake_logits, "float32"))),
        }
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def sample(generator: keras.Model, n: int, seed: int, batch_size: int) -> np.ndarray:
    """n images from seeded standard-normal noise: uint8 (n, H, W, C)."""
    noise = np.random.default_rng(seed).standard_normal((n, generator.input_shape[-1]))
    fakes = generator.predict(noise.astype(np.float32), batch_size=batch_size, verbose=0)
    return to_uint8(fakes)
