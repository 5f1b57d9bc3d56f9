"""Real servers for tests, on 127.0.0.1: an MLflow tracking server and a PostgreSQL cluster."""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    """A port nothing listens on (for a server to take, or to find closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path, port: int):
    """`mlflow server` on 127.0.0.1 with a sqlite backend in root (two processes, ~4 s)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "no mlflow server"
            time.sleep(0.5)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


PG_PASSWORD = "s3cret-Pw"  # must never reach a param, tag, file, log line or error


@contextlib.contextmanager
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package) with password
    authentication, one database; yields its URL, password included."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found and not shutil.which("initdb"):
        pytest.skip("PostgreSQL server binaries not found (scripts/setup.sh --test installs them)")
    pytest.importorskip("psycopg2", reason="psycopg2 missing (pip install '.[postgres]')")
    bin_dir = found[-1].parent if found else Path(shutil.which("initdb")).parent
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        with contextlib.suppress(KeyError):
            pwd.getpwnam("postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        if not as_user:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
    root = Path(tempfile.mkdtemp(prefix="gantrack-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    port, data = free_port(), root / "data"

    def pg(tool: str, *args: str) -> None:
        subprocess.run([*as_user, str(bin_dir / tool), *args], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": PG_PASSWORD})  # fmt: skip

    (root / "pw").write_text(PG_PASSWORD)
    if as_user:
        shutil.chown(root / "pw", "postgres")
    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "scram-sha-256", "--pwfile",
           str(root / "pw"), "--no-sync", "--no-locale")  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start")
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
        yield f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:{port}/optuna"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
