"""Faults as users meet them: kill -9 of the whole `dvc repro` at every point, then `dvc repro`
again; bad input of every kind; secrets; one writer."""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image
from project import (
    ROOT,
    Repro,
    checkpointed,
    cli,
    in_stage,
    make_project,
    mlflow_client,
    one_line_error,
    run,
    set_params,
    tiny,
    user_env,
)
from servers import free_port, mlflow_server

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow

# --- faults: kill -9 of the whole `dvc repro`, then `dvc repro` again -------------------------

FAULT_PARAMS = {"train": {"epochs": 6, "checkpoint_every": 2, "sample_every": 1, "fid_every": 1}}


def _first_epoch(project, output):
    """train runs, its MLflow run exists, and no checkpoint yet."""
    state = project / "checkpoints" / "state.json"
    return (
        "Running stage 'train'" in output
        and state.exists()
        and not (project / "checkpoints" / "checkpoint").exists()
    )


@pytest.mark.slow
def test_dvc_repro_survives_kill_9_anywhere_and_loses_nothing(tmp_path):
    """One project, killed (kill -9 of the whole `dvc repro`) at each point in turn; each
    following `dvc repro` goes on from where the last one died."""
    project = make_project(tmp_path, tiny(FAULT_PARAMS))
    faults = [
        ("prepare", in_stage("prepare")),
        ("classifier", in_stage("classifier", "Epoch 2/")),
        ("reference", in_stage("reference")),
        ("the first epoch", _first_epoch),
        ("between checkpoints", checkpointed(2, grid=3)),
        ("after a checkpoint, whose files then rot", checkpointed(4, grid=5)),
        ("after the last checkpoint", checkpointed(6)),
        ("generate", in_stage("generate")),
        ("evaluate", in_stage("evaluate")),
    ]
    outputs = []
    for name, ready in faults:
        repro = Repro(project)
        repro.kill_when(ready)
        outputs.append((name, repro.output))
        if name.startswith("after a checkpoint"):
            for data in (project / "checkpoints").glob("ckpt-4.data-*"):
                data.write_bytes(data.read_bytes()[:100])  # truncated, as a disk fault would
    final = Repro(project).finish()
    log = "".join(out for _, out in outputs) + final

    # Resumes: after the first epoch nothing to resume; later at most one interval redone.
    assert "resuming from checkpoints/ckpt-2" in log
    assert "ckpt-4" in log and "falling back" in log  # the damaged checkpoint is skipped
    assert "resuming from checkpoints/ckpt-6" in log

    # Every record once: history rows, grids, GIF frames, MLflow steps.
    epochs = list(range(1, 7))
    history = (project / "plots/losses.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == epochs
    assert sorted(p.name for p in (project / "plots/samples").iterdir()) == [
        f"{e}.png" for e in epochs
    ]
    from PIL import Image

    assert Image.open(project / "plots/progress.gif").n_frames == 6
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("gantrack")
    (run_info,) = client.search_runs([experiment.experiment_id])
    assert run_info.info.status == "FINISHED"
    run_id = run_info.info.run_id
    for key in ("g_loss", "d_loss", "fid_classifier_n100"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == epochs, key
    assert len(client.get_metric_history(run_id, "fid_classifier")) == 1
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    # MLflow names them samples+step+<epoch>+timestamp+...png
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images if p.endswith(".png"))
    assert steps == epochs
    assert json.loads((project / "metrics/eval.json").read_text())["fid_classifier"] > 0

    # The best epochs: each scored epoch's generator logged, the best keep_best (3) left, and
    # the run ends with the lowest FID of the training's history (the rule an unkilled run
    # applies; epochs 3 and 4, trained again after the rotten checkpoint, keep their first
    # metrics in MLflow, logged once, and their retrained values in the history).
    rows = [row.split(",") for row in history]
    column = rows[0].index("fid_classifier_n100")
    fids = {int(row[0]): float(row[column]) for row in rows[1:]}
    ranked = sorted(fids, key=lambda e: (fids[e], e))
    assert run_info.data.tags["gantrack.chosen_epoch"] == str(ranked[0])
    found = client.search_logged_models([experiment.experiment_id], f"source_run_id = '{run_id}'")
    assert all(str(m.status).endswith("READY") for m in found)
    names = sorted(m.name for m in found)
    assert names == sorted(["generator", *(f"generator-epoch-{e}" for e in ranked[:3])])
    final = next(m.model_id for m in found if m.name == "generator")
    outputs = [(o.model_id, o.step) for o in client.get_run(run_id).outputs.model_outputs]
    assert [step for model_id, step in outputs if model_id == final] == [ranked[0]]
    assert sorted({step for model_id, step in outputs if model_id != final}) == epochs


# --- bad input: one line on stderr, exit code 2, nothing written --------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (b"", "params.yaml: empty; give at least one section"),
        (b"# only a comment\n", "params.yaml: empty"),
        (b"- a list\n", "params.yaml: must be a mapping of sections"),
        (b"data:\n  dataset: caf\xe9\n", "params.yaml: not UTF-8 text"),
        (b"train:\n  lr_g: .inf\n", "train.lr_g: must be a finite number, got inf"),
        (b"train:\n  gp_weight: .nan\n", "train.gp_weight: must be a finite number, got nan"),
        (b"base:\n  seed: 99999999999\n", "base.seed: 99999999999 is out of range; must be <="),
        (b"tracking:\n  experiment: ''\n", "tracking.experiment: '' is not a valid name"),
        (b"tracking:\n  experiment: \"a' or name = 'b\"\n", "tracking.experiment: \"a' or"),
        (b"tracking:\n  registered_model: a/b\n", "tracking.registered_model: 'a/b' is not"),
        (b'tune:\n  study_name: "x\\e[31m"\n', "tune.study_name: 'x\\x1b[31m' is not a valid"),
        (b"train:\n  loss: wgan\n", "train.loss: unknown value 'wgan'; allowed: non_saturating"),
        (b"train: [1, 2]\n", "train: must be a mapping of keys to values"),
        (b"data: {dataset: digits\n", "params.yaml: not valid YAML"),
    ],
)
def test_bad_params_one_line_exit_2_nothing_written(tmp_path, params, message):
    (tmp_path / "params.yaml").write_bytes(params)
    one_line_error(cli(tmp_path, "prepare"), "prepare", message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "--bogus"], "unrecognized arguments: --bogus"),
        (["tune", "--worker", "x"], "argument --worker: invalid int value: 'x'"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["--params", "missing.yaml", "prepare"], "missing.yaml: no such params file"),
        (["--params", ".", "prepare"], "no such params file"),
        (["serve", "--port", "0"], "--port: 0 is out of range; must be in 1..65535"),
        (["serve", "--port", "x"], "argument -p/--port: invalid int value: 'x'"),
        (["serve", "--workers", "0"], "--workers: 0 is out of range; must be in 1..64"),
    ],
)
def test_bad_command_lines_one_line_exit_2(tmp_path, args, message):
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    proc = cli(tmp_path, *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert message in line and "usage:" not in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not an npz at all", "a.npz: not a samples .npz with key 'images'"),
        (b"PK\x03\x04truncated", "a.npz: not a samples .npz with key 'images'"),
        (b"", "a.npz: not a samples .npz with key 'images'"),
    ],
)
def test_fid_refuses_files_that_are_not_samples(tmp_path, content, message):
    import numpy as np

    (tmp_path / "a.npz").write_bytes(content)
    np.savez(tmp_path / "b.npz", images=np.zeros((5, 8, 8, 1), np.uint8))
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    one_line_error(cli(tmp_path, "fid", "a.npz", "b.npz"), "fid", message)


