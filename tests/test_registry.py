"""The generator after training: registered with a `champion` alias that only a comparable,
better FID moves; served by `mlflow models serve`; sampled by `gantrack sample` from the
registry, a run or a file. A real sqlite MLflow store and a real model server on 127.0.0.1."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import tiny
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from PIL import Image
from project import tracking_store, user_env
from servers import free_port, lying_proxy, mlflow_server, model_server

from gantrack import config
from gantrack.commands import sample
from gantrack.gan import training
from gantrack.io import images
from gantrack.tracking import registry, selection

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NAME = "gantrack-generator"
DATA = ("sha", "w")  # the data's and the extractor's sha256: one footing throughout


@pytest.fixture(scope="module")
def _store(tmp_path_factory):
    """A project with the default sqlite store and three runs, each with a logged generator."""
    project = tmp_path_factory.mktemp("registry")
    (project / "params.yaml").write_text("train:\n  epochs: 1\n")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("gantrack")
    runs = []
    for seed in range(3):
        with mlflow.start_run() as run:
            registry.log_generator(tiny.gan(seed=seed).generator)
        runs.append(run.info.run_id)
    yield project, runs
    mlflow.set_tracking_uri(None)


@pytest.fixture
def store(_store):
    """_store, with MLflow's tracking URI on its store for the test."""
    with tracking_store(_store[0]):
        yield _store


def _champion(client: MlflowClient):
    return client.get_model_version_by_alias(NAME, "champion")


def test_the_champion_alias_moves_only_to_a_comparably_better_fid(store):
    project, (a, b, c) = store
    client = MlflowClient()
    assert registry.register_generator(a, NAME, "fid_classifier", 50.0, 300, *DATA) == (1, True)
    # Worse FID: registered, the alias stays.
    assert registry.register_generator(b, NAME, "fid_classifier", 60.0, 300, *DATA) == (2, False)
    # Better, but on another sample count, extractor, dataset, or a classifier with other
    # weights (retrained with other params or seed): not comparable, it stays. Each footing is
    # a version of its own (3 to 6); none rewrites another's tags.
    for footing in (("fid_classifier", 1000, "sha", "w"), ("fid_inception", 300, *DATA),
                    ("fid_classifier", 300, "other", "w"),
                    ("fid_classifier", 300, "sha", "retrained")):  # fmt: skip
        assert registry.register_generator(c, NAME, footing[0], 10.0, *footing[1:])[1] is False
    assert int(_champion(client).version) == 1
    assert client.get_model_version(NAME, "6").tags["gantrack.extractor_sha256"] == "retrained"
    assert client.get_model_version(NAME, "3").tags["gantrack.n_generated"] == "1000"
    # Better on an equal footing: it moves; a rerun of the same evaluation adds no version.
    assert registry.register_generator(c, NAME, "fid_classifier", 40.0, 300, *DATA) == (7, True)
    assert registry.register_generator(c, NAME, "fid_classifier", 40.0, 300, *DATA) == (7, True)
    champion = _champion(client)
    assert champion.run_id == c and champion.tags["gantrack.fid"] == "40.0"
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 7
    # A run deleted in the UI: a warning, nothing registered, the alias stays.
    client.delete_run(b)
    with mlflow.start_run() as empty:
        pass
    assert registry.register_generator(empty.info.run_id, NAME, "fid_classifier", 1.0, 300,
                                       *DATA) == (None, False)  # fmt: skip
    assert int(_champion(client).version) == 7
    # The champion's FID tag changed by another user of the store: a warning, the alias stays.
    client.set_model_version_tag(NAME, "7", "gantrack.fid", "abc")
    assert registry.register_generator(a, NAME, "fid_classifier", 1.0, 300, *DATA)[1] is False
    assert int(_champion(client).version) == 7
    client.set_model_version_tag(NAME, "7", "gantrack.fid", "40.0")  # the module's store, mended


