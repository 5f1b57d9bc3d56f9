import keras
import numpy as np
import pytest
import tiny

from gantrack.gan import checkpoints, inputs, training


@pytest.fixture
def images():
    return tiny.random_images()


def test_one_train_step_changes_both_models(images):
    gan = tiny.gan()
    g_before = [w.copy() for w in gan.generator.get_weights()]
    d_before = [w.copy() for w in gan.discriminator.get_weights()]
    logs = gan.train_on_batch(images[:32].astype("float32") / 127.5 - 1.0, return_dict=True)
    # augment_p: the default DiffAugment's adaptive probability
    assert set(logs) == {"g_loss", "d_loss", "d_real", "d_fake", "augment_p"}
    assert all(np.isfinite(v) for v in logs.values())
    g_after, d_after = gan.generator.get_weights(), gan.discriminator.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(g_before, g_after, strict=True))
    assert any(not np.allclose(a, b) for a, b in zip(d_before, d_after, strict=True))


def test_dataset_scales_to_unit_range_and_covers_every_image(images):
    batches = list(inputs.make_dataset(images, 32, seed=0))
    stacked = np.concatenate([b.numpy() for b in batches])
    assert stacked.shape == (96, *tiny.SHAPE)
    assert stacked.min() >= -1.0 and stacked.max() <= 1.0
    expected = np.sort(images.ravel() / 127.5 - 1.0)
    np.testing.assert_allclose(np.sort(stacked.ravel()), expected, atol=1e-6)


@pytest.mark.parametrize("n_critic", [1, 2])
def test_each_epoch_of_the_one_iterator_is_one_reshuffled_pass(n_critic):
    # fit reads every epoch from one iterator over a repeated dataset, steps_per_epoch steps
    # each: an epoch must still be one pass over the images (its last partial step kept, or
    # dropped for n_critic > 1), in a new order each epoch
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    cfg = tiny.train_cfg(batch_size=16, n_critic=n_critic)
    dataset, steps = training.batches(tiny.gan(), images, None, cfg, seed=0)
    assert steps == inputs.steps_per_epoch(cfg, len(images))
    batches = iter(dataset)
    epochs = []
    for _ in range(3):
        batch = [next(batches).numpy() for _ in range(steps)]
        epochs.append(np.round((np.concatenate(batch).ravel() + 1.0) * 127.5).astype(int))
    for seen in epochs:
        if n_critic == 1:
            assert sorted(seen) == list(range(100))
        else:  # 3 whole steps of 32 images: 96 distinct images
            assert len(seen) == 96 and len(set(seen)) == 96
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_an_epoch_trains_exactly_its_steps_whatever_steps_per_execution(
    steps_per_execution, tmp_path
):
    # 100 images in batches of 16: 7 steps an epoch, not a multiple of 3. Keras runs whole
    # executions; an epoch must still end after its 7th step, so that the decay of the learning
    # rates, the epochs of checkpoints and a resume all count the same steps
    images = np.random.default_rng(0).integers(0, 256, (100, *tiny.SHAPE), dtype=np.uint8)
    cfg = tiny.train_cfg(epochs=2, batch_size=16, steps_per_execution=steps_per_execution)
    gan = tiny.gan(epochs=2, batch_size=16, steps_per_execution=steps_per_execution)
    training.fit(gan, images, cfg, seed=0, checkpoint_dir=tmp_path / "ckpt",
                 grids_dir=tmp_path / "grids")  # fmt: skip
    assert int(gan.d_optimizer.iterations.numpy()) == 2 * 7
    assert int(gan.g_optimizer.iterations.numpy()) == 2 * 7


