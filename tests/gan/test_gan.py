"""Training options of the GAN step: WGAN-GP with n_critic, EMA, spectral norm, precision."""

import dataclasses
import logging

import keras
import numpy as np
import pandas as pd
import pytest
import tiny

from gantrack.gan import devices, plots, training


@pytest.fixture
def images():
    return tiny.random_images()


def _batch(images):
    return images[:32].astype("float32") / 127.5 - 1.0


def test_wgan_gp_with_n_critic_takes_n_critic_steps_per_generator_step(images, tmp_path):
    changes = {"loss": "wgan_gp", "n_critic": 3, "epochs": 4, "augment_p": 0.2}
    gan = tiny.gan(**changes)
    result = training.fit(gan, images, tiny.train_cfg(**changes), seed=0,
                          checkpoint_dir=tmp_path / "c", grids_dir=tmp_path / "s")  # fmt: skip
    # Each step takes 3 batches of 32: one step per epoch, 3 critic updates and 1 generator one.
    assert int(gan.d_optimizer.iterations) == 4 * 3
    assert int(gan.g_optimizer.iterations) == 4
    assert {"gp", "g_loss", "d_loss"} <= set(result.history.columns)
    assert np.isfinite(result.history[["gp", "g_loss", "d_loss"]].to_numpy()).all()
    assert (result.history["gp"] > 0).all()
    figure = plots.loss_curves(result.history)
    assert [line.get_label() for line in figure.axes[0].lines] == ["g_loss", "d_loss", "gp"]
    assert len(figure.axes) == 2  # no FID while training: no FID panel
    history = result.history.assign(fid_classifier_n100=[float("nan"), 80.0, float("nan"), 60.0])
    (fid,) = plots.loss_curves(history).axes[2].lines
    assert list(fid.get_xdata()) == [2, 4] and list(fid.get_ydata()) == [80.0, 60.0]


def test_gradient_penalty_is_only_added_for_wgan_gp(images):
    assert tiny.gan(loss="wgan_gp", augment=()).gp_weight == 10.0
    assert tiny.gan(loss="hinge").gp_weight == 0.0
    logs = tiny.gan(loss="hinge").train_on_batch(_batch(images), return_dict=True)
    assert "gp" not in logs


@pytest.mark.parametrize("warmup", [10.0, 2.5])
def test_ema_follows_the_warmed_up_average_of_the_generator_weights(images, warmup):
    gan = tiny.gan(ema_decay=0.5, ema_warmup=warmup)
    start = [w.copy() for w in gan.generator.get_weights()]
    np.testing.assert_array_equal(gan.ema_generator.get_weights()[0], start[0])
    gan.train_on_batch(_batch(images))
    decay = min(0.5, (1 + 1) / (warmup + 1))  # warm-up after one generator step
    for average, before, after in zip(
        gan.ema_generator.get_weights(), start, gan.generator.get_weights(), strict=True
    ):
        np.testing.assert_allclose(average, decay * before + (1 - decay) * after, atol=1e-6)
    assert gan.sampler is gan.ema_generator
    plain = tiny.gan(ema_decay=None)
    assert plain.ema_generator is None and plain.sampler is plain.generator  # null: off


def test_ema_weights_are_checkpointed_and_resumed(images, tmp_path):
    ckpt = tmp_path / "ckpt"
    cfg = tiny.train_cfg(ema_decay=0.9, epochs=2)
    first = tiny.gan(ema_decay=0.9)
    training.fit(first, images, cfg, seed=0, checkpoint_dir=ckpt, grids_dir=tmp_path / "s")
    averaged = first.ema_generator.get_weights()
    assert not np.allclose(averaged[0], first.generator.get_weights()[0])
    second = tiny.gan(ema_decay=0.9, seed=1)
    training.fit(second, images, cfg, seed=0, checkpoint_dir=ckpt, grids_dir=tmp_path / "s")
    for a, b in zip(second.ema_generator.get_weights(), averaged, strict=True):
        np.testing.assert_array_equal(a, b)


