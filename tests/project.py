"""A user's project for the tests that run gantrack for real: tiny params, a user's environment,
the CLI and `dvc repro` as subprocesses, and the checks every one of them makes.

The fixtures that build projects once per session and copy them per test are in conftest.py."""

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("prepare", "classifier", "reference", "train", "generate", "evaluate")
TINY = {
    "data": {"dataset": "digits"},
    "model": {"generator": {"filters": 16, "max_filters": 32}},
    "classifier": {"epochs": 20, "batch_size": 64, "filters": 8},
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "sample_every": 1,
        "grid_rows": 4,
        "fid_every": 1,
        "fid_samples": 100,
    },
    "generate": {"n_samples": 300},
}
# The params of a prepared project (the digits, one epoch, no FID curve): what train reads.
PREPARED = "data:\n  dataset: digits\ntrain:\n  fid_every: 0\n  epochs: 1\n"


def merge(base: dict, changes: dict) -> dict:
    """base with (a copy of) changes merged in, section by section; base is changed, returned."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def tiny(changes: dict | None = None) -> dict:
    """TINY with changes merged into a copy."""
    return merge(copy.deepcopy(TINY), changes or {})


def user_env() -> dict:
    """As a user's shell has it: no tracking or DVC state, TensorFlow's logging left to the CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "TF_CPP"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.com"
    return env