def test_resume_continues_at_the_right_epoch_with_the_same_weights(images, tmp_path):
    ckpt, samples = tmp_path / "ckpt", tmp_path / "samples"
    first = tiny.gan()
    training.fit(first, images, tiny.train_cfg(epochs=2), seed=0, checkpoint_dir=ckpt,
                 grids_dir=samples)  # fmt: skip
    trained = [w.copy() for w in first.generator.get_weights()]
    d_slots = [v.numpy().copy() for v in first.d_optimizer.variables]

    # A fresh process: new random weights, restored from the checkpoint before training on.
    second = tiny.gan(seed=1)
    assert not np.allclose(second.generator.get_weights()[0], trained[0])
    result = training.fit(second, images, tiny.train_cfg(epochs=2), seed=0, checkpoint_dir=ckpt,
                          grids_dir=samples)  # fmt: skip
    for a, b in zip(second.generator.get_weights(), trained, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(second.d_optimizer.variables, d_slots, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    assert list(result.history["epoch"]) == [1, 2]

    third = tiny.gan(seed=2)
    result = training.fit(third, images, tiny.train_cfg(epochs=3), seed=0, checkpoint_dir=ckpt,
                          grids_dir=samples)  # fmt: skip
    assert list(result.history["epoch"]) == [1, 2, 3]  # only epoch 3 was trained
    assert int(third.g_optimizer.iterations) == 3 * 3
    assert sorted(p.name for p in samples.iterdir()) == ["1.png", "2.png", "3.png"]


def test_stale_checkpoints_from_other_params_are_discarded(tmp_path):
    checkpoints.write_state(tmp_path / "ckpt", "old-fingerprint", run_id="abc")
    (tmp_path / "ckpt" / "ckpt-1.index").write_text("x")
    state, discarded = checkpoints.read_state(tmp_path / "ckpt", "new-fingerprint")
    assert state == {} and discarded["run_id"] == "abc"  # so its MLflow run can be closed
    assert not (tmp_path / "ckpt").exists()
    checkpoints.write_state(tmp_path / "ckpt", "same", run_id="abc")
    assert checkpoints.read_state(tmp_path / "ckpt", "same") == (
        {"fingerprint": "same", "run_id": "abc"},
        {},
    )


def test_divergence_stops_training(images, tmp_path):
    gan = tiny.gan()
    gan.g_loss_fn = lambda fake: keras.ops.mean(fake) * np.float32("nan")
    result = training.fit(gan, images, tiny.train_cfg(epochs=3), seed=0,
                          checkpoint_dir=tmp_path / "c", grids_dir=tmp_path / "s")  # fmt: skip
    assert result.diverged_at == 1


@pytest.mark.parametrize(
    ("decay", "n_critic", "to"), [("linear", 1, 0.0), ("cosine", 2, 0.0), ("linear", 1, 0.2)]
)
def test_lr_decay_reaches_its_end_at_the_last_step_and_a_resume_keeps_its_place(
    images, tmp_path, decay, n_critic, to
):
    cfg = tiny.train_cfg(epochs=2, lr_decay=decay, n_critic=n_critic, lr_decay_to=to)
    dirs = {"checkpoint_dir": tmp_path / "ckpt", "grids_dir": tmp_path / "grids"}

    def build(seed):
        keras.utils.set_random_seed(seed)
        return training.build_gan(tiny.MODEL, cfg, tiny.SHAPE, seed, n_images=len(images))

    def rates(gan):
        return [float(gan.g_optimizer.learning_rate), float(gan.d_optimizer.learning_rate)]

    class StopAfterOneEpoch(keras.callbacks.Callback):  # a kill after epoch 1's checkpoint
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    first = build(0)
    assert rates(first) == pytest.approx([cfg.lr_g, cfg.lr_d])
    training.fit(first, images, cfg, seed=0, extra_callbacks=[StopAfterOneEpoch()], **dirs)
    half = [r * (1 + to) / 2 for r in (cfg.lr_g, cfg.lr_d)]  # both shapes: half-way half-way
    assert rates(first) == pytest.approx(half, rel=1e-5)

    again = build(1)  # a new process: the schedule's place comes from the checkpoint
    seen = []
    watch = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: seen.append(rates(again)))
    result = training.fit(again, images, cfg, seed=0, extra_callbacks=[watch], **dirs)
    assert list(result.history["epoch"]) == [1, 2]
    assert seen == [pytest.approx(half, rel=1e-5)]
    assert rates(again) == pytest.approx([to * cfg.lr_g, to * cfg.lr_d], rel=1e-5, abs=1e-12)


def test_lr_decay_needs_the_number_of_images():
    with pytest.raises(ValueError, match="lr_decay linear needs the number of images"):
        training.build_gan(tiny.MODEL, tiny.train_cfg(lr_decay="linear"), tiny.SHAPE, 0)


@pytest.mark.parametrize("content", ["[]", '{"fingerprint": "same", "run_id": 5}', "not json"])
def test_a_state_file_gantrack_did_not_write_is_discarded_not_a_traceback(tmp_path, content):
    checkpoints.write_state(tmp_path / "ckpt", "same", run_id="abc")
    (tmp_path / "ckpt" / checkpoints.STATE_FILE).write_text(content)
    assert checkpoints.read_state(tmp_path / "ckpt", "same") == ({}, {})
    assert not (tmp_path / "ckpt").exists()
