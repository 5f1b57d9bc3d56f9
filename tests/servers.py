"""Real servers for tests, on 127.0.0.1: an MLflow tracking server, an MLflow model server and a
PostgreSQL cluster."""

import contextlib
import http.server
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    """A port nothing listens on (for a server to take, or to find closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def model_server(project: Path, model_uri: str, port: int, env: dict):
    """`gantrack serve --model model_uri` (MLflow's model server on a checked copy) on
    127.0.0.1 from project, with env (MLFLOW_TRACKING_URI naming the store); yields its URL once
    /ping answers."""
    server = subprocess.Popen(
        ["gantrack", "serve", "--model", model_uri, "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    try:
        while not answers(f"http://127.0.0.1:{port}/ping"):
            assert server.poll() is None, server.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the model server did not come up"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(root: Path, port: int, password: str | None = None):
    """`mlflow server` on 127.0.0.1 with a sqlite backend in root (two processes, ~4 s).

    With a password: MLflow's basic-auth app, every request but /health needs user `admin`
    with that password (its user database is root/auth.db; its config file, which holds the
    password, lives outside root and is deleted when the server stops). The URL yielded carries
    no credentials either way."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    auth = []
    config_dir = Path(tempfile.mkdtemp(prefix="gantrack-auth-"))
    if password is not None:
        (config_dir / "auth.ini").write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{root / 'auth.db'}\n"
            "admin_username = admin\n"
            f"admin_password = {password.replace('%', '%%')}\n"  # configparser's escape
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(config_dir / "auth.ini")
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)  # CSRF of its sign-up page
        auth = ["--app-name", "basic-auth"]
    server = subprocess.Popen(
        ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"), *auth],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no mlflow server"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # it failed to start
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(config_dir, ignore_errors=True)


PG_PASSWORD = "s3cret-Pw"  # must never reach a param, tag, file, log line or error


@contextlib.contextmanager
def postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package) with password
    authentication, one database; yields its URL, password included, as users write it
    (`postgresql://`: SQLAlchemy's default driver, psycopg 3)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found and not shutil.which("initdb"):
        pytest.skip("PostgreSQL server binaries not found (scripts/setup.sh --test installs them)")
    pytest.importorskip("psycopg", reason="psycopg missing (pip install '.[postgres]')")
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
           str(root / "pw"), "--no-sync", "--no-locale", "-E", "UTF8")  # fmt: skip
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start")
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/optuna"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def answers(url: str) -> bool:
    """Whether url answers a GET (any status below 400) within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


class LyingProxy:
    """A hostile MLflow server: it forwards every request to a real one and answers each
    artifact download with the real file followed by `extra` zero bytes, while the listings
    stay true. `extra_sent` counts the extra bytes the client took before it hung up."""

    DOWNLOAD = "/api/2.0/mlflow-artifacts/artifacts/"

    def __init__(self, upstream: str, extra: int):
        self.upstream, self.extra, self.extra_sent = upstream, extra, 0

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = urllib.request.Request(
            self.upstream + handler.path, data=handler.rfile.read(length) if length else None,
            method=handler.command,
            headers={k: v for k, v in handler.headers.items() if k.lower() != "host"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, headers, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        download = handler.command == "GET" and handler.path.startswith(self.DOWNLOAD)
        lying = download and status == 200
        handler.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date",
                                   "server"):  # fmt: skip
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body) + (self.extra if lying else 0)))
        handler.end_headers()
        handler.wfile.write(body)
        chunk = bytes(2**20)
        with contextlib.suppress(OSError):
            while lying and self.extra_sent < self.extra:
                handler.wfile.write(chunk)
                self.extra_sent += len(chunk)


@contextlib.contextmanager
def lying_proxy(upstream: str, extra: int):
    """A LyingProxy in front of upstream on 127.0.0.1; yields (its URL, the proxy)."""
    proxy = LyingProxy(upstream, extra)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            proxy.forward(self)

        do_POST = do_PATCH = do_DELETE = do_PUT = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()