def test_a_terminal_gets_a_progress_bar_and_stderr_only_log_lines_with_system_metrics(prepared):
    """`gantrack train` on a terminal: Keras' progress bar on stdout, nothing on stderr but
    gantrack's log lines (no TensorFlow banners, no library warnings); with
    tracking.system_metrics MLflow samples CPU and memory use into the training run."""
    import pty

    params = prepared / "params.yaml"
    params.write_text(params.read_text() + "tracking:\n  system_metrics: true\n")
    env = {
        **user_env(),
        "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5",
        "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING": "1",
        "TF_CPP_MIN_LOG_LEVEL": "abc",
    }  # not a level: gantrack's own (TensorFlow's: all)
    terminal, stdout = pty.openpty()
    train = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=env, stdout=stdout,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(stdout)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(terminal, 4096):
            shown += chunk
    err = train.communicate(timeout=120)[1]
    os.close(terminal)
    assert train.returncode == 0, err
    assert "━" in shown.decode(errors="replace")  # the bar within the epoch
    log_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) gantrack")
    assert all(log_line.match(line) for line in err.strip().splitlines()), err
    run_id = json.loads((prepared / "models/run.json").read_text())["run_id"]
    metrics = mlflow_client(prepared).get_run(run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics


def test_a_reader_that_goes_away_or_a_closed_stream_loses_no_work(prepared):
    """`gantrack train | head -1`: the pipe breaks at the next line, and the training goes on
    to its end (it died mid-epoch, its run FAILED). With descriptors 1 and 2 closed (`>&- 2>&-`)
    a command does its work (it was a traceback, or a silent exit before any)."""
    set_params(prepared, {"train": {"epochs": 2}})
    train = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert train.stdout.readline()  # the reader has seen a line, and goes away
    train.stdout.close()
    assert train.wait(timeout=300) == 0
    run_id = json.loads((prepared / "models/run.json").read_text())["run_id"]
    assert mlflow_client(prepared).get_run(run_id).info.status == "FINISHED"

    def closed():
        os.close(1)
        os.close(2)

    out = prepared / "grid.png"
    sample = subprocess.run(["gantrack", "sample", "-n", "4", "--out", str(out)], cwd=prepared,
                            env=user_env(), preexec_fn=closed, timeout=300)  # fmt: skip
    assert sample.returncode == 0 and Image.open(out).size[0] > 0
    piped = subprocess.Popen(["gantrack", "sample", "-n", "4", "--out", "again.png"],
                             cwd=prepared, env=user_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)  # fmt: skip
    piped.stdout.close()  # `| true`: gone before the first line
    _, err = piped.communicate(timeout=300)
    assert piped.returncode == 0 and b"Traceback" not in err, err
    assert (prepared / "again.png").is_file()
    # An ASCII-only locale (no UTF-8 mode): `±` in the metrics table was a traceback.
    ascii_env = {**user_env(), "LC_ALL": "C", "PYTHONUTF8": "0"}
    ascii_env.pop("PYTHONIOENCODING", None)
    code = "from gantrack.runtime import streams; streams.install(); print('0.1 \\u00b1 0.01')"
    shown = subprocess.run([sys.executable, "-c", code], env=ascii_env, capture_output=True)
    assert shown.returncode == 0 and shown.stdout == b"0.1 \\xb1 0.01\n", shown


def test_a_command_leaves_nothing_in_the_temporary_folder_and_clears_what_killed_ones_left(
    prepared, tmp_path
):
    """A process's temporary files (TensorFlow's autograph files, models' copies) are in a
    folder of its own, removed when it ends; a command deletes the folders of killed ones:
    this user's, whose lock no process holds. A running one's (its lock held, here by this
    test), one without a lock file, another user's, a FIFO as the lock: left alone."""
    import fcntl

    temp = tmp_path / "tmp"
    dead, live, other, fifo, theirs = (temp / f"gantrack-4{n}-abcdefgh" for n in range(5))
    for folder in (dead, live, other, fifo, theirs):
        (folder / "model").mkdir(parents=True)
    for folder in (dead, live, theirs):
        (folder / ".held").touch()
    os.mkfifo(fifo / ".held")  # opened blocking, it would hang the command
    if os.geteuid() == 0:
        os.chown(theirs, 12345, 12345)
    held = os.open(live / ".held", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        proc = cli(prepared, "train", env={**user_env(), "TMPDIR": str(temp)}, timeout=300)
    finally:
        os.close(held)
    assert proc.returncode == 0, proc.stderr
    left = {live, other, fifo} | ({theirs} if os.geteuid() == 0 else set())
    assert set(temp.iterdir()) == left


def test_a_project_deleted_while_train_runs_is_one_line_naming_it(prepared):
    """It was ~130 lines of MLflow's and SQLAlchemy's tracebacks, then a line blaming the store."""
    set_params(prepared, {"train": {"epochs": 20}})
    train = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(), text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not checkpointed(1)(prepared, ""):
        assert train.poll() is None and time.monotonic() < deadline, train.stderr.read()
        time.sleep(0.2)
    while prepared.exists():  # train may write a file in it meanwhile: again
        shutil.rmtree(prepared, ignore_errors=True)
    _, err = train.communicate(timeout=120)
    assert train.returncode == 1 and "Traceback" not in err, err
    assert (
        err.strip().splitlines()[-1]
        == f"gantrack train: error: {prepared} was deleted while it ran"
    )


def test_mlflow_run_logs_into_the_pipelines_run_and_a_stray_run_id_is_ignored(prepared):
    """`mlflow run . -e train` (no --experiment-name: its run in MLflow's Default experiment)
    trains into gantrack's own run and tags MLflow's with it (it failed: "active experiment ID
    does not match"). MLFLOW_RUN_ID naming a finished run is ignored with a warning (MLflow
    reopened it: a new model beside the old run's metrics). A running run of the experiment is
    the one trained into."""
    shutil.copy(ROOT / "MLproject", prepared / "MLproject")
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{prepared / 'mlflow.db'}"}
    proc = run(prepared, "mlflow", "run", ".", "--env-manager", "local", "-e", "train", env=env)
    client = mlflow_client(prepared)
    trained = json.loads((prepared / "models/run.json").read_text())["run_id"]
    (project_run,) = client.search_runs(["0"])  # MLflow's Default experiment: the entry point's
    assert project_run.data.tags["gantrack.logged_to"] == trained, proc.stderr
    assert project_run.info.status == "FINISHED" and not project_run.data.metrics
    assert "g_loss" in client.get_run(trained).data.metrics

    shutil.rmtree(prepared / "models")
    env = {**user_env(), "MLFLOW_RUN_ID": trained}  # finished
    proc = cli(prepared, "train", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"MLFLOW_RUN_ID {trained} names no running run of this store: ignored" in proc.stderr
    again = json.loads((prepared / "models/run.json").read_text())["run_id"]
    assert again != trained and len(client.get_metric_history(trained, "g_loss")) == 1

    # With --experiment-name tracking.experiment, MLflow's run is the pipeline's (as before).
    run(prepared, "mlflow", "run", ".", "--env-manager", "local", "-e", "train",
        "--experiment-name", "gantrack", env=env)  # fmt: skip
    gantrack = client.get_experiment_by_name("gantrack").experiment_id
    (entry,) = client.search_runs([gantrack], "tags.`mlflow.project.entryPoint` = 'train'")
    assert json.loads((prepared / "models/run.json").read_text())["run_id"] == entry.info.run_id
    assert "g_loss" in entry.data.metrics and entry.info.status == "FINISHED"


def test_unreachable_tracking_server_is_one_line_and_masks_its_password(prepared):
    port = free_port()
    env = {**user_env(), "MLFLOW_TRACKING_URI": f"http://me:hunter2@127.0.0.1:{port}"}
    line = one_line_error(cli(prepared, "train", env=env), "train", "MLflow store http://me:***@")
    assert "hunter2" not in line
    assert not (prepared / "checkpoints").exists() and not (prepared / "models").exists()


@pytest.mark.parametrize("command", ["sample", "serve"])
@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://[::1", "MLflow store http://[::1 cannot be used"),
        ("sqlite:////proc/self/status", "MLflow store sqlite:////proc/self/status cannot be used"),
        ("postgresql://me:hunter2@127.0.0.1:1/db", "MLflow store postgresql://me:***@127.0.0.1"),
    ],
)
def test_a_store_that_cannot_be_read_is_one_line_for_the_model_commands(prepared, command, uri,
                                                                        says):  # fmt: skip
    """Commands that only read a model from the store check the store before anything else:
    a URI that does not parse, a file that is not a database, a database that refuses (at
    once: not after MLflow's ~100 s of retries)."""
    env = {**user_env(), "MLFLOW_TRACKING_URI": uri}
    args = [command, "--model", "models:/gantrack-generator@champion"]
    line = one_line_error(cli(prepared, *args, env=env), command, says)
    assert "hunter2" not in line


def test_a_database_store_that_never_answers_is_one_line_after_the_connect_timeout(prepared):
    """A PostgreSQL store behind a port that accepts and stays silent (a server still starting, a
    proxy): libpq would wait for ever and MLflow retry; PGCONNECT_TIMEOUT (gantrack's default
    10 s, here the user's 2) ends the connection attempt, once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"postgresql://me:hunter2@127.0.0.1:{silent.getsockname()[1]}/db"
        env = {**user_env(), "MLFLOW_TRACKING_URI": uri, "PGCONNECT_TIMEOUT": "2"}
        line = one_line_error(cli(prepared, "train", env=env, timeout=60), "train", "timeout")
    assert "hunter2" not in line
    assert not (prepared / "checkpoints").exists() and not (prepared / "models").exists()


def test_corrupt_mlflow_store_is_one_line_naming_the_file(prepared):
    (prepared / "mlflow.db").write_bytes(b"this is not a database" * 100)
    one_line_error(cli(prepared, "train"), "train", f"sqlite:///{prepared / 'mlflow.db'}")
    assert not (prepared / "models").exists()


def test_a_second_train_in_the_same_project_refuses_while_one_runs(prepared):
    from filelock import FileLock

    with FileLock(prepared / "checkpoints.lock"):  # what a running `gantrack train` holds
        proc = cli(prepared, "train")
    one_line_error(proc, "train", "another `gantrack train` is running in this project")
    assert not (prepared / "models").exists()


def test_malformed_tf_config_is_one_line(prepared):
    params = prepared / "params.yaml"
    params.write_text(params.read_text() + "  strategy: multi_worker_mirrored\n")
    env = {**user_env(), "TF_CONFIG": "{not json"}
    one_line_error(cli(prepared, "train", env=env), "train", "TF_CONFIG: not valid JSON")


@pytest.mark.slow
def test_multi_worker_training_writes_only_from_the_chief(prepared):
    """Two `gantrack train` workers (TF_CONFIG) in one project train one model; only worker 0,
    the chief, takes the project's lock and writes the model, the history and the MLflow run."""
    params = prepared / "params.yaml"
    params.write_text(params.read_text() + "  strategy: multi_worker_mirrored\n  batch_size: 64\n")
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    workers = [
        subprocess.Popen(
            ["gantrack", "train"],
            cwd=prepared,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **user_env(),
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
        )  # fmt: skip
        for i in range(2)
    ]
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, out[-3000:]
    assert (prepared / "models/generator.keras").is_file()
    assert not (prepared / "checkpoints").exists()
    client = mlflow_client(prepared)
    (run_info,) = client.search_runs([client.get_experiment_by_name("gantrack").experiment_id])
    assert run_info.data.tags["replicas"] == "2"
    assert [m.step for m in client.get_metric_history(run_info.info.run_id, "g_loss")] == [1]


# --- a real MLflow server that goes away ------------------------------------------------------


@pytest.mark.slow
def test_pipeline_survives_its_tracking_server_going_away(prepared, tmp_path_factory):
    """The server stops mid-training: one line, checkpoints kept. It returns: the rerun resumes
    into the same run, every epoch logged once, and generate and evaluate log into that run."""
    params = prepared / "params.yaml"
    params.write_text(
        params.read_text().replace("epochs: 1", "epochs: 6") + "  batch_size: 64\n"
        "classifier:\n  epochs: 2\n  filters: 8\ngenerate:\n  n_samples: 300\n"
    )
    server_root, port = tmp_path_factory.mktemp("mlflow-server"), free_port()
    with mlflow_server(server_root, port) as uri:
        env = {**user_env(), "MLFLOW_TRACKING_URI": uri}
        train = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=env, text=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        index = prepared / "checkpoints" / "checkpoint"
        deadline = time.monotonic() + 180
        while not (index.exists() and "ckpt-2" in index.read_text()):
            assert train.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    _, err = train.communicate(timeout=120)  # the server is gone
    assert train.returncode == 1, err
    assert len(err.strip().splitlines()) == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("gantrack train: error: MLflow store ") and "run it again" in line
    run_id = json.loads((prepared / "checkpoints/state.json").read_text())["run_id"]
    assert (prepared / "checkpoints").is_dir()

    with mlflow_server(server_root, port) as uri:
        env = {**user_env(), "MLFLOW_TRACKING_URI": uri}
        resumed = cli(prepared, "train", env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming from checkpoints/ckpt-" in resumed.stderr
        assert json.loads((prepared / "models/run.json").read_text())["run_id"] == run_id
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        assert [m.step for m in client.get_metric_history(run_id, "g_loss")] == list(range(1, 7))
        assert client.get_run(run_id).info.status == "FINISHED"

        with pytest.MonkeyPatch.context() as mp:  # evaluate's inputs; they log nothing
            mp.chdir(prepared)
            from gantrack import config
            from gantrack.stages import classifier, reference

            cfg = config.load("params.yaml")
            classifier.run(cfg)
            reference.run(cfg)
        for stage in ("generate", "evaluate"):
            done = cli(prepared, stage, env=env, timeout=300)
            assert done.returncode == 0, done.stderr
        run = client.get_run(run_id)
        assert run.data.metrics["fid_classifier"] > 0 and run.data.params["generate.n_samples"]
        assert json.loads((prepared / "data/generated/run.json").read_text())["run_id"] == run_id
    assert not (prepared / "mlflow.db").exists()
