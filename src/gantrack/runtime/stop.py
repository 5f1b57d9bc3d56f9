"""Stopping on request: SIGTERM, SIGINT (Ctrl-C), SIGHUP, SIGUSR1 and SIGUSR2, or the end of
the `dvc repro` that started this process, become one `Stopped` exception raised where stopping
is safe. A signal the process was started ignoring (`nohup` ignores SIGHUP) stays ignored, and
SIGQUIT (Ctrl-backslash) keeps its default: the hard way out of a process stuck in native code.

Training asks for deferred stops: a signal is only recorded, and training raises Stopped at the
next batch boundary (`raise_if_requested`), so the last checkpoint and every record before it
stay whole. Other commands stop at once (the exception unwinds through `atomic_path`, so no
output is left half written). A second signal always stops at once.

A command holds signals from its first line (`hold`, in gantrack/__main__.py) until it installs
its own handling: one arriving while the CLI loads becomes the same one-line stop.

DVC passes no signal on to the stage it runs: killed alone, it leaves the stage running. When
started by DVC (DVC_STAGE is set), a watcher thread therefore treats the end of the `dvc`
process (or of the shell between it and this process) like a SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

logger = logging.getLogger(__name__)
# SIGUSR1 and SIGUSR2: their default action ended a process with no word and no cleanup (a
# training's MLflow run left RUNNING)
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
WATCH_SECONDS = 0.5


class Stopped(BaseException):
    """Work stopped on request; `signum` gives the exit code convention (128 + signum). A
    BaseException, like KeyboardInterrupt, so that no `except Exception` turns it into an
    error of another kind."""

    def __init__(self, reason: str, signum: int = signal.SIGTERM):
        super().__init__(reason)
        self.signum = signum


_state: dict = {"deferred": False, "requested": None, "held": False}


def hold() -> None:
    """Record SIGTERM, SIGINT and SIGHUP without acting on them until install(): for the
    fraction of a second a command takes to import its modules and read its arguments."""
    _state.update(requested=None, held=True)
    for signum in _handled():
        signal.signal(signum, _record)


def install(deferred: bool = False) -> None:
    """Handle SIGTERM, SIGINT and SIGHUP in this (main) thread; deferred: record the first one
    for raise_if_requested instead of raising. A stop recorded while held is kept (raise it
    with raise_if_requested). Also watch the `dvc` process when DVC started this one."""
    if not _state["held"]:
        _state["requested"] = None
    _state.update(deferred=deferred, held=False)
    for signum in _handled():
        signal.signal(signum, _handle)
    if os.environ.get("DVC_STAGE"):
        watched = _dvc_ancestors()
        if watched:
            threading.Thread(target=_watch, args=(watched,), daemon=True).start()


def _handled() -> list[int]:
    """SIGNALS but those ignored when the process started (read before any is handled)."""
    if "ignored" not in _state:
        _state["ignored"] = {s for s in SIGNALS if signal.getsignal(s) == signal.SIG_IGN}
    return [s for s in SIGNALS if s not in _state["ignored"]]


def raise_if_requested() -> None:
    """Raise the recorded stop, if any (call where stopping leaves everything whole)."""
    if _state["requested"] is not None:
        raise _state["requested"]


def _name(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def _record(signum, frame) -> None:
    if _state["requested"] is None:
        _state["requested"] = Stopped(f"stopped by {_name(signum)}", signum)


def _handle(signum, frame) -> None:
    name = _name(signum)
    stop = _state["requested"] or Stopped(f"stopped by {name}", signum)
    if _state["deferred"] and _state["requested"] is None:
        _state["requested"] = stop
        logger.debug("%s: stopping at the next batch (again to stop at once)", name)
        return
    _state["requested"] = stop
    raise stop


def _watch(pids: list[int]) -> None:
    """Send this process SIGTERM once any of pids has ended (a reparented orphan)."""
    stopped = threading.Event()
    while not stopped.wait(WATCH_SECONDS):
        gone = [pid for pid in pids if not alive(pid)]
        if gone:
            logger.warning("the dvc process that started this stage (pid %d) ended", gone[0])
            os.kill(os.getpid(), signal.SIGTERM)
            return


def alive(pid: int) -> bool:
    """Whether process pid runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no process can have
        return False
    except PermissionError:
        return True  # another user's process
    return _stat(pid)[0] != "Z"


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process from /proc; ("", 0) where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[1])


def _dvc_ancestors(limit: int = 6) -> list[int]:
    """This process's ancestors up to the nearest `dvc` one (the shell DVC runs a stage in, then
    DVC itself); [] when none is found (no /proc, or DVC_STAGE set by hand)."""
    chain, pid = [], os.getppid()
    while pid > 1 and len(chain) < limit:
        chain.append(pid)
        if _is_dvc(pid):
            return chain
        pid = _stat(pid)[1]
    return []


def _is_dvc(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [os.path.basename(a.decode(errors="replace")) for a in argv[:3]]
    return "dvc" in words
