"""Any signal to any process: `gantrack train` stops at a batch boundary with one line and its
last checkpoint, also when the `dvc repro` that started it dies, and the next `dvc repro`
resumes into the same MLflow run under the same name, every step logged once."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from project import Repro, checkpointed, live_processes, mlflow_client, user_env

# Real processes (the CLI, `dvc repro`, servers): outside the fast loop (-m "not slow").
pytestmark = pytest.mark.slow


def _group(pgid: int) -> list[int]:
    """The live processes of process group pgid (zombies excluded)."""
    return live_processes(group=pgid)


def _train_pid(pgid: int) -> int:
    for pid in _group(pgid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if any(a.endswith(b"gantrack") for a in argv) and b"train" in argv:
            return pid
    raise AssertionError(f"no gantrack train in process group {pgid}")


def _wait_gone(pgid: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _group(pgid):
        assert time.monotonic() < deadline, f"still running: {_group(pgid)}"
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_a_signal_stops_train_with_one_line_keeping_its_checkpoint(prepared, signum):  # noqa: F811
    params = prepared / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 1", "epochs: 50"))
    proc = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ready = checkpointed(1)
    deadline = time.monotonic() + 120
    while not ready(prepared, ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    (line,) = err.strip().splitlines()
    name = signal.Signals(signum).name
    assert line.startswith("gantrack train: stopped by ") and name in line, line
    assert "the last checkpoint is kept" in line
    assert not (prepared / "models/generator.keras").exists()
    state = json.loads((prepared / "checkpoints/state.json").read_text())
    client = mlflow_client(prepared)
    run = client.get_run(state["run_id"])
    assert run.info.status == "KILLED"
    steps = [m.step for m in client.get_metric_history(state["run_id"], "g_loss")]
    assert steps == list(range(1, len(steps) + 1)) and steps  # whole epochs only


def _loading_numpy(pid: int) -> bool:
    """Whether process pid has mapped numpy's core (the CLI's imports are under way)."""
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2])
def test_a_signal_while_the_cli_loads_is_the_same_one_line_stop(prepared, signum):  # noqa: F811
    """Sent while `gantrack` still imports its modules (seen as numpy being mapped), a signal
    used to meet Python's defaults: SIGTERM and SIGHUP ended it with no line, Ctrl-C with a
    traceback. Arriving at any later moment it gives the same line and code."""
    params = prepared / "params.yaml"
    params.write_text(params.read_text().replace("epochs: 1", "epochs: 50"))
    proc = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not _loading_numpy(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    (line,) = err.strip().splitlines()
    assert line.startswith("gantrack train: stopped by ") and signal.Signals(signum).name in line


def test_a_signal_ignored_at_the_start_stays_ignored(prepared):  # noqa: F811
    """`nohup gantrack train &` ignores SIGHUP (the terminal closing): train runs on. It
    stopped at the next batch, as gantrack's handler replaced the inherited SIG_IGN."""

    def nohup():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen(["gantrack", "train"], cwd=prepared, env=user_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=nohup)  # fmt: skip
    deadline = time.monotonic() + 60
    while not _loading_numpy(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.001)
    for _ in range(3):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "stopped by" not in err, err
    assert (prepared / "models/generator.keras").is_file()


@pytest.mark.slow
def test_dvc_alone_or_the_group_or_train_alone_signalled_then_dvc_repro_resumes(tiny_project):
    """kill -9 of `dvc` alone, SIGTERM to `dvc` alone, Ctrl-C to the whole group, SIGTERM to
    `gantrack train` alone: each time train stops with its checkpoints (no orphan finishes the
    run), and the next `dvc repro` resumes; in the end one FINISHED MLflow run under its first
    name holds every epoch once, and no temporary file is left behind."""
    changes = {"train": {"epochs": 6, "checkpoint_every": 1, "fid_every": 1}}
    project = tiny_project(changes)
    faults = [
        (2, lambda repro: os.kill(repro.proc.pid, signal.SIGKILL)),
        (3, lambda repro: os.kill(repro.proc.pid, signal.SIGTERM)),
        (4, lambda repro: os.killpg(repro.proc.pid, signal.SIGINT)),
        (5, lambda repro: os.kill(_train_pid(repro.proc.pid), signal.SIGTERM)),
    ]
    names = set()
    for epoch, fault in faults:
        repro = Repro(project)
        ready, deadline = checkpointed(epoch), time.monotonic() + 300
        while not ready(project, repro.output):
            assert repro.proc.poll() is None, repro.output
            assert time.monotonic() < deadline, repro.output
            time.sleep(0.05)
        fault(repro)
        _wait_gone(repro.proc.pid)
        repro.proc.wait()
        repro.reader.join()
        assert (project / "checkpoints/checkpoint").is_file(), repro.output
        assert not (project / "models/generator.keras").exists(), repro.output
        state = json.loads((project / "checkpoints/state.json").read_text())
        names.add(mlflow_client(project).get_run(state["run_id"]).info.run_name)
    Repro(project).finish()

    client = mlflow_client(project)
    (run,) = client.search_runs([client.get_experiment_by_name("gantrack").experiment_id])
    assert run.info.status == "FINISHED"
    assert names == {run.info.run_name}
    epochs = list(range(1, 7))
    for key in ("g_loss", "fid_classifier_n100"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == epochs, key
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in images if p.endswith(".png"))
    assert steps == epochs
    # Each epoch's generator logged once (at its step), the chosen one once more as `generator`.
    chosen = int(run.data.tags["gantrack.chosen_epoch"])
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert sorted(o.step for o in outputs) == sorted([*epochs, chosen])
    history = (project / "plots/losses.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == epochs
    leftovers = [p for p in project.rglob(".tmp-*") if ".dvc" not in p.parts]
    assert not leftovers
