"""A full disk and a read-only project, for real: the project on a tiny or read-only tmpfs
mount. Each is one line on stderr, exit code 2, and nothing half written. A power loss cannot
be had here: what survives one, a file flushed before its rename, is checked on the calls."""

import contextlib
import errno
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from project import cli, one_line_error

from gantrack.io import files

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


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


@needs_root
def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path):
    with _tmpfs(tmp_path / "project", "64k") as project:
        (project / "params.yaml").write_text("data:\n  dataset: digits\n")
        proc = cli(project, "prepare")
        one_line_error(proc, "prepare", "No space left on device")
        assert _files(project) == ["params.yaml"]  # no .tmp-* and no partial split


@needs_root
def test_a_read_only_project_is_one_line(tmp_path):
    with _tmpfs(tmp_path / "project", "4m") as project:
        (project / "params.yaml").write_text("data:\n  dataset: digits\n")
        subprocess.run(["mount", "-o", "remount,ro", str(project)], check=True)
        proc = cli(project, "prepare")
        one_line_error(proc, "prepare", "Read-only file system")
        assert _files(project) == ["params.yaml"]


def test_a_file_is_on_the_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    """atomic_path flushes the new file's bytes before the rename and the directory after it:
    after a power loss the old file or the new one is there, never an empty one."""
    path = tmp_path / "out" / "stats.json"
    files.write_json(path, {"n": 1})
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    files.write_json(path, {"n": 2, "long": "x" * 100})
    (tmp, size), (src, dst), (directory, _) = [e[1:] for e in events]
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert tmp == src and dst == str(path) and size == path.stat().st_size > 0
    assert directory == str(path.parent)
    assert "x" * 100 in path.read_text() and not list(path.parent.glob(".tmp-*"))


def test_a_link_planted_where_the_temporary_file_was_is_not_followed(tmp_path):
    """The temporary file lives in a new 0700 folder with a random name: a symbolic link at
    the name it had before (`.tmp-PID-name`, PID readable from /proc) clobbered its target."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (shared / f".tmp-{os.getpid()}-out.json").symlink_to(victim)
    files.write_json(shared / "out.json", {"n": 1})
    assert victim.read_text() == "precious"
    assert json.loads((shared / "out.json").read_text()) == {"n": 1}
    assert not (shared / "out.json").is_symlink()


def test_a_file_with_a_long_name_is_written_and_a_killed_writers_folder_for_it_removed(
    tmp_path,
):
    """Its temporary folder names the start of its name: the whole name and the folder's own
    part passed the 255 bytes a name may have (ENAMETOOLONG)."""
    path = tmp_path / ("x" * 245 + ".json")
    dead = tmp_path / f".tmp-{_dead_pid()}-abcd1234-{path.name[:64]}"
    dead.mkdir()
    files.write_json(path, {"n": 1})
    assert json.loads(path.read_text()) == {"n": 1} and not dead.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_file_keeps_its_mode_and_a_new_one_gets_the_umasks(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("a: 1\n")
    path.chmod(0o640)
    with files.atomic_path(path) as tmp:
        tmp.write_text("a: 2\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "a: 2\n"
    umask = os.umask(0o022)
    os.umask(umask)
    files.write_json(tmp_path / "new.json", {})
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o666 & ~umask
    # a read-only link into a cache (DVC's), a set-id file: the usual mode, no special bits
    cached = tmp_path / "cache"
    cached.write_text("{}")
    cached.chmod(0o444)
    (tmp_path / "linked.json").symlink_to(cached)
    files.write_json(tmp_path / "linked.json", {})
    assert stat.S_IMODE((tmp_path / "linked.json").lstat().st_mode) == 0o666 & ~umask
    (tmp_path / "setid.json").write_text("{}")
    (tmp_path / "setid.json").chmod(0o2755)
    files.write_json(tmp_path / "setid.json", {})
    assert stat.S_IMODE((tmp_path / "setid.json").stat().st_mode) == 0o755


@needs_root
def test_what_killed_writers_left_is_removed_only_when_it_is_this_users(tmp_path):
    dead = _dead_pid()
    mine = tmp_path / f".tmp-{dead}-abcd1234-out.json"
    mine.mkdir()
    (mine / "out.json").write_text("half")
    old_style = tmp_path / f".tmp-{dead}-out.json"  # a temporary file, as written before
    old_style.write_text("half")
    theirs = tmp_path / f".tmp-{dead}-efgh5678-out.json"
    theirs.mkdir()
    os.chown(theirs, 12345, 12345)
    files.write_json(tmp_path / "out.json", {"n": 1})
    assert not mine.exists() and not old_style.exists() and theirs.is_dir()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_capped_folder_stops_writes_past_its_cap_and_then_lifts(tmp_path):
    """What code gantrack does not control writes into a capped folder (MLflow's downloads)
    stops with EFBIG once the folder holds more than the cap; the process writes again after."""
    folder = tmp_path / "download"
    folder.mkdir()
    with (
        files.capped_folder(folder, 2**20, poll=0.01) as cap,
        pytest.raises(OSError) as error,
        open(folder / "big", "wb") as f,
    ):
        for _ in range(10_000):  # 10 GB, were it not stopped
            f.write(bytes(2**20))
            f.flush()
    assert error.value.errno == errno.EFBIG and cap.exceeded
    assert (folder / "big").stat().st_size < 2**30
    (tmp_path / "after").write_bytes(bytes(2**21))  # the limit is lifted
    with files.capped_folder(folder / "none", 2**20) as quiet:
        pass
    assert not quiet.exceeded
