"""`gantrack sample` for real: the truncation trick, latent walks (a grid, an animated GIF),
bad values as one line, and the version an alias names, from a real sqlite MLflow store."""

import dataclasses
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import tiny
from mlflow.tracking import MlflowClient
from PIL import Image
from project import cli, one_line_error

from gantrack.gan import sampling, training
from gantrack.io import images
from gantrack.tracking import registry

# Real processes (the CLI with TensorFlow): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

CLASSES = 3
NAME = "gantrack-generator"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with params.yaml and a class-conditional generator built by training's own
    helper (3 classes, 8x8x1), saved as generator.keras."""
    path = tmp_path_factory.mktemp("sample")
    (path / "params.yaml").write_text("train:\n  epochs: 1\n")
    model = dataclasses.replace(tiny.MODEL, conditional=True)
    keras.utils.set_random_seed(0)
    gan = training.build_gan(model, tiny.train_cfg(), tiny.SHAPE, 0, num_classes=CLASSES)
    gan.sampler.save(path / "generator.keras")
    return path


def _sample(project: Path, *args: str):
    return cli(project, "sample", "--model", "generator.keras", *args, timeout=300)


def test_truncated_samples_of_a_class_are_those_the_library_draws(project):
    proc = _sample(project, "--truncation", "0.5", "--class", "2", "-n", "6", "--out", "t.npz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "t.npz"
    got = np.load(project / "t.npz")["images"]
    generator = keras.saving.load_model(project / "generator.keras")
    expected = sampling.sample(generator, 6, 0, 500, label=2, truncation=0.5)
    np.testing.assert_array_equal(got, expected)
    plain = sampling.sample(generator, 6, 0, 500, label=2)
    assert not np.array_equal(got, plain)  # the truncation changed the noise


def test_interpolate_draws_one_walk_per_row_as_a_grid_or_an_animation(project):
    proc = _sample(project, "--interpolate", "-n", "3", "--steps", "5", "--out", "walk.png")
    assert proc.returncode == 0, proc.stderr
    picture = np.asarray(Image.open(project / "walk.png"))
    expected = images.grid(np.zeros((15, *tiny.SHAPE), np.uint8), rows=3)  # 3 rows of 5
    assert picture.shape[:2] == expected.shape[:2]
    walks = _sample(project, "--interpolate", "--truncation", "1.5", "--out", "walk.gif")
    assert walks.returncode == 0, walks.stderr
    with Image.open(project / "walk.gif") as gif:
        assert gif.is_animated and gif.n_frames == 2 * 8 - 2  # 8 steps forth, then back
        frame = images.grid(np.zeros((8, *tiny.SHAPE), np.uint8))  # one image of each walk
        assert (gif.height, gif.width) == frame.shape[:2]
        first = np.asarray(gif.convert("L"))
        gif.seek(7)
        last = np.asarray(gif.convert("L"))
    assert not np.array_equal(first, last)  # the walk moves


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--truncation", "0"], "--truncation: 0.0 is not allowed; must be a finite number > 0"),
        (["--truncation", "-1"], "--truncation: -1.0 is not allowed"),
        (["--truncation", "nan"], "--truncation: nan is not allowed"),
        (["--truncation", "inf", "--interpolate"], "--truncation: inf is not allowed"),
        (["--truncation", "x"], "argument --truncation: invalid float value: 'x'"),
        (["--steps", "4"], "--steps: only with --interpolate"),
        (["--out", "walk.gif"], "--out: walk.gif: a .gif animates latent walks; add --interpolate"),
        (["--interpolate", "--steps", "1"], "--steps: 1 is out of range; must be in 2..1000"),
        (["--interpolate", "-n", "0"], "-n: 0 walks is out of range with --steps 8"),
        (["--interpolate", "--class", "3"], "--class: 3 is out of range; generator.keras has "
                                            "classes 0..2"),
        (["--out", "/proc/x.png"], "error: cannot create /proc/x.png (No such file"),
    ],
)  # fmt: skip
def test_bad_sample_values_are_one_line_and_write_nothing(project, args, message):
    before = sorted(p.name for p in project.iterdir())
    out = [] if "--out" in args else ["--out", "bad.png"]
    proc = _sample(project, *args, *out)
    if message.startswith("argument"):  # argparse's own: the same contract
        assert proc.returncode == 2 and message in proc.stderr.strip()
        assert len(proc.stderr.strip().splitlines()) == 1
    else:
        one_line_error(proc, "sample", message)
    assert sorted(p.name for p in project.iterdir()) == before


def test_large_images_are_fewer_a_call(project):
    """At most MAX_VALUES pixel values a call: -n 2000 of 256x256x3 took over 6 GB."""
    import gantrack.commands.sample as command

    model = dataclasses.replace(tiny.MODEL, generator=dataclasses.replace(
        tiny.MODEL.generator, layers="auto"))  # fmt: skip
    gan = training.build_gan(model, tiny.train_cfg(), (256, 256, 3), 0)
    gan.sampler.save(project / "large.keras")
    most = command.MAX_VALUES // (256 * 256 * 3)
    proc = cli(project, "sample", "--model", "large.keras", "-n", str(most + 1), "--out", "l.npz")
    message = (f"-n: {most + 1} images of 256x256x3 from large.keras are too many; at most "
               f"{most} at this size ({command.MAX_VALUES} pixel values)")  # fmt: skip
    one_line_error(proc, "sample", message)
    assert not (project / "l.npz").exists()
    walks = most // 8 + 1  # of 8 images each (--steps 8)
    proc = cli(project, "sample", "--model", "large.keras", "--interpolate", "-n", str(walks))
    one_line_error(proc, "sample", f"-n: {walks} walks of 8 images of 256x256x3 from large.keras "
                   f"are too many; at most {walks - 1} at this size")  # fmt: skip


def test_an_alias_is_logged_as_the_version_it_names(project, monkeypatch):
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("gantrack")
        client = MlflowClient()
        for seed in (0, 1):
            with mlflow.start_run():
                registry.log_generator(tiny.gan(seed=seed).generator)
            (model,) = client.search_logged_models(
                [mlflow.get_experiment_by_name("gantrack").experiment_id],
                filter_string=f"source_run_id = '{mlflow.last_active_run().info.run_id}'",
            )
            version = mlflow.register_model(f"models:/{model.model_id}", NAME).version
        client.set_registered_model_alias(NAME, "champion", version)
    finally:
        mlflow.set_tracking_uri(None)
    proc = cli(project, "sample", "--model", f"models:/{NAME}@champion", "-n", "4", "--out",
               "champion.png", timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if " is version " in line]
    assert " INFO " in line and line.endswith(f"models:/{NAME}@champion is version {version}")
    # Said once it worked: a refusal stays the only line.
    refused = cli(project, "sample", "--model", f"models:/{NAME}@champion", "--class", "0",
                  timeout=300)  # fmt: skip
    one_line_error(refused, "sample", "is not class-conditional")
