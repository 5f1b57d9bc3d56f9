"""The reference: the TensorFlow DCGAN tutorial (tensorflow.org/tutorials/generative/dcgan).

Models, losses, optimizers, input pipeline and training loop as the tutorial writes them: a
GradientTape step in tf.function, called from a Python loop over a shuffled, batched
tf.data.Dataset of float32 images in [-1, 1]. Only the 28x28x1 shape is the tutorial's own.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers

BATCH_SIZE = 256
NOISE_DIM = 100


def make_generator_model() -> keras.Model:
    model = keras.Sequential()
    model.add(keras.Input((NOISE_DIM,)))
    model.add(layers.Dense(7 * 7 * 256, use_bias=False))
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU())
    model.add(layers.Reshape((7, 7, 256)))
    model.add(layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False))
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU())
    model.add(layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False))
    model.add(layers.BatchNormalization())
    model.add(layers.LeakyReLU())
    model.add(
        layers.Conv2DTranspose(
            1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh"
        )
    )
    return model


def make_discriminator_model() -> keras.Model:
    model = keras.Sequential()
    model.add(keras.Input((28, 28, 1)))
    model.add(layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"))
    model.add(layers.LeakyReLU())
    model.add(layers.Dropout(0.3))
    model.add(layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"))
    model.add(layers.LeakyReLU())
    model.add(layers.Dropout(0.3))
    model.add(layers.Flatten())
    model.add(layers.Dense(1))
    return model


class ReferenceDCGAN:
    """The tutorial's models, optimizers and train_step, on uint8 (N, 28, 28, 1) images."""

    def __init__(self, seed: int = 0):
        keras.utils.set_random_seed(seed)
        self.generator = make_generator_model()
        self.discriminator = make_discriminator_model()
        self.cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
        self.generator_optimizer = keras.optimizers.Adam(1e-4)
        self.discriminator_optimizer = keras.optimizers.Adam(1e-4)
        self.train_step = tf.function(self._train_step)

    def discriminator_loss(self, real_output, fake_output):
        real_loss = self.cross_entropy(tf.ones_like(real_output), real_output)
        fake_loss = self.cross_entropy(tf.zeros_like(fake_output), fake_output)
        return real_loss + fake_loss

    def generator_loss(self, fake_output):
        return self.cross_entropy(tf.ones_like(fake_output), fake_output)

    def _train_step(self, images):
        noise = tf.random.normal([BATCH_SIZE, NOISE_DIM])
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = self.generator(noise, training=True)
            real_output = self.discriminator(images, training=True)
            fake_output = self.discriminator(generated_images, training=True)
            gen_loss = self.generator_loss(fake_output)
            disc_loss = self.discriminator_loss(real_output, fake_output)
        gradients_of_generator = gen_tape.gradient(gen_loss, self.generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(
            disc_loss, self.discriminator.trainable_variables
        )
        self.generator_optimizer.apply_gradients(
            zip(gradients_of_generator, self.generator.trainable_variables, strict=True)
        )
        self.discriminator_optimizer.apply_gradients(
            zip(gradients_of_discriminator, self.discriminator.trainable_variables, strict=True)
        )
        return gen_loss, disc_loss

    @staticmethod
    def dataset(images: np.ndarray) -> tf.data.Dataset:
        """The tutorial's input pipeline: float32 in [-1, 1], shuffle(60000), batch(256)."""
        train_images = (images.astype("float32") - 127.5) / 127.5
        return tf.data.Dataset.from_tensor_slices(train_images).shuffle(60000).batch(BATCH_SIZE)

    def train(self, images: np.ndarray, seconds: float | None = None, epochs: int | None = None):
        """The tutorial's loop; stops after `epochs` or at the first step past `seconds`.

        Returns (images trained on, seconds spent). drop_remainder is not set, as in the
        tutorial: the last, smaller batch of an epoch retraces the step once.
        """
        dataset = self.dataset(images)
        seen, start, epoch = 0, time.perf_counter(), 0
        while epochs is None or epoch < epochs:
            for image_batch in dataset:
                self.train_step(image_batch)
                seen += int(image_batch.shape[0])
                if seconds is not None and time.perf_counter() - start >= seconds:
                    return seen, time.perf_counter() - start
            epoch += 1
        return seen, time.perf_counter() - start