def run(project: Path, *cmd: str, check=True, env=None) -> subprocess.CompletedProcess:
    """cmd in project; with check, a failure shows its output."""
    proc = subprocess.run(cmd, cwd=project, env=env or user_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli(cwd: Path, *args: str, env: dict | None = None, timeout: int = 120):
    """`gantrack args` in cwd, its output captured."""
    return subprocess.run(["gantrack", *args], cwd=cwd, env=env or user_env(),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def one_line_error(proc, command: str, message: str) -> str:
    """proc failed as bad input must: exit code 2, one line on stderr naming command, message."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"gantrack {command}: error: "), line
    assert message in line, line
    return line


def write_params(path: Path, changes: dict) -> Path:
    """The repository's params.yaml with changes, comments kept, written to path."""
    yaml = YAML()  # round-trip: keeps the comments a user would see
    params = yaml.load((ROOT / "params.yaml").read_text())
    with open(path, "w") as f:
        yaml.dump(merge(params, changes), f)
    return path


def set_params(project: Path, changes: dict) -> None:
    """changes merged into project's params.yaml, as a user edits it."""
    yaml = YAML()
    params = yaml.load((project / "params.yaml").read_text())
    with open(project / "params.yaml", "w") as f:
        yaml.dump(merge(params, changes), f)


def make_project(tmp: Path, changes: dict) -> Path:
    """A git and DVC repository holding the pipeline with the default params plus changes."""
    project = tmp / "project"
    project.mkdir()
    for name in ("dvc.yaml", "MLproject", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, project / name)
    # The stages depend on their code (dvc.yaml deps); the installed package runs it.
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    write_params(project / "params.yaml", changes)
    run(project, "git", "init", "-q")
    run(project, "dvc", "init", "-q")
    commit(project, "init")
    return project


def copy_project(source: Path, target: Path) -> Path:
    """source's files copied into target (made if missing)."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".built"))  # fmt: skip
    return target


def copy_tiny(built: Path, target: Path, changes: dict | None = None) -> Path:
    """A copy of conftest's tiny_built at target with changes, which may not touch what the
    stages before train read: its next `dvc repro` runs train, generate and evaluate."""
    read = [k for k in _dotted(changes or {}) if _read_before_train(k)]
    assert not read, f"{read}: read before train; build the project with make_project"
    copied = copy_project(built, target)
    set_params(copied, changes or {})
    return copied


def _dotted(changes: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in changes.items():
        name = f"{prefix}{key}"
        keys += _dotted(value, f"{name}.") if isinstance(value, dict) else [name]
    return keys


def _read_before_train(key: str) -> bool:
    """Whether prepare, classifier or reference reads the param key (their PARAMS say)."""
    import importlib

    for stage in ("prepare", "classifier", "reference"):
        for param in importlib.import_module(f"gantrack.stages.{stage}").PARAMS:
            if key == param or key.startswith(f"{param}.") or param.startswith(f"{key}."):
                return True
    return False


def commit(project: Path, message: str) -> None:
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message)


def ran_stages(output: str) -> set[str]:
    return {s for s in STAGES if f"Running stage '{s}'" in output}


@contextlib.contextmanager
def tracking_store(project: Path):
    """MLflow's process-wide tracking URI on project's sqlite store for the block, then unset
    (a module-scoped store cannot hold it: any test in between, in this module or under
    pytest-xdist another one, may move it)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)


def mlflow_client(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def image_steps(client, run_id: str) -> list[int]:
    """The epochs of a run's logged sample grids (MLflow names them samples+step+<epoch>+...)."""
    paths = [a.path for a in client.list_artifacts(run_id, "images")]
    return sorted(int(p.split("+step+")[1].split("+")[0]) for p in paths if p.endswith(".png"))


# --- `dvc repro` while it runs, and the points to kill it at -----------------------------------


class Repro:
    """`dvc repro` in its own process group, its output collected while it runs."""

    def __init__(self, project: Path):
        self.project = project
        self.proc = subprocess.Popen(
            ["dvc", "repro"], cwd=project, env=user_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.output = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output += line

    def wait_for(self, ready, timeout=300) -> None:
        """Returns once ready(project, output); fails if dvc ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready(self.project, self.output):
            assert self.proc.poll() is None, f"finished before the fault:\n{self.output}"
            assert time.monotonic() < deadline, f"no fault point in time:\n{self.output}"
            time.sleep(0.05)

    def kill_when(self, ready, timeout=300) -> None:
        """kill -9 the whole process group (DVC and the stage) once ready(project, output)."""
        self.wait_for(ready, timeout)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.reader.join()

    def finish(self) -> str:
        self.proc.wait(timeout=600)
        self.reader.join()
        assert self.proc.returncode == 0, self.output
        return self.output


def in_stage(stage: str, after: str = ""):
    """Ready once `stage` runs and, after its start, `after` appears in the output."""

    def ready(project, output):
        start = output.find(f"Running stage '{stage}'")
        return start >= 0 and after in output[start:]

    return ready


def checkpointed(epoch: int, grid: int | None = None):
    """Ready once checkpoint `epoch` is the latest and the grid of epoch `grid` exists."""

    def ready(project, output):
        index = project / "checkpoints" / "checkpoint"
        latest = index.is_file() and f'model_checkpoint_path: "ckpt-{epoch}"' in index.read_text()
        return latest and (grid is None or (project / f"plots/samples/{grid}.png").exists())

    return ready


# --- secrets: every spelling a program may write ------------------------------------------------


def spellings(secret: str) -> set[str]:
    """The ways a program may write secret: raw, percent-encoded (also '/' kept, '+' for a
    space, lower-case hex, twice), JSON, Python's repr, and every 6-character piece of the raw
    and encoded forms (a secret cut in two by a URL parser leaks a piece)."""
    encoded = quote(secret, safe="")
    lower_hex = re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded)
    forms = {secret, encoded, quote(secret), quote_plus(secret), lower_hex,
             quote(encoded, safe=""), json.dumps(secret)[1:-1], repr(secret)[1:-1]}  # fmt: skip
    pieces = {form[i : i + 6] for form in (secret, encoded) for i in range(len(form) - 5)}
    return forms | pieces


def assert_nowhere(secret: str, *texts: str) -> None:
    for text in texts:
        found = sorted(s for s in spellings(secret) if s in text)
        assert not found, f"{found} in:\n{text}"


def assert_no_file_holds(secret: str, *roots: Path, skip: tuple[Path, ...] = ()) -> None:
    forms = [s.encode() for s in spellings(secret)]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path not in skip:
                data = path.read_bytes()
                found = [f for f in forms if f in data]
                assert not found, f"{found} in {path}"


def live_processes(*, parent: int | None = None, group: int | None = None) -> list[int]:
    """The live processes (zombies excluded) whose parent is `parent`, or in process `group`."""
    field, value = (1, parent) if parent is not None else (2, group)
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[field]) == value and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
