"""Hostile inputs cost a bounded amount: gzip and zip bombs, headers declaring terabytes, YAML
alias bombs and deep nesting, decompression-bomb images, crafted pickles. Each is a real file
written here (streaming, so the test itself stays small) and handed to the real CLI, which must
end with one line on stderr, exit code 2, nothing written and a small peak memory."""

from __future__ import annotations

import io
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from PIL import Image
from project import user_env

from gantrack import config
from gantrack.data import load_split, readers
from gantrack.evaluation import scoring
from gantrack.io import limits
from gantrack.runtime.errors import UserError

GB = 10**9
MAX_PEAK = 1 * GB  # TensorFlow alone takes ~0.7 GB: these refusals come before it
ADDRESS_SPACE = 1_500_000_000  # RLIMIT_AS for commands that never import TensorFlow
MB_OF_ZEROS = bytes(2**20)


# --- running the CLI and measuring it ---------------------------------------------------------


@dataclass
class Run:
    code: int
    stderr: str
    peak: int  # peak resident set size, bytes


def _gantrack(cwd: Path, *args: str, address_space: int | None = None,
              no_tensorflow: bool = False, timeout: float = 120) -> Run:  # fmt: skip
    """`gantrack *args` in cwd; its peak RSS from os.wait4 (ru_maxrss, kB on Linux).
    address_space: RLIMIT_AS of the child. no_tensorflow: `import tensorflow` fails in it."""
    env = user_env()
    if no_tensorflow:
        fake = cwd.parent / "no-tensorflow"
        fake.mkdir(exist_ok=True)
        (fake / "tensorflow.py").write_text(
            "raise ImportError('tensorflow imported before the inputs were checked')\n"
        )
        env["PYTHONPATH"] = str(fake)

    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        launch = [sys.executable, "-c", LAUNCH, str(address_space or 0), str(peak)]
        proc = subprocess.run([*launch, "gantrack", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        return Run(proc.returncode, proc.stderr, int(peak.read_text()) * 1024)


# A small launcher forks gantrack and reads its peak RSS (ru_maxrss, kB on Linux) with wait4:
# a child forked by pytest itself would count pytest's own pages (TensorFlow's, once a test in
# this process imported it) until it execs.
LAUNCH = """
import os, resource, sys
limit, out, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid == 0:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execvp(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
open(out, "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _refused(run: Run, command: str, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line `gantrack COMMAND: error: ...` holding every
    fragment, and a peak memory well below what the input declares."""
    assert run.code == 2, run.stderr[-3000:]
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"gantrack {command}: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    assert run.peak < MAX_PEAK, f"peak RSS {run.peak / GB:.2f} GB: {line}"
    return line


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- real bombs, written without holding them ------------------------------------------------


def _deflated(prefix: bytes, block: bytes, times: int) -> Iterator[bytes]:
    """A raw deflate stream of prefix + block * times. A full flush after each piece resets the
    compressor, so the block's compressed bytes decode alike wherever they stand: compressed
    once, written `times` times."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    yield compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    for _ in range(times):
        yield piece
    yield compressor.flush()


def write_gzip_bomb(path: Path, prefix: bytes, megabytes: int) -> Path:
    """A gzip file of prefix followed by `megabytes` MiB of zeros (4096: 4 GB from ~4 MB)."""
    crc = zlib.crc32(prefix)
    for _ in range(megabytes):
        crc = zlib.crc32(MB_OF_ZEROS, crc)
    size = len(prefix) + megabytes * len(MB_OF_ZEROS)
    with path.open("wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip, deflate, no name
        for piece in _deflated(prefix, MB_OF_ZEROS, megabytes):
            f.write(piece)
        f.write(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return path


def idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write_png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid grayscale PNG of width x height black pixels: a few hundred kB that decode to
    width * height bytes. Rows go in blocks of equal size, each compressed once."""
    rows = max(1, 2**22 // (width + 1))
    while height % rows:
        rows -= 1
    block = bytes((width + 1) * rows)  # filter byte 0, then the row's pixels

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    adler = 1
    for _ in range(height // rows):
        adler = zlib.adler32(block, adler)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        pieces = list(_deflated(b"", block, 1))  # prefix flush, the block, the end
        body = b"\x78\xda" + pieces[0]
        f.write(chunk(b"IDAT", body))
        repeated = chunk(b"IDAT", pieces[1])
        for _ in range(height // rows):
            f.write(repeated)
        f.write(chunk(b"IDAT", pieces[2] + struct.pack(">I", adler)))
        f.write(chunk(b"IEND", b""))
    return path


def npy_header(shape: tuple, descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                            "shape": shape})  # fmt: skip
    return buf.getvalue()


def write_npz_bomb(path: Path, megabytes: int, key: str = "images") -> Path:
    """An .npz whose `key` is a deflated member of `megabytes` MiB of zeros (a real array)."""
    n = megabytes * 2**20
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"{key}.npy", "w", force_zip64=True) as member,
    ):
        member.write(npy_header((n // 64, 8, 8, 1)))
        for _ in range(megabytes):
            member.write(MB_OF_ZEROS)
    return path


def test_the_crafted_bombs_are_what_they_claim(tmp_path):
    """Small versions of the writers above decode to exactly what they describe."""
    import gzip

    gz = write_gzip_bomb(tmp_path / "x.gz", idx_header(3, 2), 3)
    assert gzip.decompress(gz.read_bytes()) == idx_header(3, 2) + bytes(3 * 2**20)
    with Image.open(write_png_bomb(tmp_path / "x.png", 300, 200)) as image:
        assert image.size == (300, 200) and image.mode == "L"
        assert not np.asarray(image).any()
    with np.load(write_npz_bomb(tmp_path / "x.npz", 2)) as npz:
        assert npz["images"].shape == (2 * 2**20 // 64, 8, 8, 1)


# --- 1. IDX: a 4 MB gzip that inflates to 4 GB ----------------------------------------------


@pytest.fixture
def idx_project(tmp_path):
    """A project whose data.source_dir holds the four Fashion-MNIST IDX files; the train
    images file is for the test to write."""
    source, project = tmp_path / "source", tmp_path / "project"
    source.mkdir()
    project.mkdir()
    for name, dims in (("train-labels-idx1-ubyte", (2,)), ("t10k-images-idx3-ubyte", (2, 28, 28)),
                       ("t10k-labels-idx1-ubyte", (2,))):  # fmt: skip
        (source / name).write_bytes(idx_header(*dims) + bytes(int(np.prod(dims))))
    (project / "params.yaml").write_text(
        f"data:\n  dataset: fashion_mnist\n  source_dir: {source}\n"
    )
    return project, source / "train-images-idx3-ubyte.gz"


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((100_000, 200, 200), "declares shape (100000, 200, 200) = 4.0 GB, more than the 2.0 GB"),
        ((20_000, 200, 200), "declares 800.0 MB from 4.2 MB on disk"),  # 188:1
        ((60_000, 28, 28), "has trailing garbage after the 47040000 bytes its header declares"),
    ],
)
def test_a_gzip_bomb_idx_file_is_refused_without_inflating_it(idx_project, dims, message):
    project, images = idx_project
    write_gzip_bomb(images, idx_header(*dims), 4096)
    assert images.stat().st_size < 5 * 10**6  # 4 MB on disk, 4 GB inflated
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", str(images), message)
    assert _files(project) == {"params.yaml"}


def test_a_plain_idx_file_is_checked_against_its_size_before_it_is_read(tmp_path):
    path = tmp_path / "x-ubyte"
    path.write_bytes(idx_header(2**31, 2) + bytes(10))
    with pytest.raises(limits.LimitError, match=r"declares shape \(2147483648, 2\) = 4\.3 GB"):
        readers.read_idx(path)
    path.write_bytes(idx_header(2**20, 100) + bytes(10))
    with pytest.raises(UserError, match=r"truncated \(expected 104857600 bytes.*found 10\)"):
        readers.read_idx(path)


# --- 2. .npz: a header declaring a terabyte, a zip bomb, objects -----------------------------


def _member(path: Path, name: str, data: bytes, method=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


HOSTILE_NPZ = {
    "a terabyte": (
        lambda p: _member(p, "images.npy", npy_header((10**12,)) + bytes(100)),
        ["member images.npy declares shape (1000000000000,) uint8 = 1.0 TB, more than the "
         "4.0 GB limit; is it a samples file?"],
    ),
    "a zip bomb": (
        lambda p: write_npz_bomb(p, 100),
        ["member images.npy declares 104.9 MB from", "real data stays below 100:1"],
    ),
    "objects": (
        lambda p: _member(p, "images.npy", npy_header((4, 8, 8, 1), "|O") + bytes(2048)),
        ["member images.npy holds Python objects (shape (4, 8, 8, 1) object)"],
    ),
    "bzip2": (
        lambda p: _member(p, "images.npy", npy_header((4, 8, 8, 1)) + bytes(256),
                          zipfile.ZIP_BZIP2),
        ["member images.npy is compressed with zip method 12; only stored and deflate"],
    ),
    "a short member": (
        lambda p: _member(p, "images.npy", npy_header((10**8, 8, 8, 1)) + bytes(256)),
        ["member images.npy declares shape (100000000, 8, 8, 1) uint8 = 6.4 GB"],
    ),
    "a member that lies": (
        lambda p: _member(p, "images.npy", npy_header((1000, 8, 8, 1)) + bytes(256)),
        ["declares shape (1000, 8, 8, 1) uint8 = 64.0 kB but holds 256 B"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_NPZ)
def test_fid_refuses_a_hostile_npz_before_tensorflow_is_imported(tmp_path, case):
    make, fragments = HOSTILE_NPZ[case]
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("data:\n  dataset: digits\n")
    make(project / "a.npz")
    np.savez(project / "b.npz", images=np.zeros((5, 8, 8, 1), np.uint8))
    before = _files(project)
    run = _gantrack(project, "fid", "a.npz", "b.npz", no_tensorflow=True)
    _refused(run, "fid", "a.npz: ", *fragments)
    assert _files(project) == before


@pytest.mark.parametrize("case", HOSTILE_NPZ)
def test_every_npz_reader_refuses_them(tmp_path, case):
    make, fragments = HOSTILE_NPZ[case]
    path = make(tmp_path / "a.npz")
    for read in (load_split, scoring.load_samples):
        with pytest.raises(UserError) as info:
            read(path)
        assert fragments[0].split(";")[0] in str(info.value) and "\n" not in str(info.value)


def test_reference_statistics_are_checked_too(tmp_path):
    path = _member(tmp_path / "ref.npz", "features.npy", npy_header((10**6, 10**6), "<f4"))
    with pytest.raises(limits.LimitError, match=r"features\.npy declares shape .* = 4\.0 TB"):
        scoring.load_reference_features(path)
    with pytest.raises(UserError, match=r"not a readable reference \.npz.*dvc repro reference"):
        scoring.load_reference(path)


def test_arrays_within_the_limits_still_load(tmp_path):
    path = tmp_path / "ok.npz"
    images = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8, 1)
    np.savez_compressed(path, images=images, labels=np.zeros(2, np.int64))
    np.testing.assert_array_equal(scoring.load_samples(path), images)
    assert len(load_split(path)) == 2
    assert limits.check_npz(path, ("images", "labels", "absent")) == {
        "images": ((2, 8, 8, 1), np.dtype(np.uint8)), "labels": ((2,), np.dtype(np.int64))
    }  # fmt: skip


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 1024, 1024, 3), np.float64), "images must be uint8 (N>=2, H, W, C), got"),
        (np.zeros((2, 8, 8, 8, 8, 8, 8, 8), np.uint8), "images must be uint8"),
        (np.zeros((2, 2048, 2048, 3), np.uint8), "images are (2048, 2048, 3), the dataset's"),
    ],
)  # fmt: skip
def test_samples_of_the_wrong_kind_are_refused_from_their_header_before_loading(
    tmp_path, images, message
):
    import tracemalloc

    path = tmp_path / "wrong.npz"
    np.savez(path, images=images)  # stored, not compressed: no ratio check refuses it first
    tracemalloc.start()
    try:
        with pytest.raises(UserError, match=re.escape(message)):
            scoring.load_samples(path, shape=(8, 8, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < images.nbytes / 10, (peak, images.nbytes)  # NumPy reports to tracemalloc


# --- 3. params.yaml: alias bombs, merge bombs, nesting, size ---------------------------------


def _laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _merges() -> str:  # each level merges the one before twice: 2**n pairs while loading
    lines = ["m0: &m0 {x: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], y{i}: 1}}" for i in range(1, 15)]
    return "\n".join(lines) + "\n"


HOSTILE_PARAMS = {
    "billion laughs": (_laughs, "holds 4,412,961,516 values once its aliases"),
    "merge keys": (_merges, "values once its aliases (*name, <<: merges) are expanded"),
    "3000 brackets": (lambda: "data: " + "[" * 3000 + "]" * 3000 + "\n",
                      "nested more than 32 levels deep (line 1)"),
    "an alias chain": (
        lambda: "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 3000)),
        "nested more than 32 levels deep once its aliases are expanded"),
    "a recursive alias": (lambda: "data: &a [1, *a]\n", "an alias names a node that contains it"),
    "a huge number": (lambda: "base:\n  seed: " + "9" * 100_000 + "\n", "a value cannot be read"),
    "a flood of values": (lambda: "data: [" + "1, " * 300_000 + "]\n",
                          "holds more than 10,000 values (line 1)"),
}  # fmt: skip


@pytest.mark.parametrize("case", HOSTILE_PARAMS)
def test_hostile_params_are_one_line_before_anything_expands(tmp_path, case):
    make, message = HOSTILE_PARAMS[case]
    (tmp_path / "bomb.yaml").write_text(make())
    run = _gantrack(tmp_path, "--params", "bomb.yaml", "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", "bomb.yaml: ", message)
    assert _files(tmp_path) == {"bomb.yaml"}


def test_a_params_file_larger_than_a_megabyte_is_not_read(tmp_path):
    with (tmp_path / "params.yaml").open("wb") as f:
        f.truncate(2 * GB)  # sparse: 2 GB of zeros, none of it on disk
    run = _gantrack(tmp_path, "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", "params.yaml: 2.0 GB, more than the 1.0 MB allowed for a params file")


def test_the_projects_own_params_and_anchors_within_the_limits_load(tmp_path):
    config.load(Path(__file__).resolve().parents[1] / "params.yaml")
    (tmp_path / "p.yaml").write_text(
        "generate: &g {seed: 3, batch_size: 16}\nevaluate: {<<: *g, kid_subsets: 5}\n"
    )
    assert config.load(tmp_path / "p.yaml").evaluate.batch_size == 16


# --- 4. images: decompression bombs in a folder dataset --------------------------------------


@pytest.fixture
def image_folder(tmp_path):
    source, project = tmp_path / "images", tmp_path / "project"
    source.mkdir()
    project.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 20), (20 * i, 0, 0)).save(source / f"{i:02d}.png")

    def params(bad_images: str) -> None:
        (project / "params.yaml").write_text(
            f"data:\n  dataset: folder\n  source_dir: {source}\n  image_size: 8\n"
            f"  bad_images: {bad_images}\n"
        )

    return project, source, params


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (30_000, 30_000, "bomb.png is not a readable image (DecompressionBombError"),
        (9_000, 9_000, "bomb.png is 9000x9000 = 81,000,000 pixels, more than the 67,108,864"),
    ],
)
def test_an_image_bomb_is_refused_or_skipped_from_its_header(image_folder, width, height,
                                                              message):  # fmt: skip
    project, source, params = image_folder
    write_png_bomb(source / "bomb.png", width, height)
    assert (source / "bomb.png").stat().st_size < 2 * 10**6
    params("refuse")
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", "data.source_dir: ", message, "set data.bad_images: skip")
    assert _files(project) == {"params.yaml"}
    params("skip")
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    assert run.code == 0, run.stderr
    assert "skipped 1 unreadable file(s)" in run.stderr and run.peak < MAX_PEAK
    assert (
        len(load_split(project / "data/prepared/train.npz"))
        + len(load_split(project / "data/prepared/test.npz"))
        == 12
    )


