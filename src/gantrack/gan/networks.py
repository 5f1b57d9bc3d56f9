"""DCGAN generator and discriminator built from layer counts (TensorFlow DCGAN tutorial shape).

With 3 generator layers, 2 discriminator layers, 64 filters (max 256), kernel 5 and the
generator's activation leaky_relu the models have the tutorial's layers: Dense 7x7x256 ->
ConvT 128 (stride 1) -> ConvT 64 -> ConvT 1, and Conv 64 -> Conv 128 -> Dense 1. Extra layers
are added at the base resolution (stride 1). The generator's default activation is ReLU (the
DCGAN paper's); the discriminator's is LeakyReLU 0.2 always.

Class-conditional (num_classes > 0): the generator still maps noise alone to an image, so
sampling, serving and scoring need nothing else. Its class is read from the noise, as the
argmax of the first num_classes entries (uniform over the classes for standard-normal noise),
and fed in one-hot beside the noise (Mirza & Osindero 2014); `sampling.with_classes` draws noise
of a chosen class. With `conditional_bn` every BatchNorm of the generator also scales and shifts
by class (conditional BatchNorm). The discriminator takes (image, label) and adds the projection
<embed(label), features> to its logit (Miyato & Koyama 2018, "cGANs with Projection
Discriminator").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers, ops

from gantrack.gan.geometry import layer_count, scale_plan, width_cap

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import DiscriminatorNetConfig, GeneratorNetConfig, ModelConfig


def _widths(n: int, filters: int, max_filters: int) -> list[int]:
    """Filters per layer, doubling with depth from `filters`, capped at `max_filters`."""
    return [min(filters * 2**i, max_filters) for i in range(n)]


CLASS_LAYER = "class"  # the generator's one-hot class layer (its num_tokens: the classes)


def noise_classes(noise, num_classes: int):
    """The classes noise (B, latent_dim) encodes for a generator conditioned on num_classes:
    the argmax of each row's first num_classes entries, (B,) int."""
    return ops.argmax(noise[:, :num_classes], axis=-1)


def build_generator(
    cfg: ModelConfig,
    shape: tuple[int, int, int],
    *,
    num_classes: int = 0,
    synchronized_bn: bool = False,
) -> keras.Model:
    """Generator: noise (B, latent_dim) -> images (B, H, W, C) in [-1, 1], float32.

    The last `n` conv layers upsample 2x (n from `scale_plan`); earlier ones keep the base size.
    num_classes > 0: class-conditional, the class read from the noise (see the module's doc).
    synchronized_bn: BatchNormalization statistics over the global batch under tf.distribute.
    """
    net: GeneratorNetConfig = cfg.generator
    height, width, channels = shape
    base_h, base_w, n_up = scale_plan(height, width)
    n_layers = layer_count(net.layers, height, width)
    # widths listed from the output side: the layer before the output has `filters`.
    cap = width_cap(net.max_filters, height, width)
    hidden = _widths(n_layers, net.filters, cap)
    project, hidden = hidden[-1], list(reversed(hidden[:-1]))
    project = min(project * 2, cap) if n_layers > 1 else project
    x = inputs = keras.Input((cfg.latent_dim,), name="noise")
    one_hot = None
    if num_classes:
        label = noise_classes(inputs, num_classes)
        one_hot = layers.CategoryEncoding(num_classes, "one_hot", name=CLASS_LAYER)(label)
        x = layers.Concatenate()([inputs, one_hot])
    per_class = one_hot if net.conditional_bn else None

    def norm_act(x):
        x = _batch_norm(x, per_class, synchronized_bn)
        return layers.ReLU()(x) if net.activation == "relu" else layers.LeakyReLU(0.2)(x)

    x = layers.Dense(base_h * base_w * project, use_bias=False)(x)
    x = norm_act(x)
    x = layers.Reshape((base_h, base_w, project))(x)
    for i, width_i in enumerate(hidden):
        stride = 2 if i >= n_layers - n_up else 1
        x = layers.Conv2DTranspose(
            width_i, cfg.kernel_size, strides=stride, padding="same", use_bias=False
        )(x)
        x = norm_act(x)
    stride = 2 if n_up > 0 else 1
    x = layers.Conv2DTranspose(channels, cfg.kernel_size, strides=stride, padding="same")(x)
    # float32 output even under a mixed-precision policy: images and losses stay exact.
    outputs = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(inputs, outputs, name="generator")


