import dataclasses

import keras
import numpy as np
import pytest

from gantrack.config import Config, DiscriminatorNetConfig, GeneratorNetConfig, ModelConfig
from gantrack.gan.networks import build_discriminator, build_generator


def _cfg(g_layers, d_layers):
    return dataclasses.replace(
        ModelConfig(latent_dim=16, kernel_size=3),
        generator=GeneratorNetConfig(layers=g_layers, filters=8, max_filters=32),
        discriminator=DiscriminatorNetConfig(layers=d_layers, filters=8, max_filters=32),
    )


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1)])
@pytest.mark.parametrize(("g_layers", "d_layers"), [(3, 1), (4, 2), (6, 5)])
def test_output_shapes_and_ranges(shape, g_layers, d_layers):
    cfg = _cfg(g_layers, d_layers)
    generator, discriminator = build_generator(cfg, shape), build_discriminator(cfg, shape)
    noise = np.random.default_rng(0).standard_normal((5, 16)).astype("float32") * 10
    images = np.asarray(generator(noise, training=False))
    assert images.shape == (5, *shape)
    assert images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    logits = np.asarray(discriminator(images, training=False))
    assert logits.shape == (5, 1)
    assert np.isfinite(logits).all()


def test_layer_counts_add_conv_layers():
    def convs(model):
        return sum("conv" in layer.name for layer in model.layers)

    shape = (28, 28, 1)
    assert convs(build_generator(_cfg(3, 2), shape)) == 3
    assert convs(build_generator(_cfg(5, 2), shape)) == 5
    assert convs(build_discriminator(_cfg(3, 2), shape)) == 2
    assert convs(build_discriminator(_cfg(3, 4), shape)) == 4


@pytest.mark.parametrize(("shape", "convs", "last"), [((28, 28, 1), 2, 7), ((64, 64, 3), 4, 4)])
def test_auto_layers_reach_the_base_size_from_both_ends(shape, convs, last):
    cfg = _cfg("auto", "auto")
    generator, discriminator = build_generator(cfg, shape), build_discriminator(cfg, shape)
    assert sum("conv" in layer.name for layer in generator.layers) == convs
    d_convs = [layer for layer in discriminator.layers if "conv" in layer.name]
    assert len(d_convs) == convs
    assert d_convs[-1].output.shape[1:3] == (last, last)  # the generator's base size
    first_deconv = next(layer for layer in generator.layers if "conv" in layer.name)
    assert first_deconv.input.shape[1:3] == (last, last)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_the_generator_s_hidden_layers_use_the_activation_named(activation):
    cfg = _cfg(3, 2)
    net = dataclasses.replace(cfg.generator, activation=activation)
    cfg = dataclasses.replace(cfg, generator=net)
    generator = build_generator(cfg, (28, 28, 1))
    kinds = [type(layer).__name__ for layer in generator.layers
             if type(layer).__name__ in ("ReLU", "LeakyReLU")]  # fmt: skip
    # The projection and each hidden transposed conv: 1 + (3 - 1).
    assert kinds == [{"relu": "ReLU", "leaky_relu": "LeakyReLU"}[activation]] * 3
    last_hidden = [layer for layer in generator.layers if type(layer).__name__ in kinds][-1]
    features = keras.Model(generator.input, last_hidden.output)
    noise = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
    values = np.asarray(features(noise, training=True))
    assert (values.min() >= 0) == (activation == "relu")  # leaky: negative inputs pass at 0.2


def _conv_widths(model, side="output"):
    convs = [layer for layer in model.layers if "conv" in layer.name]
    return [getattr(layer, side).shape[-1] for layer in convs]


@pytest.mark.parametrize(("shape", "widest"), [((28, 28, 1), 128), ((32, 32, 3), 128),
                                              ((64, 64, 3), 256)])  # fmt: skip
def test_auto_widths_follow_the_image_size(shape, widest):
    cfg = Config().model  # params.yaml's defaults: 32 filters, max_filters auto
    generator, discriminator = build_generator(cfg, shape), build_discriminator(cfg, shape)
    assert _conv_widths(generator, "input")[0] == widest  # the projection at the base size
    d_widths = _conv_widths(discriminator)
    assert max(d_widths) == min(widest, 32 * 2 ** (len(d_widths) - 1))
    narrow = dataclasses.replace(cfg.generator, max_filters=widest // 2)
    explicit = build_generator(dataclasses.replace(cfg, generator=narrow), shape)
    assert _conv_widths(explicit, "input")[0] == widest // 2  # a number is taken as it is


def test_tutorial_settings_build_the_tensorflow_tutorial_dcgan():
    tutorial = {"filters": 64, "max_filters": 256}
    cfg = dataclasses.replace(
        Config().model,
        kernel_size=5,
        generator=GeneratorNetConfig(layers=3, activation="leaky_relu", **tutorial),
        discriminator=DiscriminatorNetConfig(layers=2, dropout=0.3, batch_norm=False, **tutorial),
    )
    generator = build_generator(cfg, (28, 28, 1))
    discriminator = build_discriminator(cfg, (28, 28, 1))
    # Tutorial: Dense 7*7*256 (no bias) + ConvT 128/64/1 (5x5, no bias but the last).
    assert generator.count_params() == 2_330_945
    # Tutorial: Conv 64, Conv 128 (5x5) + Dense 1.
    assert discriminator.count_params() == 212_865


def test_dcgan_paper_settings_build_its_64x64_networks():
    """Radford et al. 2016, 64x64: G projects to 4x4x1024, then 4x4 transposed convs 512, 256,
    128, 3, each doubling the size; D convs 64, 128, 256, 512 halving it, BatchNorm on all but
    the first, no dropout."""
    cfg = dataclasses.replace(
        Config().model,
        kernel_size=4,
        generator=GeneratorNetConfig(layers=4, filters=128, max_filters=1024),
        discriminator=DiscriminatorNetConfig(
            layers=4, filters=64, max_filters=512, dropout=0.0, batch_norm=True
        ),
    )
    generator, discriminator = (
        build_generator(cfg, (64, 64, 3)),
        build_discriminator(cfg, (64, 64, 3)),
    )

    def convs(model):
        return [layer for layer in model.layers if "conv" in layer.name]

    assert generator.get_layer(index=1).units == 4 * 4 * 1024
    assert [c.filters for c in convs(generator)] == [512, 256, 128, 3]
    assert {c.strides for c in convs(generator) + convs(discriminator)} == {(2, 2)}
    assert {c.kernel_size for c in convs(generator) + convs(discriminator)} == {(4, 4)}
    assert [c.filters for c in convs(discriminator)] == [64, 128, 256, 512]
    norms = [layer for layer in discriminator.layers if "batch_normalization" in layer.name]
    assert len(norms) == 3 and not any("dropout" in layer.name for layer in discriminator.layers)
    assert discriminator.get_layer("logit").input.shape[-1] == 4 * 4 * 512
    images = np.asarray(generator(np.zeros((2, 100), "float32"), training=False))
    assert images.shape == (2, 64, 64, 3)
    assert np.asarray(discriminator(images, training=True)).shape == (2, 1)
