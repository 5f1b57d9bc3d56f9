"""tf.distribute: the CPU is split into 2 logical devices (in a child process: the split must
happen before TensorFlow initialises its devices), and a MirroredStrategy step must match the
single-device step."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gantrack.gan import devices
from gantrack.runtime.errors import UserError

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from gantrack.gan import devices, training
    from gantrack.config import Config, DiscriminatorNetConfig, GeneratorNetConfig, ModelConfig

    model = ModelConfig(
        latent_dim=8, kernel_size=3,
        generator=GeneratorNetConfig(layers=2, filters=8, max_filters=16),
        discriminator=DiscriminatorNetConfig(layers=2, filters=8, max_filters=16, dropout=0.0,
                                             **json.loads(sys.argv[2])),
    )
    changes = json.loads(sys.argv[1])
    # float32 everywhere: bf16 rounding (auto picks it on CPUs with bf16) would hide a mismatch
    cfg = dataclasses.replace(Config().train, batch_size=32, mixed_precision=False, **changes)
    images = np.random.default_rng(0).uniform(-1, 1, (64, 8, 8, 1)).astype("float32")

    def run(name):
        keras.utils.set_random_seed(0)
        strategy = devices.strategy(name)
        gan = training.build_gan(model, cfg, (8, 8, 1), 0, strategy=strategy, n_images=64)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(32)
        history = gan.fit(dataset, epochs=1, verbose=0).history
        weights = gan.generator.get_weights() + gan.discriminator.get_weights()
        if gan.ema_generator is not None:
            weights += gan.ema_generator.get_weights()
        return strategy.num_replicas_in_sync, weights, {k: v[-1] for k, v in history.items()}

    n1, single, logs1 = run("default")
    n2, mirrored, logs2 = run("mirrored")
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored, strict=True))
    moved = max(float(np.max(np.abs(a))) for a in single)
    print(json.dumps({"replicas": [n1, n2], "max_abs_diff": diff, "logs": [logs1, logs2]}))
    """
)


def _run(changes: dict, discriminator: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(changes), json.dumps(discriminator or {})],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_mirrored_steps_on_two_cpu_devices_match_the_single_device_steps():
    # DiffAugment off: its random draws are per replica, not sliced from one global draw
    result = _run({"augment": []})
    assert result["replicas"] == [1, 2]
    # Two steps: per-replica halves of each batch, gradients summed over replicas and
    # BatchNormalization synchronized give the single-device update up to float rounding.
    assert result["max_abs_diff"] < 1e-5
    single, mirrored = result["logs"]
    for name in ("g_loss", "d_loss"):
        assert abs(single[name] - mirrored[name]) < 1e-4


def test_mirrored_n_critic_and_ema_match_the_single_device_run():
    result = _run({"n_critic": 2, "ema_decay": 0.9, "loss": "hinge", "augment": []})
    assert result["replicas"] == [1, 2]
    assert result["max_abs_diff"] < 1e-5


def test_mirrored_lazy_r1_matches_the_single_device_run():
    # R1 due on the first of two critic steps. Without BatchNorm in D: with it, each image's
    # logit depends on the others', and a replica's R1 sees only its own images' logits.
    changes = {"n_critic": 2, "augment": [], "r1_gamma": 1.0, "r1_every": 2}
    result = _run(changes, {"batch_norm": False})
    assert result["replicas"] == [1, 2]
    assert result["max_abs_diff"] < 1e-5


def test_mirrored_adaptive_augmentation_moves_one_p_for_all_replicas():
    # p is one mirrored variable: each step's update uses the global batch's signal
    result = _run({"augment_images": 64})  # the default adaptive DiffAugment, 0.5 a step
    assert result["replicas"] == [1, 2]
    for logs in result["logs"]:
        assert logs["augment_p"] in (0.0, 0.5, 1.0)  # whole steps from 0: no half-applied mean
        assert all(math.isfinite(value) for value in logs.values())


WORKER = textwrap.dedent(
    """
    import dataclasses, json, sys
    import numpy as np
    import keras
    from gantrack.gan import devices, inputs, training
    from gantrack.config import Config, DiscriminatorNetConfig, GeneratorNetConfig, ModelConfig

    model = ModelConfig(
        latent_dim=8, kernel_size=3,
        generator=GeneratorNetConfig(layers=2, filters=8, max_filters=16),
        discriminator=DiscriminatorNetConfig(layers=2, filters=8, max_filters=16),
    )
    cfg = dataclasses.replace(Config().train, batch_size=32, strategy="multi_worker_mirrored")
    keras.utils.set_random_seed(0)
    gan = training.build_gan(model, cfg, (8, 8, 1), 0, n_images=128)  # lr_decay counts steps
    images = np.random.default_rng(0).integers(0, 256, (128, 8, 8, 1), dtype=np.uint8)
    gan.fit(inputs.make_dataset(images, 32, seed=0), epochs=1, verbose=0)
    weights = gan.generator.get_weights()
    print(json.dumps({
        "replicas": gan.distribute_strategy.num_replicas_in_sync,
        "checksum": float(sum(np.abs(w).sum() for w in weights)),
    }))
    """
)


def test_multi_worker_mirrored_trains_one_model_across_two_processes():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env={
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["replicas"] for r in results] == [2, 2]
    # Both workers hold the same weights after training: gradients were summed across them.
    assert results[0]["checksum"] == results[1]["checksum"]


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ({"cluster": "x", "task": {}}, 'TF_CONFIG: "cluster" must map task types to lists'),
        ({"cluster": {"worker": [5]}, "task": {"type": "worker", "index": 0}}, "lists of"),
        ({"cluster": {}, "task": {}}, 'TF_CONFIG: "cluster" must map'),
        ({"cluster": {"worker": ["h:1"]}, "task": {"type": "evaluator", "index": 0}},
         "\"task\" \"type\" must be chief or worker, one of the cluster's, got 'evaluator'"),
        ({"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 5}},
         '"task" "index" 5 is out of range; the cluster has 2 worker task(s)'),
        ({"cluster": {"worker": ["h:1"]}, "task": "worker"}, '"task" "type" must be'),
        ({"cluster": {"worker": ["h:1"]}, "task": {"type": ["worker"]}}, '"type" must be'),
    ],
)  # fmt: skip
def test_a_tf_config_of_the_wrong_shape_is_one_line_before_tensorflow_reads_it(
    monkeypatch, tf_config, message
):
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    with pytest.raises(UserError) as info:
        devices.strategy("multi_worker_mirrored")
    assert message in str(info.value) and "\n" not in str(info.value)


SINGLE_WORKER = textwrap.dedent(
    """
    import json, sys, tempfile
    sys.path.insert(0, %r)
    import tiny
    from gantrack.gan import training
    cfg = tiny.train_cfg(epochs=2, strategy="multi_worker_mirrored")
    gan = tiny.gan(strategy="multi_worker_mirrored", epochs=2)
    folder = tempfile.mkdtemp()
    result = training.fit(gan, tiny.random_images(64), cfg, seed=0,
                          checkpoint_dir=f"{folder}/ckpt", grids_dir=f"{folder}/grids")
    print(json.dumps(result.history["g_loss"].tolist()))
    """
)


def test_multi_worker_mirrored_without_tf_config_trains_this_process_alone():
    """No TF_CONFIG: one worker. Keras then hands each epoch's log value over as an array of
    shape (1,), which ended the first epoch in a TypeError."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    script = SINGLE_WORKER % str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    losses = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(losses) == 2 and all(np.isfinite(losses))