def test_the_largest_image_allowed_is_read_within_the_memory_bound(image_folder):
    """8192x8192 RGBA turned by its EXIF orientation: each full-size copy is 268 MB, and the
    reading used to hold five at once (1.35 GB)."""
    project, source, params = image_folder
    exif = Image.Exif()
    exif[0x0112] = 6
    side = int(limits.MAX_IMAGE_PIXELS**0.5)
    Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(source / "big.png", exif=exif,
                                                             compress_level=1)  # fmt: skip
    params("refuse")
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    assert run.code == 0, run.stderr
    assert run.peak < MAX_PEAK, f"peak RSS {run.peak / GB:.2f} GB"


def test_only_the_first_frame_of_an_animation_is_decoded(tmp_path):
    from gantrack.data import folder

    frames = [Image.new("L", (64, 64), i) for i in range(200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    picture = folder._read(tmp_path / "a.gif", "L", 8, "refuse")
    assert picture.shape == (8, 8) and not picture.any()


def test_files_of_other_formats_are_not_decoded_whatever_their_name(tmp_path):
    from gantrack.data import folder

    Image.new("RGB", (16, 16)).save(tmp_path / "x.png", format="TIFF")
    assert folder._mode(tmp_path / "x.png") is None
    with pytest.raises(UserError, match=r"x\.png is not a readable image"):
        folder._read(tmp_path / "x.png", "RGB", 8, "refuse")


# --- 5. CIFAR-10 batches: size, and arrays a pickle asks for ---------------------------------


class _Call:
    """Pickles as a call of func(*args) (what a crafted batch can ask the unpickler for)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def cifar_project(tmp_path):
    source, project = tmp_path / "cifar", tmp_path / "project"
    source.mkdir()
    project.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (source / name).write_bytes(b"")
    (project / "params.yaml").write_text(
        f"data:\n  dataset: cifar10\n  source_dir: {source}\nmodel:\n  generator:\n    layers: 3\n"
    )
    return project, source / "data_batch_1"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (_Call(np.ndarray, (10**7, 3072), np.dtype(np.uint8)),
         "refusing an array of shape (10000000, 3072) uint8 (30.7 GB)"),
        (_Call(np.ndarray, (10**9,), np.dtype(object)), "refusing dtype object"),
    ],
)  # fmt: skip
def test_a_pickle_asking_for_a_huge_array_is_refused(cifar_project, call, message):
    project, batch = cifar_project
    batch.write_bytes(pickle.dumps({b"data": call, b"labels": []}, protocol=2))
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", "data_batch_1 is not a readable CIFAR-10 pickle", message)
    assert _files(project) == {"params.yaml"}


def test_a_cifar_batch_larger_than_the_limit_is_not_unpickled(cifar_project):
    project, batch = cifar_project
    with batch.open("wb") as f:
        f.truncate(2 * limits.MAX_PICKLE_BYTES)  # sparse
    run = _gantrack(project, "prepare", address_space=ADDRESS_SPACE)
    _refused(run, "prepare", "data_batch_1: 512.0 MB, more than the 256.0 MB allowed")


# --- 6. zip archives (.keras models): check_zip ----------------------------------------------


def test_check_zip_reads_only_the_central_directory(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", '{"a": 1}' * 1000)
        archive.writestr("model.weights.h5", np.random.default_rng(0).bytes(10**5))
    limits.check_zip(good, max_total_bytes=10**6, max_ratio=100)
    with pytest.raises(limits.LimitError, match=r"declare 108\.0 kB in all, more than the "):
        limits.check_zip(good, max_total_bytes=10**5, max_ratio=100)

    bomb = write_npz_bomb(tmp_path / "bomb.keras", 100, key="model.weights")
    with pytest.raises(limits.LimitError, match=r"member model\.weights\.npy declares 104\.9 MB"):
        limits.check_zip(bomb, max_total_bytes=10**12, max_ratio=100)
    limits.check_zip(bomb, max_total_bytes=10**12, max_ratio=2000)  # what the caller allows

    other = _member(tmp_path / "bz.zip", "config.json", b"{}", zipfile.ZIP_BZIP2)
    with pytest.raises(limits.LimitError, match="zip method 12; only stored and deflate"):
        limits.check_zip(other)

    lying = tmp_path / "lying.zip"
    raw = bytearray(_member(lying, "config.json", b"{}" * 100).read_bytes())
    directory = raw.rindex(b"PK\x01\x02")  # central directory entry: compressed size at +20
    raw[directory + 20 : directory + 24] = struct.pack("<I", 10**9)
    lying.write_bytes(bytes(raw))
    with pytest.raises(limits.LimitError, match="claim 1.0 GB on disk, the file has"):
        limits.check_zip(lying)

    (tmp_path / "not.zip").write_bytes(b"not a zip")
    with pytest.raises(zipfile.BadZipFile):
        limits.check_zip(tmp_path / "not.zip")


# --- 7. HDF5 weights in a .keras archive: shape bombs ------------------------------------------


@pytest.fixture(scope="module")
def generator_keras(tmp_path_factory) -> Path:
    """A real generator saved by Keras (TensorFlow is imported here, hence the slow marks)."""
    import tiny

    path = tmp_path_factory.mktemp("keras") / "good.keras"
    tiny.gan().sampler.save(path)
    return path


def rewrite_weights(src: Path, dst: Path, change) -> Path:
    """A copy of the .keras archive src whose model.weights.h5 went through change(file, name
    of its first dataset), an h5py.File opened for writing; members stored, as Keras writes."""
    import h5py

    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = dst.with_suffix(".h5")
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as f:
        change(f, _datasets(f)[0])
    members["model.weights.h5"] = weights.read_bytes()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def _datasets(f) -> list[str]:
    """The names of the datasets in an h5py File, in visiting order."""
    names = []
    f.visititems(lambda name, node: names.append(name) if hasattr(node, "dtype") else None)
    return names


def _declaring(n: int, **layout):
    """A change for rewrite_weights: the first dataset becomes n float32 values of which
    nothing is stored (fill value only), with layout (chunks, maxshape, ...)."""

    def change(f, name):
        del f[name]
        f.create_dataset(name, shape=(n,), dtype="float32", compression="gzip", **layout)

    return change


@pytest.mark.slow
def test_a_shape_bomb_in_the_weights_is_refused_from_their_headers(tmp_path, generator_keras):
    """A dataset declaring 1 GiB that stores nothing (below Keras' own 4 GiB guard): refused by
    `gantrack sample` before TensorFlow is imported, at a small peak memory."""
    import h5py

    bomb = rewrite_weights(generator_keras, tmp_path / "bomb.keras",
                           _declaring(2**28, chunks=(2**20,)))  # fmt: skip
    assert bomb.stat().st_size < 10**6
    with zipfile.ZipFile(bomb) as archive, h5py.File(archive.open("model.weights.h5")) as f:
        first = f[_datasets(f)[0]]
        assert (first.nbytes, first.id.get_storage_size()) == (2**30, 0)  # 1 GiB, none stored
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    run = _gantrack(tmp_path, "sample", "--model", "bomb.keras", "--out", "grid.png",
                    no_tensorflow=True)  # fmt: skip
    _refused(run, "sample", "--model: bomb.keras: its model.weights.h5 declares 1.1 GB of "
             "weights in ", "shape bomb")  # fmt: skip
    assert not (tmp_path / "grid.png").exists()


def _strings(f, name):
    """The first dataset becomes 10 strings: HDF5 stores them as variable-length values."""
    del f[name]
    f[name] = ["x" * 1000] * 10


HOSTILE_WEIGHTS = {
    # 4 values in one 256 MiB chunk: HDF5 inflates the chunk whole to read them.
    "a huge chunk": (_declaring(4, chunks=(2**26,), maxshape=(None,)),
                     "declares 268.5 MB of weights in "),
    "variable-length values": (_strings, "holds variable-length values (object)"),
    "a 'dtype' attribute of many values": (
        lambda f, name: f[name].attrs.create("dtype", ["bfloat16"] * 3),
        "has a 'dtype' attribute of shape (3,), not one name",
    ),
    "external data": (
        lambda f, name: f.create_dataset("outside", (4,), "float32",
                                         external=[("/dev/zero", 0, 16)]),
        "keeps its data outside the file (external or virtual)",
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", HOSTILE_WEIGHTS)
def test_hostile_weights_are_refused_by_the_keras_check(tmp_path, generator_keras, case):
    from gantrack.io import keras_files

    change, fragment = HOSTILE_WEIGHTS[case]
    crafted = rewrite_weights(generator_keras, tmp_path / "x.keras", change)
    where = r"x\.keras: its model\.weights\.h5 (dataset [\w/]+ )?"  # the dataset it names
    with pytest.raises(UserError, match=where + re.escape(fragment)):
        keras_files.check(crafted, "x.keras", inputs=2)


def _swap_weights(src: Path, dst: Path, name: str, data: bytes) -> Path:
    """A copy of the .keras archive src with a member name holding data for its weights."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for member in archive.namelist():
            if member != "model.weights.h5":
                out.writestr(member, archive.read(member))
        out.writestr(name, data)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(4096),
         "its model.weights.h5 is not readable HDF5 (OSError: Unable to"),
        ("model.weights.npz", b"", "it holds no model.weights.h5; gantrack loads only Keras'"),
    ],
)  # fmt: skip
def test_weights_that_are_not_hdf5_are_one_line(tmp_path, generator_keras, name, data, fragment):
    from gantrack.io import keras_files

    crafted = _swap_weights(generator_keras, tmp_path / "x.keras", name, data)
    with pytest.raises(UserError, match=re.escape(f"x.keras: {fragment}")) as caught:
        keras_files.check(crafted, "x.keras")
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_weights_check_allows_its_slack_and_visits_a_bounded_number_of_objects(
    tmp_path, generator_keras, monkeypatch
):
    from gantrack.io import keras_files

    keras_files.check(generator_keras, "good.keras", inputs=2)
    # An unwritten dataset of 512 KiB (fill value only) is within the 1 MiB slack.
    unwritten = lambda f, _: f.create_dataset("extra", (2**17,), "float32")  # noqa: E731
    extra = rewrite_weights(generator_keras, tmp_path / "slack.keras", unwritten)
    keras_files.check(extra, "slack.keras", inputs=2)
    monkeypatch.setattr(keras_files, "MAX_H5_OBJECTS", 5)
    with pytest.raises(UserError, match="good.keras: its model.weights.h5 holds more than 5 obj"):
        keras_files.check(generator_keras, "good.keras")


def test_human_sizes():
    assert [limits.human(n) for n in (0, 999, 1000, 47_040_000, 4 * GB, 10**12, 10**18)] == [
        "0 B", "999 B", "1.0 kB", "47.0 MB", "4.0 GB", "1.0 TB", "1000.0 PB"
    ]  # fmt: skip
