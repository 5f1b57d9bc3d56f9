"""What is recorded is what ran: params edited while a stage runs fail it (so dvc.lock never
records values a run did not use), and training refuses prepared data that `prepare` did not
write."""

import subprocess
import time

import numpy as np
import pytest
from project import checkpointed, cli, one_line_error, user_env

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
