"""The whole pipeline for real: `dvc repro` in a temporary git repo, tiny params, MLflow store."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image
from project import STAGES, mlflow_client, ran_stages, run, set_params, user_env

from gantrack import config
from gantrack.io import images

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_dvc_repro_end_to_end(tiny_project):
    """From a project whose data, classifier and reference statistics are ready (the fault
    chain in test_faults.py runs every stage from scratch): train, generate, evaluate."""
    project = tiny_project()
    first = run(project, "dvc", "repro")
    assert ran_stages(first.stdout) == set(STAGES[3:])

    # Outputs and their contracts.
    samples = np.load(project / "data/generated/samples.npz")["images"]
    assert samples.dtype == np.uint8 and samples.shape == (300, 8, 8, 1)
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["shape"] == [8, 8, 1] and len(meta["sha256"]) == 64
    for name in ("models/generator.keras", "models/classifier/classifier.keras", "plots/losses.png",
                 "plots/generated.png", "plots/progress.gif", "plots/samples/2.png",
                 "data/reference/stats.npz"):  # fmt: skip
        assert (project / name).stat().st_size > 0, name
    assert not (project / "checkpoints").exists()  # finished runs leave nothing to resume
    losses = (project / "plots/losses.csv").read_text().splitlines()
    assert losses[0].split(",")[0] == "epoch" and len(losses) == 3
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert np.isfinite(metrics["fid_classifier"]) and metrics["fid_classifier"] > 0
    assert metrics["n_generated_classifier"] == 300
    assert metrics["n_reference_classifier"] == meta["n_test"]
    assert metrics["kid_classifier"] > -3 * metrics["kid_classifier_std"]
    assert 1.0 <= metrics["is_classifier"] <= 10.0
    assert (
        0.0 <= metrics["precision_classifier"] <= 1.0 and 0.0 <= metrics["recall_classifier"] <= 1.0
    )
    assert 0.5 < metrics["classifier_test_accuracy"] <= 1.0
    # Class-conditional: the samples keep the class each was drawn for, and evaluate scores the
    # FID within each class on the same extractor (intra-FID: their mean), counts beside them.
    labels = np.load(project / "data/generated/samples.npz")["labels"]
    assert labels.shape == (300,) and set(labels.tolist()) <= set(range(10))
    per_class = {int(k.rsplit("_", 1)[1]): v for k, v in metrics.items()
                 if k.startswith("fid_classifier_class_")}  # fmt: skip
    assert len(per_class) == metrics["intra_fid_classifier_classes"] >= 5
    assert metrics["intra_fid_classifier"] == pytest.approx(np.mean(list(per_class.values())))
    for c in per_class:
        assert metrics[f"n_generated_classifier_class_{c}"] == (labels == c).sum() >= 10
    # ... printed as a table: metric, value, samples.
    assert "samples (generated / reference)" in first.stdout
    table = {row[0]: row[1:] for row in map(str.split, first.stdout.splitlines()) if row}
    assert table["fid_classifier"][-3:] == ["300", "/", str(meta["n_test"])]

    # `gantrack fid` on the same files agrees with the evaluate stage.
    cli = run(project, "gantrack", "fid", "data/prepared/test.npz", "data/generated/samples.npz",
              "--json")  # fmt: skip
    assert json.loads(cli.stdout)["fid_classifier"] == pytest.approx(metrics["fid_classifier"])

    # One MLflow run holds everything.
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("gantrack")
    (run_info,) = client.search_runs([experiment.experiment_id])
    data = run_info.data
    assert data.params["train.lr_g"] == str(config.TrainConfig().lr_g)
    assert data.params["data.dataset"] == "digits"
    assert data.params["generate.n_samples"] == "300" and "evaluate.batch_size" in data.params
    assert data.tags["dataset.sha256"] == meta["sha256"]
    from gantrack.gan import devices

    # train.mixed_precision auto: the policy this machine's CPU supports (float32 without bf16)
    assert data.tags["precision_policy"] == devices.precision_policy("auto")
    assert data.tags["replicas"] == "1"
    assert data.tags["conditional_classes"] == "10"  # model.conditional auto, labelled digits
    assert len(data.tags["mlflow.source.git.commit"]) == 40
    assert data.metrics["fid_classifier"] == pytest.approx(metrics["fid_classifier"])
    assert data.metrics["intra_fid_classifier"] == pytest.approx(metrics["intra_fid_classifier"])
    for key in ("g_loss", "d_loss", "d_real", "d_fake", "fid_classifier_n100"):
        assert [m.step for m in client.get_metric_history(run_info.info.run_id, key)] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run_info.info.run_id)}
    assert {"losses.png", "generated.png", "progress.gif", "images"} <= artifacts
    models = client.search_logged_models([experiment.experiment_id])
    assert {m.source_run_id for m in models} == {run_info.info.run_id}
    # The final generator, and the two scored epochs' (train.keep_best 3).
    assert sorted(m.name for m in models) == ["generator", "generator-epoch-1", "generator-epoch-2"]
    # Named distinctly, with the data as its input; the generator registered as the champion,
    # which `gantrack sample` draws from.
    assert run_info.info.run_name.startswith("digits-")
    (data_input,) = client.get_run(run_info.info.run_id).inputs.dataset_inputs
    assert data_input.dataset.name == "digits"
    assert data_input.dataset.digest == meta["sha256"][:16]
    champion = client.get_model_version_by_alias("gantrack-generator", "champion")
    assert champion.run_id == run_info.info.run_id
    assert float(champion.tags["gantrack.fid"]) == pytest.approx(metrics["fid_classifier"])
    run(project, "gantrack", "sample", "--model", "models:/gantrack-generator@champion", "-n", "4",
        "--out", "champion.npz")  # fmt: skip
    assert np.load(project / "champion.npz")["images"].shape == (4, 8, 8, 1)
    # Class-conditional: generated.png has one row per class; sample draws a class on request.
    per_class = images.grid(np.zeros((10 * 4, 8, 8, 1), np.uint8), rows=10)
    assert np.asarray(Image.open(project / "plots/generated.png")).shape[:2] == per_class.shape[:2]
    run(project, "gantrack", "sample", "--class", "3", "-n", "4", "--out", "three.npz")
    assert np.load(project / "three.npz")["images"].shape == (4, 8, 8, 1)
    refused = run(project, "gantrack", "sample", "--class", "10", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("gantrack sample: error: --class: 10 is out of range; "
                                      "models/generator.keras has classes 0..9")  # fmt: skip

    # Nothing changed: nothing runs. Evaluation code changed: only evaluate runs.
    assert ran_stages(run(project, "dvc", "repro").stdout) == set()
    with (project / "src/gantrack/stages/evaluate.py").open("a") as f:
        f.write("# edited\n")
    assert ran_stages(run(project, "dvc", "repro").stdout) == {"evaluate"}
    assert len(client.search_model_versions("name = 'gantrack-generator'")) == 1  # no second
    # An evaluate knob: only evaluate runs.
    set_params(project, {"evaluate": {"pr_k": 5}})
    assert ran_stages(run(project, "dvc", "repro", "evaluate").stdout) == {"evaluate"}
    # Another GAN seed keeps the yardstick: classifier and reference are not to rerun.
    before = (project / "params.yaml").read_text()
    set_params(project, {"base": {"seed": 7}})
    stale = json.loads(run(project, "dvc", "status", "--json").stdout)
    assert "train" in stale and not {"classifier", "reference"} & set(stale), stale
    (project / "params.yaml").write_text(before)
    # evaluate.pr_k differs from the logged value: a new run, linked to the first.
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    assert len(runs) == 2
    assert runs[0].data.tags["gantrack.forked_from"] == run_info.info.run_id
    assert runs[0].data.params["train.lr_g"] == data.params["train.lr_g"]  # training params

    # Metrics and plots through DVC; an experiment with a changed knob.
    assert "fid_classifier" in run(project, "dvc", "metrics", "show").stdout
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline")
    exp = run(project, "dvc", "exp", "run", "-S", "train.lr_g=1e-4")
    assert {"train", "generate", "evaluate"} <= ran_stages(exp.stdout)
    assert "prepare" not in ran_stages(exp.stdout)
    show = run(project, "dvc", "exp", "show", "--csv").stdout
    assert "0.0001" in show and "fid_classifier" in show
    (exp_run,) = client.search_runs([experiment.experiment_id], "params.`train.lr_g` = '0.0001'")
    assert exp_run.info.run_name in show  # named after the DVC experiment
    plots = json.loads(run(project, "dvc", "plots", "show", "--json").stdout)["data"]
    assert {"Losses", "Discriminator outputs", "FID while training"} <= set(plots)
    assert "g_loss" in json.dumps(plots["Losses"]) and "d_fake" in json.dumps(plots)

    # Deleted in the MLflow UI: the run is not reused (a new one names it); the experiment is
    # one line to restore it.
    continued = json.loads((project / "data/generated/run.json").read_text())["run_id"]
    client.delete_run(continued)  # the run evaluate would log into
    run(project, "gantrack", "evaluate")
    replacement = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    assert replacement.data.tags["gantrack.replaces"] == continued
    assert replacement.data.metrics["fid_classifier"] > 0
    client.delete_experiment(experiment.experiment_id)
    proc = run(project, "gantrack", "evaluate", check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "tracking.experiment: 'gantrack' is deleted in the MLflow store; restore it" in line


@pytest.mark.slow
def test_a_killed_training_whose_params_then_change_closes_its_run(tiny_project):
    """Killed, then trained with other params: the killed run is marked KILLED, never resumed.
    (Killed and resumed with the same params: the fault chain in test_faults.py.)"""
    project = tiny_project({"train": {"epochs": 40, "sample_every": 10, "fid_every": 0}})
    proc = subprocess.Popen(["gantrack", "train"], cwd=project, env=user_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    state = project / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 120
    while not (state.exists() and "ckpt-1" in state.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads((project / "checkpoints/state.json").read_text())["run_id"]
    assert mlflow_client(project).get_run(killed).info.status == "RUNNING"
    set_params(project, {"train": {"epochs": 2, "lr_g": 1e-4}})
    run(project, "gantrack", "train")
    assert mlflow_client(project).get_run(killed).info.status == "KILLED"
    assert json.loads((project / "models/run.json").read_text())["run_id"] != killed


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train:\n  lr_g: -1\n", "train.lr_g: -1.0 is out of range; must be > 0"),
        ("train:\n  optimizer: sgd\n", "train.optimizer: unknown key"),
        ("data:\n  dataset: celeba\n", "data.dataset: unknown value 'celeba'"),
    ],
)
def test_cli_bad_params_one_line_exit_2_nothing_written(tmp_path, params, message):
    (tmp_path / "params.yaml").write_text(params)
    proc = subprocess.run(["gantrack", "prepare"], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("gantrack prepare: error: ") and message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_train_refuses_a_step_larger_than_the_data_before_writing_anything(prepared):
    params = prepared / "params.yaml"
    params.write_text(params.read_text() + "  batch_size: 1000\n  n_critic: 5\n")
    before = sorted(p.name for p in prepared.iterdir())
    proc = subprocess.run(["gantrack", "train"], cwd=prepared, env=user_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "train.batch_size * train.n_critic = 5000 is more than the 1437" in line
    assert sorted(p.name for p in prepared.iterdir()) == before  # no checkpoints, run or model


def test_cli_corrupt_data_one_line_exit_2(tmp_path):
    source = tmp_path / "fashion"
    source.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (source / name).write_bytes(b"\x00\x00\x08\x03garbage")
    (tmp_path / "params.yaml").write_text(f"data:\n  source_dir: {source}\n")
    proc = subprocess.run(["gantrack", "prepare"], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("b_images", "extra", "message"),
    [
        (np.zeros((5, 8, 8, 3), np.uint8), [], "images differ in shape"),
        (np.zeros((0, 8, 8, 1), np.uint8), [], "images must be uint8 (N>=2, H, W, C)"),
        (np.zeros((5, 8, 8, 1), np.float32), [], "images must be uint8"),
        (np.zeros((5, 8, 8, 1), np.uint8), ["--extractor", "vgg"], "--extractor: unknown value"),
    ],
)
def test_cli_fid_bad_inputs_one_line_exit_2(tmp_path, b_images, extra, message):
    np.savez(tmp_path / "a.npz", images=np.zeros((5, 8, 8, 1), np.uint8))
    np.savez(tmp_path / "b.npz", images=b_images)
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    proc = subprocess.run(["gantrack", "fid", "a.npz", "b.npz", *extra], cwd=tmp_path,
                          env=user_env(), capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert message in line
