"""Atomic file writes: an output is either complete or absent, never half written."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import resource
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gantrack.io import limits
from gantrack.runtime import stop
from gantrack.runtime.errors import UserError, one_line


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for `path`; rename it onto `path` only if the block succeeds.

    The temporary path is `path`'s own name inside a new folder beside it (`.tmp-PID-XXXX-name`,
    mode 0700, made exclusively with a random part: tempfile.mkdtemp), so Keras and NumPy see
    the suffix they insist on and no one else can put a file or a symbolic link where the
    writer opens its file (a shared folder such as /tmp: a link planted at a predictable name
    made the write clobber the link's target). The rename is atomic on POSIX because both names
    are on one file system; the file is flushed to the disk before it, and the directory after
    it, so that a power loss, not only a kill, leaves the old file or the new one, never an
    empty one. A file replaced keeps its permissions (_keep_mode).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    try:
        folder = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", suffix=f"-{_tag(path)}",
                                       dir=path.parent))  # fmt: skip
    except OSError as exc:  # the file the caller named, in the error it sees
        exc.filename = str(path)
        raise
    tmp = folder / path.name
    try:
        yield tmp
        _fsync(tmp)
        _keep_mode(path, tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        if exc.filename in (str(tmp), str(folder)):  # the file the caller named, in its error
            exc.filename = str(path)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _keep_mode(path: Path, tmp: Path) -> None:
    """tmp gets the permissions of the regular file path it replaces (0600, 0640, ...), not
    through a link and not when its owner may not write it (a read-only link into DVC's cache
    is replaced by a file of the usual mode); no set-id or sticky bits."""
    with contextlib.suppress(FileNotFoundError):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IWUSR:
            os.chmod(tmp, info.st_mode & 0o777)


def _tag(path: Path) -> str:
    """The start of path's name, in its temporary folder's name (the whole of a long name
    would pass the file system's 255 bytes a name)."""
    return path.name[:64]


def _fsync(path: Path) -> None:
    """Flush path (a file or a directory) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_orphans(path: Path) -> None:
    """Delete what a killed process (kill -9) of this user left while writing path: its
    temporary folder (or, written before those, file), when its process is gone. Another
    user's are left alone (their process may live in another PID namespace)."""
    for tmp in path.parent.glob(f".tmp-*-{glob.escape(_tag(path))}"):
        pid = tmp.name.split("-", 2)[1]
        try:
            info = tmp.lstat()
        except OSError:
            continue
        if not pid.isdigit() or info.st_uid != os.getuid() or stop.alive(int(pid)):
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, values: dict) -> None:
    """Write values as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from a file this project wrote, which a user or a crash may have changed:
    anything else (not JSON, not an object, larger than MAX_JSON_BYTES) is a UserError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{path}: larger than {MAX_JSON_BYTES} bytes, not what gantrack "
                            "wrote; run the stage that writes it again")  # fmt: skip
        values = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not the JSON gantrack wrote ({one_line(exc)}); run the stage "
                        "that writes it again") from None  # fmt: skip
    if not isinstance(values, dict):
        raise UserError(f"{path}: not a JSON object; run the stage that writes it again")
    return values


MAX_JSON_BYTES = 2**24  # the stages' JSON files (meta.json with its class names: a few kB)


class NotRegularFileError(OSError):
    """open_regular's refusal: a FIFO, a device or a folder where a file was expected."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """path opened for reading if it is a regular file; NotRegularFileError for anything else,
    which is opened without waiting (a FIFO swapped in has no writer) and never read."""
    file = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        file.close()
        raise NotRegularFileError(f"{path} is not a regular file")
    return file


def copy_regular_file(path: Path, copy: Path, limit: int, what: str) -> None:
    """path's bytes into copy, read once through one descriptor: a regular file (no FIFO, no
    device) of at most limit bytes and no more bytes than its size said (a /proc file says 0
    and reads on; a file that grows). Else UserError (one line) naming it `what`."""
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    try:
        with open_regular(path) as src, open(copy, "wb") as dst:
            info = os.fstat(src.fileno())
            if info.st_size > limit:
                raise limits.LimitError(f"{what}: {limits.human(info.st_size)}, more than the "
                                        f"{limits.human(limit)} allowed")  # fmt: skip
            left = info.st_size + 1
            while left > 0 and (chunk := src.read(min(left, 2**20))):
                dst.write(chunk)
                left -= len(chunk)
    except NotRegularFileError:
        raise UserError(f"{what}: not a regular file") from None
    except OSError as exc:
        raise UserError(f"{what}: cannot be read ({one_line(exc)})") from None
    if left <= 0:
        raise UserError(f"{what}: it reads on past the {info.st_size} bytes its size says (a "
                        "file that grows, or not a file)")  # fmt: skip


@dataclasses.dataclass
class Cap:
    """What capped_folder saw: exceeded once the folder's files held more than the cap."""

    exceeded: bool = False


@contextlib.contextmanager
def capped_folder(folder: Path, max_bytes: int, poll: float = 0.02) -> Iterator[Cap]:
    """Bound what code gantrack does not control (MLflow's artifact downloads) writes into
    folder: a thread sums the sizes of folder's files every `poll` seconds and, once they
    exceed max_bytes, makes every write that grows a file of this process fail with EFBIG
    (RLIMIT_FSIZE 0; Python ignores SIGXFSZ) until the block ends: the limit is the process's,
    so other threads' writes fail too in that window, which only a refused download opens. A
    store sending more than it listed is stopped within one poll; the caller checks `exceeded`
    and refuses."""
    cap, done, lock = Cap(), threading.Event(), threading.Lock()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)

    def watch() -> None:
        while not done.wait(poll):
            if _folder_bytes(folder) > max_bytes:
                with lock:  # never after the block has restored the limit
                    if not done.is_set():
                        cap.exceeded = True
                        resource.setrlimit(resource.RLIMIT_FSIZE, (0, limit[1]))
                return

    watcher = threading.Thread(target=watch, name="capped-folder", daemon=True)
    watcher.start()
    try:
        yield cap
    finally:
        with lock:
            done.set()
            resource.setrlimit(resource.RLIMIT_FSIZE, limit)  # process-wide: restored first
        cap.exceeded = cap.exceeded or _folder_bytes(folder) > max_bytes


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):  # a temporary file renamed or gone meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total
