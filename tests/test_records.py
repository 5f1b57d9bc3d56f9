"""What is recorded is what ran: params edited while a stage runs fail it (so dvc.lock never
records values a run did not use), and training refuses prepared data that `prepare` did not
write."""

import json
import re
import subprocess
import time

import numpy as np
import pytest
from project import checkpointed, cli, one_line_error, user_env

from gantrack.runtime.errors import UserError

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow


def test_params_edited_while_train_runs_fail_it_with_one_line(prepared):  # noqa: F811
    params = prepared / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 1", "epochs: 3"))
    proc = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not checkpointed(1)(prepared, ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    params.write_text(params.read_text() + "  lr_g: 0.0001\n")
    _, err = proc.communicate(timeout=300)
    proc.stderr = err
    one_line_error(proc, "train", "params.yaml: train.lr_g changed while train ran")


def test_params_a_stage_does_not_read_may_change_while_it_runs(prepared):  # noqa: F811
    """prepare reads data and base.seed only; an edited evaluate section is not its concern."""
    params = prepared / "params.yaml"
    params.write_text(params.read_text() + "evaluate:\n  kid_subsets: 7\n")
    proc = cli(prepared, "prepare")
    assert proc.returncode == 0, proc.stderr


def test_train_refuses_prepared_data_that_prepare_did_not_write(prepared):  # noqa: F811
    """A different, valid train.npz put in place after prepare: one line, nothing written."""
    with np.load(prepared / "data/prepared/train.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    np.savez(prepared / "data/prepared/train.npz", images=images[::-1], labels=labels[::-1])
    proc = cli(prepared, "train")
    one_line_error(proc, "train", "is not what `prepare` wrote")
    assert not (prepared / "checkpoints").exists()
    assert not (prepared / "models").exists()
    assert not (prepared / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("run.json", '{"run_id": 5}', "its run_id 5 is not an MLflow run id"),
        ("run.json", "{}", "its run_id None is not an MLflow run id"),
        ("run.json", '{"run_id": "../../x"}', "its run_id '../../x' is not an MLflow run id"),
        ("run.json", "[1]", "not a JSON object"),
        ("run.json", "not json", "not the JSON gantrack wrote (JSONDecodeError"),
        ("classifier.json", '{"classifier_test_accuracy": "abc"}', "'abc' is not a number in"),
    ],
)
def test_files_gantrack_wrote_then_edited_are_one_line(tmp_path, name, content, message):
    """The run files and metrics gantrack reads back: an edited one is a UserError naming it
    (a traceback before; a classifier.json key once overwrote the computed FID)."""
    from gantrack import tracking
    from gantrack.stages import evaluate

    path = tmp_path / name
    path.write_text(content)
    read = tracking.read_run_file if name == "run.json" else evaluate._classifier_accuracy
    with pytest.raises(UserError, match=re.escape(message)):
        read(path)


def test_only_the_classifiers_accuracy_is_taken_from_its_metrics_file(tmp_path):
    from gantrack.stages import evaluate

    path = tmp_path / "classifier.json"
    path.write_text('{"classifier_test_accuracy": 0.85, "fid_classifier": 0.001}')
    assert evaluate._classifier_accuracy(path) == {"classifier_test_accuracy": 0.85}
    path.write_text("{}")  # no classifier (unlabelled data)
    assert evaluate._classifier_accuracy(path) == {}


def test_a_state_file_naming_another_experiments_run_leaves_that_run_alone(prepared):
    """checkpoints/state.json (edited, or copied from another project) names a running run of
    another experiment: train starts its own run, the other stays RUNNING (it was marked
    KILLED, or train failed with a store error)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{prepared / 'mlflow.db'}")
    foreign = client.create_run(client.create_experiment("someone-else")).info.run_id
    (prepared / "checkpoints").mkdir()
    (prepared / "checkpoints/state.json").write_text(
        json.dumps({"fingerprint": "not these params", "run_id": foreign})
    )
    done = cli(prepared, "train", timeout=600)
    assert done.returncode == 0, done.stderr
    assert client.get_run(foreign).info.status == "RUNNING"
    trained = json.loads((prepared / "models/run.json").read_text())["run_id"]
    assert trained != foreign and client.get_run(trained).info.status == "FINISHED"
