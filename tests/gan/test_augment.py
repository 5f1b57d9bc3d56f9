"""DiffAugment: random, differentiable transforms of what the discriminator sees."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

from gantrack.gan import augment, checkpoints, training


def _seed():
    return keras.random.SeedGenerator(0)


def _dots(n=64, size=16):
    """Images of -1 with one bright pixel at the centre."""
    images = np.full((n, size, size, 1), -1.0, "float32")
    images[:, size // 2, size // 2] = 1.0
    return images


def test_translation_moves_each_image_by_whole_pixels_within_an_eighth():
    moved = np.asarray(augment.translation(_dots(), _seed()))
    assert moved.shape == (64, 16, 16, 1)
    bright = np.argwhere(moved[..., 0] == 1.0)
    assert np.array_equal(bright[:, 0], np.arange(64))  # one bright pixel in each image
    shifts = bright[:, 1:] - 8
    assert np.abs(shifts).max() == 2  # 16 / 8
    assert len({tuple(s) for s in shifts}) > 10  # drawn per image
    # Nothing else changes but the zeros shifted in at the border.
    assert set(np.unique(moved)) <= {-1.0, 0.0, 1.0}


def test_cutout_zeroes_one_square_of_half_the_side_per_image():
    ones = np.ones((64, 16, 16, 1), "float32")
    cut = np.asarray(augment.cutout(ones, _seed()))
    zeros = (cut == 0).sum(axis=(1, 2, 3))
    assert zeros.max() == 8 * 8 and zeros.min() > 0  # cut off by the border at most
    assert set(np.unique(cut)) == {0.0, 1.0}
    rows, cols = np.nonzero(cut[zeros.argmax(), ..., 0] == 0)
    assert np.ptp(rows) == 7 and np.ptp(cols) == 7  # a square


def test_color_shifts_and_scales_each_image_and_leaves_grey_images_grey():
    images = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32")
    coloured = np.asarray(augment.color(images, _seed()))
    assert not np.allclose(coloured, images)
    # Brightness and contrast are affine per image: each image is a*x + b of itself.
    for x, y in zip(images[:4], coloured[:4], strict=True):
        a, b = np.polyfit(x.ravel(), y.ravel(), 1)
        np.testing.assert_allclose(a * x + b, y, atol=1e-4)
    rgb = np.repeat(images, 3, axis=-1)
    out = np.asarray(augment.color(rgb, _seed()))
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)  # saturation of grey: none


def test_each_transform_passes_gradients_to_the_images():
    images = tf.Variable(np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 3)).astype("float32"))
    for name in augment.AUGMENTS:
        with tf.GradientTape() as tape:
            out = augment.augment(images, (name,), 1.0, _seed())
            loss = tf.reduce_sum(out * out)
        grad = tape.gradient(loss, images)
        assert grad is not None and np.abs(grad.numpy()).sum() > 0, name


def test_probability_p_leaves_the_other_images_untouched():
    images = np.random.default_rng(0).uniform(-1, 1, (400, 8, 8, 1)).astype("float32")
    out = np.asarray(augment.augment(images, ("color",), 0.25, _seed()))
    changed = ~np.isclose(out, images).all(axis=(1, 2, 3))
    assert 0.15 < changed.mean() < 0.35


@pytest.mark.parametrize(
    ("p", "low", "high"), [(0.0, 0.0, 0.0), (0.25, 0.15, 0.35), (1.0, 1.0, 1.0)]
)
def test_an_adaptive_p_transforms_that_share_of_the_images_and_passes_gradients(p, low, high):
    """p as adaptive augmentation holds it, a variable read inside the traced step."""
    images = tf.Variable(np.random.default_rng(0).uniform(-1, 1, (400, 8, 8, 1)).astype("float32"))
    variable, seed = tf.Variable(p), _seed()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out = augment.augment(images, ("color",), variable, seed)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, images)

    out, grad = (np.asarray(x) for x in step())
    changed = ~np.isclose(out, images.numpy()).all(axis=(1, 2, 3))
    assert low <= changed.mean() <= high
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_train_augment_reaches_the_discriminator_of_a_training_gan(tmp_path, policy):
    images = tiny.random_images()

    def trained(**changes):
        cfg = tiny.train_cfg(epochs=1, **changes)
        keras.utils.set_random_seed(0)
        gan = training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, 0, policy=policy)
        result = training.fit(gan, images, cfg, seed=0, checkpoint_dir=tmp_path / str(changes),
                              grids_dir=tmp_path / "grids")  # fmt: skip
        assert np.isfinite(result.history[["g_loss", "d_loss"]].to_numpy()).all()
        return gan.discriminator.get_weights()

    plain, again = trained(augment=()), trained(augment=())
    augmented = trained(augment=("color", "translation", "cutout"), augment_p=0.5)
    for a, b in zip(plain, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed trains the same weights
    assert any(not np.allclose(a, b) for a, b in zip(plain, augmented, strict=True))


def _adaptive_run(tmp_path, images, epochs, **changes):
    """A tiny GAN with adaptive augmentation (0.1 of p per 32-image step) trained `epochs`
    epochs on images, checkpointed every epoch; returns (gan, its augment_p per epoch)."""
    cfg = tiny.train_cfg(epochs=epochs, augment=("translation", "cutout"), augment_p="adaptive",
                         augment_images=320, lr_d=0.01, **changes)  # fmt: skip
    keras.utils.set_random_seed(0)
    gan = training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, 0)
    result = training.fit(gan, images, cfg, seed=0, checkpoint_dir=tmp_path / "checkpoints",
                          grids_dir=tmp_path / "grids")  # fmt: skip
    return gan, result.history["augment_p"].tolist()


def test_adaptive_p_rises_while_the_discriminator_memorises_and_a_resume_keeps_it(tmp_path):
    # 32 images, a fast discriminator: it soon calls nearly every real image real, above the
    # 0.6 target, so p climbs from 0 (ADA's overfitting signal)
    images = tiny.random_images(32)
    gan, p = _adaptive_run(tmp_path, images, epochs=6)
    assert p[0] < p[-1] and 0.0 < p[-1] <= 1.0
    assert float(gan.augment_p.numpy()) == pytest.approx(p[-1])
    # A fresh GAN restored from the checkpoint has the same p (a resume does not restart at 0).
    keras.utils.set_random_seed(1)
    fresh = training.build_gan(tiny.MODEL, tiny.train_cfg(augment_p="adaptive"), tiny.SHAPE, 1)
    assert float(fresh.augment_p.numpy()) == 0.0
    checkpoints.restore(fresh, tmp_path / "checkpoints")
    assert float(fresh.augment_p.numpy()) == pytest.approx(p[-1])


def test_adaptive_p_falls_while_the_discriminator_stays_below_the_target(tmp_path):
    # a target no batch reaches (every real image called real): p only falls, by 0.1 a step
    images = tiny.random_images(96)
    cfg = tiny.train_cfg(epochs=1, augment=("cutout",), augment_p="adaptive",
                         augment_images=320, augment_target=0.999)  # fmt: skip
    keras.utils.set_random_seed(0)
    gan = training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, 0)
    gan.augment_p.assign(1.0)
    result = training.fit(gan, images, cfg, seed=0, checkpoint_dir=tmp_path / "checkpoints",
                          grids_dir=tmp_path / "grids")  # fmt: skip
    assert result.history["augment_p"].tolist() == pytest.approx([0.7])  # 3 steps of 32


@pytest.mark.parametrize("loss, p_after", [("least_squares", 0.2), ("non_saturating", 0.8),
                                           ("hinge", 0.8)])  # fmt: skip
def test_adaptive_p_steers_by_the_losss_real_fake_boundary(tmp_path, loss, p_after):
    # A discriminator held at 0.3 for every image: real by the logit losses' boundary (0), fake
    # by least squares' (0.5, between its targets 0 and 1), so p rises or falls by 0.1 a step
    cfg = tiny.train_cfg(epochs=1, loss=loss, lr_d=1e-9, augment=("cutout",), augment_p="adaptive",
                         augment_images=320, mixed_precision=False)  # fmt: skip
    keras.utils.set_random_seed(0)
    gan = training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, 0)
    logit = gan.discriminator.get_layer("logit")
    kernel, bias = logit.get_weights()
    logit.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.3)])
    gan.augment_p.assign(0.5)
    result = training.fit(gan, tiny.random_images(96), cfg, seed=0,
                          checkpoint_dir=tmp_path / "c", grids_dir=tmp_path / "g")  # fmt: skip
    assert result.history["augment_p"].tolist() == pytest.approx([p_after])  # 3 steps of 32
    # a critic's scores have no such boundary: adaptive is refused with wgan_gp
    with pytest.raises(ValueError, match="needs a loss with a real/fake boundary"):
        training.build_gan(tiny.MODEL, tiny.train_cfg(loss="wgan_gp", augment_p="adaptive"),
                           tiny.SHAPE, 0)  # fmt: skip


def test_a_fixed_p_keeps_no_state_and_logs_no_augment_p(tmp_path):
    cfg = tiny.train_cfg(epochs=1, augment=("cutout",), augment_p=0.5)
    gan = training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, 0)
    assert gan.augment_p == 0.5 and not gan.adaptive
    result = training.fit(gan, tiny.random_images(), cfg, seed=0,
                          checkpoint_dir=tmp_path / "c", grids_dir=tmp_path / "g")  # fmt: skip
    assert "augment_p" not in result.history