def test_spectral_norm_keeps_each_discriminator_kernel_near_unit_spectral_norm(images):
    spectral = dataclasses.replace(
        tiny.MODEL, discriminator=dataclasses.replace(tiny.MODEL.discriminator, spectral_norm=True)
    )
    gan = tiny.gan(spectral)
    wrapped = [
        la for la in gan.discriminator.layers if isinstance(la, keras.layers.SpectralNormalization)
    ]
    assert len(wrapped) == 3  # two convs and the logit
    for _ in range(20):  # power iteration converges over training calls
        gan.discriminator(_batch(images), training=True)
    for layer in wrapped:
        kernel = keras.ops.convert_to_numpy(layer.layer.kernel)
        sigma = np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    assert gan.discriminator.output.dtype == "float32"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_keep_float32_images_and_losses(images, policy):
    gan = tiny.gan(policy=policy)
    if policy == "mixed_float16":
        assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    conv = next(la for la in gan.generator.layers if isinstance(la, keras.layers.Conv2DTranspose))
    assert conv.compute_dtype == policy.removeprefix("mixed_")
    assert conv.kernel.dtype == "float32"  # variables stay float32
    logs = gan.train_on_batch(_batch(images), return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert gan.generator(np.zeros((2, 8), "float32")).dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building


def test_mixed_precision_falls_back_to_float32_with_one_warning_unless_auto(monkeypatch, caplog):
    """The CPU's flags are what differs between machines (the one thing faked here)."""
    devices.precision_policy.cache_clear()
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma"})
    with caplog.at_level(logging.WARNING, logger="gantrack.gan.devices"):
        assert devices.precision_policy("auto") == "float32"
        assert not caplog.records  # auto is silent: float32 is the right choice here
        assert devices.precision_policy(True) == "float32"
        assert devices.precision_policy(True) == "float32"
    assert len([r for r in caplog.records if "mixed_precision" in r.message]) == 1
    devices.precision_policy.cache_clear()
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert devices.precision_policy("auto") == "mixed_bfloat16"
    assert devices.precision_policy(True) == "mixed_bfloat16"
    assert devices.precision_policy(False) == "float32"
    devices.precision_policy.cache_clear()


@pytest.mark.parametrize("conditional", [False, True])
def test_lazy_r1_enters_every_r1_every_th_discriminator_update(images, conditional):
    model = dataclasses.replace(tiny.MODEL, conditional=conditional)
    batch = {"x": _batch(images), "y": np.arange(32, dtype="int32") % 3} if conditional else {
        "x": _batch(images)}  # fmt: skip

    def run(steps, **changes):
        keras.utils.set_random_seed(0)
        gan = training.build_gan(model, tiny.train_cfg(**changes), tiny.SHAPE, 0,
                                 num_classes=3 if conditional else 0)  # fmt: skip
        logs = [gan.train_on_batch(**batch, return_dict=True) for _ in range(steps)]
        return logs, [w.numpy() for w in gan.discriminator.trainable_weights]

    logs, _ = run(4, r1_gamma=10.0, r1_every=3)
    r1 = [float(step["r1"]) for step in logs]
    assert r1[0] > 0 and r1[3] > 0 and r1[1] == r1[2] == 0.0  # steps 0 and 3 only
    # Without augmentation the same seed draws the same noise: only the penalty differs.
    _, penalised = run(1, r1_gamma=10.0, augment=())
    plain_logs, plain = run(1, augment=())
    assert "r1" not in plain_logs[0]
    history = pd.DataFrame([step | {"epoch": i + 1} for i, step in enumerate(logs)])
    (ax_loss, _) = plots.loss_curves(history.astype(float)).axes
    assert [line.get_label() for line in ax_loss.lines] == ["g_loss", "d_loss", "r1"]
    assert any(not np.allclose(a, b) for a, b in zip(penalised, plain, strict=True))
