"""A full disk and a read-only project, for real: the project on a tiny or read-only tmpfs
mount. Each is one line on stderr, exit code 2, and nothing half written."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from project import cli, one_line_error

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path):
    with _tmpfs(tmp_path / "project", "64k") as project:
        (project / "params.yaml").write_text("data:\n  dataset: digits\n")
        proc = cli(project, "prepare")
        one_line_error(proc, "prepare", "No space left on device")
        assert _files(project) == ["params.yaml"]  # no .tmp-* and no partial split


def test_a_read_only_project_is_one_line(tmp_path):
    with _tmpfs(tmp_path / "project", "4m") as project:
        (project / "params.yaml").write_text("data:\n  dataset: digits\n")
        subprocess.run(["mount", "-o", "remount,ro", str(project)], check=True)
        proc = cli(project, "prepare")
        one_line_error(proc, "prepare", "Read-only file system")
        assert _files(project) == ["params.yaml"]
