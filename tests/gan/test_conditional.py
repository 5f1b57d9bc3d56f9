"""Class-conditional networks: the class travels in the noise, the discriminator projects."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from gantrack.gan import sampling, training
from gantrack.gan.networks import build_discriminator, build_generator
from gantrack.io import keras_files
from gantrack.runtime.errors import UserError

CLASSES = 3
MODEL = dataclasses.replace(tiny.MODEL, conditional=True)


def test_with_classes_moves_each_rows_largest_entry_to_its_class():
    noise = np.random.default_rng(0).standard_normal((500, 8))
    classes = np.random.default_rng(1).integers(0, CLASSES, 500)
    encoded = sampling.with_classes(noise, classes, CLASSES)
    np.testing.assert_array_equal(encoded[:, :CLASSES].argmax(axis=1), classes)
    # A permutation of each row: still a standard-normal draw, given its class.
    np.testing.assert_array_equal(np.sort(encoded, axis=1), np.sort(noise, axis=1))
    np.testing.assert_array_equal(encoded[:, CLASSES:], noise[:, CLASSES:])
    assert not np.shares_memory(encoded, noise)


def test_the_generators_class_is_the_argmax_of_its_first_noise_entries():
    generator = build_generator(MODEL, tiny.SHAPE, num_classes=CLASSES)
    assert sampling.num_classes(generator) == CLASSES
    assert sampling.num_classes(build_generator(tiny.MODEL, tiny.SHAPE)) == 0
    noise = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    same_class = noise.copy()
    same_class[:, CLASSES:] += 1.0  # other entries change the image, not the class
    one_hot = keras.Model(generator.input, generator.get_layer("class").output)
    expected = np.eye(CLASSES)[noise[:, :CLASSES].argmax(axis=1)]
    np.testing.assert_array_equal(one_hot(noise), expected)
    np.testing.assert_array_equal(one_hot(same_class), expected)


def test_the_projection_discriminator_scores_an_image_by_its_label():
    discriminator = build_discriminator(MODEL, tiny.SHAPE, num_classes=CLASSES)
    images = np.random.default_rng(0).uniform(-1, 1, (2, *tiny.SHAPE)).astype("float32")
    embedding = next(w for w in discriminator.weights if "embeddings" in w.path)
    embedding.assign(np.random.default_rng(1).standard_normal(embedding.shape))
    logits = [np.asarray(discriminator([images, np.full(2, c)], training=False)) for c in (0, 1)]
    assert logits[0].shape == (2, 1) and logits[0].dtype == np.float32
    assert not np.allclose(logits[0], logits[1])


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_a_conditional_gan_trains_resumes_and_saves_a_noise_only_generator(tmp_path, policy):
    images = tiny.random_images()
    labels = np.arange(len(images)) % CLASSES
    cfg = tiny.train_cfg(epochs=2, n_critic=2)
    keras.utils.set_random_seed(0)
    gan = training.build_gan(MODEL, cfg, tiny.SHAPE, 0, num_classes=CLASSES, policy=policy)
    dirs = {"checkpoint_dir": tmp_path / "ckpt", "grids_dir": tmp_path / "grids"}
    result = training.fit(gan, images, cfg, seed=0, labels=labels, **dirs)
    assert result.diverged_at is None and len(result.history) == 2
    assert np.isfinite(result.history[["g_loss", "d_loss"]].to_numpy()).all()
    gan.sampler.save(tmp_path / "generator.keras")
    generator = keras.models.load_model(tmp_path / "generator.keras")
    assert generator.input_shape == (None, 8)  # noise alone: sample, serve, score as before
    per_class = sampling.sample_classes(generator, 2, seed=0, batch_size=4)
    assert per_class.shape == (CLASSES * 2, *tiny.SHAPE) and per_class.dtype == np.uint8
    more = dataclasses.replace(cfg, epochs=3)
    with pytest.raises(ValueError, match="labels"):
        training.fit(gan, images, more, seed=0, **dirs)
    keras.utils.set_random_seed(1)
    again = training.build_gan(MODEL, more, tiny.SHAPE, 0, num_classes=CLASSES, policy=policy)
    resumed = training.fit(again, images, more, seed=0, labels=labels, **dirs)
    np.testing.assert_allclose(resumed.history.iloc[:2], result.history)
    assert len(resumed.history) == 3


def test_auto_conditions_where_it_can_and_true_says_why_it_cannot():
    auto = dataclasses.replace(tiny.MODEL, conditional="auto")
    off = dataclasses.replace(tiny.MODEL, conditional=False)
    assert training.conditioning_classes(auto, 3, "non_saturating") == 3
    assert training.conditioning_classes(off, 3, "non_saturating") == 0
    assert training.conditioning_classes(auto, 1, "non_saturating") == 0  # no labels
    assert training.conditioning_classes(auto, 10, "non_saturating") == 0  # 8 noise entries
    assert training.conditioning_classes(auto, 3, "wgan_gp") == 0
    assert training.conditioning_classes(MODEL, 3, "hinge") == 3
    with pytest.raises(UserError, match="no labels"):
        training.conditioning_classes(MODEL, 1, "non_saturating")
    with pytest.raises(UserError, match="latent_dim >= 10"):
        training.conditioning_classes(MODEL, 10, "non_saturating")


def test_the_projection_learns_under_spectral_norm_too():
    model = dataclasses.replace(
        MODEL, discriminator=dataclasses.replace(MODEL.discriminator, spectral_norm=True)
    )
    discriminator = build_discriminator(model, tiny.SHAPE, num_classes=CLASSES)
    images = np.random.default_rng(0).uniform(-1, 1, (2, *tiny.SHAPE)).astype("float32")
    labels = np.array([0, 1], "int32")
    embedding = next(w for w in discriminator.trainable_weights if "embeddings" in w.path)
    with tf.GradientTape() as tape:
        logits = discriminator([images, labels], training=True)
    assert tape.gradient(logits, embedding) is not None
    other = np.asarray(discriminator([images, 1 - labels], training=False))
    assert not np.allclose(np.asarray(discriminator([images, labels], training=False)), other)


CBN = dataclasses.replace(
    MODEL, generator=dataclasses.replace(MODEL.generator, conditional_bn=True)
)


def _class_noise(classes):
    noise = np.random.default_rng(0).standard_normal((len(classes), 8))
    return sampling.with_classes(noise, np.asarray(classes), CLASSES).astype("float32")


def test_conditional_bn_starts_as_plain_batchnorm_and_then_scales_each_class_alone():
    plain = build_generator(MODEL, tiny.SHAPE, num_classes=CLASSES)
    cbn = build_generator(CBN, tiny.SHAPE, num_classes=CLASSES)
    one_hot = cbn.get_layer("class").output
    per_class = [layer for layer in cbn.layers
                 if isinstance(layer, keras.layers.Dense) and layer.input is one_hot]  # fmt: skip
    assert len(per_class) == 2 * 2  # a scale and an offset per BatchNorm (the Dense, one conv)
    # The same convolutions: at the start the per-class scale is 1 and the offset 0 for every
    # class, so both compute the same images.
    kinds = (keras.layers.Dense, keras.layers.Conv2DTranspose)
    mains = [[layer for layer in g.layers if isinstance(layer, kinds) and layer not in per_class]
             for g in (plain, cbn)]  # fmt: skip
    for source, target in zip(*mains, strict=True):
        target.set_weights(source.get_weights())
    noise = _class_noise([0, 1, 2, 1])
    np.testing.assert_allclose(cbn(noise, training=True), plain(noise, training=True), atol=1e-5)
    np.testing.assert_allclose(cbn(noise), plain(noise), atol=1e-5)
    # Class 1's own offset moves class 1's images and no other class's.
    before = np.asarray(cbn(noise))
    offset = next(layer for layer in per_class if not layer.bias.numpy().any())  # bias at 0
    kernel = offset.kernel.numpy()
    kernel[1] += 1.0
    offset.kernel.assign(kernel)
    after = np.asarray(cbn(noise))
    np.testing.assert_allclose(after[[0, 2]], before[[0, 2]], atol=1e-6)
    assert np.abs(after[[1, 3]] - before[[1, 3]]).min() > 0


def test_conditional_bn_trains_in_bfloat16_and_loads_through_the_safe_loader(tmp_path):
    images = tiny.random_images()
    labels = np.arange(len(images)) % CLASSES
    cfg = tiny.train_cfg(epochs=1)
    keras.utils.set_random_seed(0)
    gan = training.build_gan(CBN, cfg, tiny.SHAPE, 0, num_classes=CLASSES,
                             policy="mixed_bfloat16")  # fmt: skip
    dirs = {"checkpoint_dir": tmp_path / "ckpt", "grids_dir": tmp_path / "grids"}
    result = training.fit(gan, images, cfg, seed=0, labels=labels, **dirs)
    assert np.isfinite(result.history[["g_loss", "d_loss"]].to_numpy()).all()
    gan.sampler.save(tmp_path / "generator.keras")
    loaded = keras_files.load(tmp_path / "generator.keras", "the generator")
    noise = _class_noise([0, 1, 2])
    np.testing.assert_allclose(loaded(noise), gan.sampler(noise), atol=1e-6)


def test_conditional_bn_changes_nothing_in_an_unconditional_generator():
    keras.utils.set_random_seed(0)
    plain = build_generator(MODEL, tiny.SHAPE)
    keras.utils.set_random_seed(0)
    cbn = build_generator(CBN, tiny.SHAPE)
    assert [w.shape for w in cbn.weights] == [w.shape for w in plain.weights]
    noise = _class_noise([0, 1])
    np.testing.assert_array_equal(cbn(noise), plain(noise))