def _gantrack_sample(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["gantrack", "sample", *args], cwd=project, env=user_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_gantrack_sample_from_the_registry_a_run_or_a_file(store, monkeypatch):
    project, (a, *_) = store
    registry.register_generator(a, NAME, "fid_classifier", 50.0, 300, *DATA)
    champion = _champion(MlflowClient())
    proc = _gantrack_sample(project, "--model", f"models:/{NAME}@champion", "-n", "10",
                            "--out", "grid.png")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    not_conditional = _gantrack_sample(project, "--model", f"models:/{NAME}@champion", "--class",
                                       "0")  # fmt: skip
    assert not_conditional.returncode == 2
    assert not_conditional.stderr.strip() == (f"gantrack sample: error: --class: models:/{NAME}"
                                              "@champion is not class-conditional "
                                              "(trained without classes)")  # fmt: skip
    picture = np.asarray(Image.open(project / "grid.png"))
    assert picture.shape == images.grid(np.zeros((10, *tiny.SHAPE), np.uint8)).shape[:2]
    # The same generator from its run and from a .keras file: the same images.
    monkeypatch.chdir(project)
    cfg = config.load("params.yaml")
    (project / "out").mkdir()  # sample writes into existing folders only
    from_run = sample.run(f"runs:/{champion.run_id}/generator", 5, Path("out/run.npz"), 3, cfg)
    assert from_run.shape == (5, 8, 8, 1) and from_run.dtype == np.uint8
    np.testing.assert_array_equal(np.load(project / "out/run.npz")["images"], from_run)
    registry.load_generator(f"runs:/{champion.run_id}/generator").save("generator.keras")
    np.testing.assert_array_equal(sample.run("generator.keras", 5, Path("f.npz"), 3, cfg), from_run)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.keras"], "--model: missing.keras: no such file"),
        (["--model", "params.yaml"], "--model: params.yaml is not a .keras archive"),
        (["--model", f"models:/{NAME}@nobody"], f"models:/{NAME}@nobody: cannot be downloaded"),
        (["-n", "0"], "-n: 0 is out of range"),
        (["--out", "x.jpg"], "--out: x.jpg must end in .png"),
    ],
)  # fmt: skip
def test_gantrack_sample_bad_input_is_one_line(store, args, message):
    project, _ = store
    proc = _gantrack_sample(project, *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gantrack sample: error: ") and message in line, line


def _model_server(project: Path, model_uri: str, port: int):
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    return model_server(project, model_uri, port, env)


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_images(store):
    """The champion behind `mlflow models serve`: noise in, images in [-1, 1] out."""
    project, (a, *_) = store
    registry.register_generator(a, NAME, "fid_classifier", 50.0, 300, *DATA)
    with _model_server(project, f"models:/{NAME}@champion", free_port()) as url:
        noise = np.random.default_rng(0).standard_normal((2, tiny.MODEL.latent_dim))
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": noise.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.array(json.loads(response.read())["predictions"])
    assert predictions.shape == (2, *tiny.SHAPE)
    assert np.all(np.abs(predictions) <= 1.0)


def _trained_run(classes: list[str]) -> str:
    """A run as `gantrack train` leaves it (train.select best): three epochs' losses, the two
    scored epochs' generators logged as generator-epoch-N at step N with their epoch's metrics
    linked, the best chosen as the run's generator; class-conditional, with the data's names."""
    gan = training.build_gan(tiny.MODEL, tiny.train_cfg(), tiny.SHAPE, 0, num_classes=4)
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params({"train.epochs": 3, "train.select": "best"})
        mlflow.set_tag("dataset", "digits")
        client.log_metric(run.info.run_id, "g_loss", 1.4, step=1)
        for epoch, loss, fid in ((2, 1.1, 61.0), (3, 0.9, 67.0)):
            name = selection.model_name(epoch)
            registry.log_generator(gan.sampler, class_names=classes, name=name, step=epoch)
            model_id = selection.ready_model(client, run.info.run_id, name)
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, value, now, epoch, model_id=model_id)
                for key, value in (("g_loss", loss), ("fid_classifier_n100", fid))
            ]
            client.log_batch(run.info.run_id, metrics=metrics, synchronous=True)
        selection.record_choice(2, "best", "fid_classifier_n100", 61.0)
        registry.log_generator(gan.sampler, class_names=classes, step=2)
    return run.info.run_id


