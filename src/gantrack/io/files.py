"""Atomic file writes: an output is either complete or absent, never half written."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from gantrack.runtime import stop


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix (Keras and NumPy insist on `.keras` / `.npz`). The
    rename is atomic on POSIX because both names are in one directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_orphans(path: Path) -> None:
    """Delete temporary files for path that a killed process (kill -9) left behind."""
    for tmp in path.parent.glob(f".tmp-*-{path.name}"):
        pid = tmp.name.split("-", 2)[1]
        if pid.isdigit() and not stop.alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, values: dict) -> None:
    """Write values as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file this project wrote."""
    return json.loads(Path(path).read_text())
