"""A gantrack process's temporary files, in one folder of its own: removed when the process
ends, and by the next gantrack command when it was killed (kill -9 runs no cleanup).

What goes there: TensorFlow's autograph files, a trial's folder, a model's private copy, a
served model's checked copy (and the model server's own files: TMPDIR names the folder for
child processes too). Before, every process killed with -9 left them in the temporary folder.

`install()`, early in the CLI, makes <temporary folder>/gantrack-PID-XXXXXXXX (0700, made
exclusively with a random part), holds an flock on its HELD file for the life of the process,
and points `tempfile` and TMPDIR at it. It first removes this user's folders of that kind whose
lock no process holds: a process in another PID namespace or on another host sharing the
folder holds its lock too; a folder without a lock file, another user's, a link or a FIFO in
place of the lock are left alone. The lock file is locked before it gets its name, so a folder
being made is never taken for an orphan.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "gantrack-"
HELD = ".held"  # locked (flock) while its process runs


def install() -> Path:
    """This process's folder for temporary files (see the module); once per process."""
    if tempfile.tempdir and Path(tempfile.tempdir).name.startswith(PREFIX):
        return Path(tempfile.tempdir)
    base = Path(tempfile.gettempdir())
    remove_orphans(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    lock = os.open(folder / f"{HELD}-new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held until the process ends (the descriptor with it)
    os.rename(folder / f"{HELD}-new", folder / HELD)
    tempfile.tempdir = str(folder)
    os.environ["TMPDIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def remove_orphans(base: Path) -> None:
    """Delete this user's process folders in base whose lock no process holds."""
    for folder in base.glob(f"{PREFIX}[0-9]*-*"):
        try:
            info = folder.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            # non-blocking: a FIFO planted as the lock file would wait for a writer for ever
            lock = os.open(folder / HELD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(lock).st_mode):
                continue  # not a lock file gantrack made
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its process runs
        finally:
            os.close(lock)
        shutil.rmtree(folder, ignore_errors=True)