def test_docs_images_photographs_the_run_in_the_mlflow_ui(store):
    """scripts/docs_images.py: the pipeline's pictures copied; in the MLflow UI, photographed
    by a real headless Chromium, the run's charts, the registered model's versions with the
    champion alias and the run's logged models (the best epochs' and the chosen generator);
    a real `mlflow models serve` of the champion asked for 8 images of a class by name."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import docs_images

    if docs_images.chromium() is None:
        pytest.skip("no Chromium or no Playwright (scripts/setup.sh --test installs both)")
    project, _ = store
    run_id = _trained_run(["T-shirt", "Trouser", "Pullover", "Dress"])
    # The best FID of this module on the usual footing: the champion, whatever ran before.
    version, champion = registry.register_generator(run_id, NAME, "fid_classifier", 1.0, 300,
                                                    *DATA)  # fmt: skip
    assert champion
    picture = images.grid(np.zeros((4, *tiny.SHAPE), np.uint8))
    (project / "plots").mkdir(exist_ok=True)
    images.save_png(project / "plots/generated.png", picture)
    images.save_png(project / "plots/losses.png", picture)
    images.save_gif(project / "plots/progress.gif", [picture, picture])
    (project / "models").mkdir(exist_ok=True)
    (project / "models/run.json").write_text(json.dumps({"run_id": run_id}))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/docs_images.py"), "--no-tune",
                           "--class-name", "Dress"], cwd=project, env=user_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = project / "docs"
    for name in ("samples.png", "curves.png", "progress.gif"):
        source = {v: k for k, v in docs_images.PIPELINE.items()}[name]
        assert (docs / name).read_bytes() == (project / source).read_bytes()
    screenshot = Image.open(docs / "mlflow_ui.png")
    assert screenshot.size == (1400, 1250)
    assert len(set(np.asarray(screenshot.convert("L")).ravel().tolist())) > 20  # drawn, not blank
    # What each page showed when it was photographed (the script waits for it to be visible).
    shown = dict(
        line.split(": shows ", 1) for line in proc.stdout.splitlines() if ": shows " in line
    )
    shown = {Path(path).name: seen for path, seen in shown.items()}
    assert {"mlflow_registry.png", "mlflow_models.png"} <= set(shown)
    assert f"'Version {version}'" in shown["mlflow_registry.png"]
    assert "'@ champion'" in shown["mlflow_registry.png"]
    assert "'Data: digits (sha256" in shown["mlflow_registry.png"]  # its description
    for name in ("generator", "generator-epoch-2", "generator-epoch-3", "fid_classifier_n100",
                 "g_loss"):  # fmt: skip
        assert f"'{name}'" in shown["mlflow_models.png"]
    for name in ("mlflow_registry.png", "mlflow_models.png"):
        with Image.open(docs / name) as shot:
            assert shot.format == "PNG" and shot.size == (1400, 720), name
    # The request, the answer (trimmed) and the picture of both.
    (request,) = [line for line in proc.stdout.splitlines() if line.startswith("request: ")]
    body = json.loads(request.removeprefix("request: POST /invocations "))
    assert body == {"inputs": [], "params": {"n": 8, "class_name": "Dress", "seed": 7,
                                             "format": "png"}}  # fmt: skip
    assert 'answer: {"predictions": ["iVBORw0KGgo' in proc.stdout
    with Image.open(docs / "served.png") as served:
        assert served.format == "PNG"
        assert served.width >= 8 * docs_images.CELL and docs_images.CELL < served.height < 600


def test_a_store_sending_more_than_it_listed_is_cut_off(tmp_path):
    """A hostile tracking server lists a logged generator's true sizes, then sends a gigabyte
    more with each file: `gantrack sample` stops the download within the listed bytes (plus
    slack), one line, exit 2, nothing written."""
    with mlflow_server(tmp_path / "server", free_port()) as url:
        mlflow.set_tracking_uri(url)
        try:
            mlflow.set_experiment("gantrack")
            with mlflow.start_run() as run:
                registry.log_generator(tiny.gan(seed=0).generator)
        finally:
            mlflow.set_tracking_uri(None)
        with lying_proxy(url, extra=2**30) as (proxy_url, proxy):
            (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\n")
            proc = subprocess.run(
                ["gantrack", "sample", "--model", f"runs:/{run.info.run_id}/generator",
                 "--out", "x.npz"],
                cwd=tmp_path, env={**user_env(), "MLFLOW_TRACKING_URI": proxy_url},
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "the store sent more than the" in line and "its listing said; not loaded" in line
    assert 0 < proxy.extra_sent < 2**28  # cut off far short of the gigabyte
    assert not (tmp_path / "x.npz").exists()
