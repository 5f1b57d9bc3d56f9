"""`gantrack serve`: MLflow's model server (what `mlflow models serve --env-manager local` runs,
behind a limit on a request's body: tracking.serving_app) on a generator gantrack checked first.

`mlflow models serve -m models:/...` straight from a store runs the code file the store holds
(a served generator is an MLflow model from code). gantrack downloads the model, checks it is
its own served generator (registry.served_copy) and starts MLflow's server on that checked copy,
without the store's credentials: the server never reads the store, so what the store holds by
then does not matter. The server gets no variable whose name or value holds a secret, and ends
when gantrack does, also on kill -9 (a parent-death signal); the copy is in gantrack's own
temporary folder (runtime.scratch), removed however gantrack ends.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from gantrack import tracking
from gantrack.runtime import redact
from gantrack.runtime.errors import UserError, one_line, printable
from gantrack.tracking import registry, serving_app

PR_SET_PDEATHSIG = 1  # prctl.h
PREFIX = "gantrack-serve-"  # the model's copy, in the process's temporary folder (scratch)


def _check_address(host: str, port: int) -> None:
    """One line when the server could not listen on host:port (unknown host, port in use):
    every address host resolves to is tried, as the server binds them."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UserError(f"--host: {printable(host)} cannot be resolved ({one_line(exc)})") from None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EAFNOSUPPORT:  # IPv6 off on this machine: skipped, as asyncio
                continue
            raise UserError(f"--port: cannot listen on {printable(shown)} ({exc.strerror}); "
                            "choose another port or host") from None  # fmt: skip


def run(model: str, host: str, port: int, workers: int) -> int:
    """Serve the generator behind model until the server stops; returns its exit code."""
    _check_address(host, port)  # before the model loads: MLflow's own refusal is a traceback
    tracking.configure(None)  # reads the store; creates nothing
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        local = registry.served_copy(model, Path(tmp))
        # uvicorn on MLflow's scoring app, as `mlflow models serve` starts it, behind a body limit
        app = f"{serving_app.__name__}:create_app"
        command = [sys.executable, "-m", "uvicorn", "--host", host, "--port", str(port),
                   "--workers", str(workers), "--factory", app]  # fmt: skip
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MLFLOW_TRACKING_") and not redact.secret_name(k)
               and not redact.holds_secret(v)}  # fmt: skip
        env[serving_app.MODEL_VARIABLE] = str(local)
        server = subprocess.Popen(command, env=env, preexec_fn=_ends_with(os.getpid()))
        try:
            return server.wait()
        finally:  # a stop or Ctrl-C here stops the server too
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=60)


def _ends_with(parent: int):
    """A preexec_fn (Linux): the child gets SIGTERM when parent dies, however it dies."""
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: no dlopen after fork

    def set_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0 or os.getppid() != parent:
            os._exit(1)  # no signal set, or the parent died before it was

    return set_death_signal