def _batch_norm(x, one_hot, synchronized_bn: bool):
    """BatchNormalization of x; given the class one-hot (B, K), conditional BatchNorm (de Vries
    et al. 2017, as in Miyato & Koyama 2018's generator): the scale and offset are looked up per
    class (a Dense layer on the one-hot), starting at plain BatchNorm's 1 and 0 for every class."""
    if one_hot is None:
        return layers.BatchNormalization(synchronized=synchronized_bn)(x)
    x = layers.BatchNormalization(center=False, scale=False, synchronized=synchronized_bn)(x)
    channels = x.shape[-1]
    scale = layers.Dense(channels, kernel_initializer="zeros", bias_initializer="ones")(one_hot)
    offset = layers.Dense(channels, kernel_initializer="zeros")(one_hot)
    if len(x.shape) == 4:  # (B, C) -> (B, 1, 1, C): the same per channel at every position
        scale, offset = (layers.Reshape((1, 1, channels))(t) for t in (scale, offset))
    return x * scale + offset


def build_discriminator(
    cfg: ModelConfig,
    shape: tuple[int, int, int],
    *,
    num_classes: int = 0,
    synchronized_bn: bool = False,
) -> keras.Model:
    """Discriminator: images (B, H, W, C) in [-1, 1] -> logits (B, 1), float32 (no sigmoid).

    num_classes > 0: inputs [images, labels (B,) int], and the logit gains the projection term
    <embed(label), features> (Miyato & Koyama 2018).
    With `spectral_norm` every weight layer is wrapped in keras' SpectralNormalization (one
    power iteration per training call); with `batch_norm` every conv but the first is followed
    by BatchNormalization, as in the DCGAN paper's 64x64 discriminator.
    """
    net: DiscriminatorNetConfig = cfg.discriminator
    _, _, n_down = scale_plan(shape[0], shape[1])

    def weights(layer: layers.Layer, **kwargs) -> layers.Layer:
        return layers.SpectralNormalization(layer, **kwargs) if net.spectral_norm else layer

    x = inputs = keras.Input(shape, name="image")
    n_layers = layer_count(net.layers, shape[0], shape[1])
    cap = width_cap(net.max_filters, shape[0], shape[1])
    for i, width_i in enumerate(_widths(n_layers, net.filters, cap)):
        stride = 2 if i < n_down else 1
        x = weights(layers.Conv2D(width_i, cfg.kernel_size, strides=stride, padding="same",
                                  use_bias=not (net.batch_norm and i)))(x)  # fmt: skip
        if net.batch_norm and i:  # not on the first layer (DCGAN paper)
            x = layers.BatchNormalization(synchronized=synchronized_bn)(x)
        x = layers.LeakyReLU(0.2)(x)
        if net.dropout > 0:
            x = layers.Dropout(net.dropout)(x)
    features = layers.Flatten()(x)
    # float32 logits even under a mixed-precision policy.
    logit = layers.Dense(1, dtype="float32", name=None if net.spectral_norm else "logit")
    outputs = (weights(logit, dtype="float32", name="logit") if net.spectral_norm else logit)(
        features
    )
    if not num_classes:
        return keras.Model(inputs, outputs, name="discriminator")
    labels = keras.Input((), dtype="int32", name="label")
    embedding = layers.Embedding(num_classes, features.shape[-1], dtype="float32")
    # Float labels: SpectralNormalization casts its output to its input's dtype (int would
    # truncate every normalised entry to 0); Embedding casts them back to indices itself.
    embed = weights(embedding, dtype="float32")(ops.cast(labels, "float32"))
    projection = ops.sum(embed * ops.cast(features, "float32"), axis=-1, keepdims=True)
    outputs = layers.Add(dtype="float32", name="logit_projected")([outputs, projection])
    return keras.Model([inputs, labels], outputs, name="discriminator")
