"""Readers of the standard dataset file formats: IDX (MNIST, Fashion-MNIST) and the CIFAR-10
python batches. Every problem with a user's file is a one-line UserError naming the file."""

from __future__ import annotations

import codecs
import gzip
import math
import operator
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gantrack.data.splits import Split
from gantrack.io import limits
from gantrack.runtime.errors import UserError, one_line

_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a uint8 array of the shape its header declares.

    Format (http://yann.lecun.com/exdb/mnist/): bytes 0x00 0x00 <dtype code> <ndim>, ndim
    big-endian uint32 dimensions, then the data. Only dtype code 0x08 (uint8) is supported.
    The header is read first: the data it declares must be within limits.MAX_IDX_BYTES and,
    gzipped, within limits.MAX_RATIO of the file's size; no more than that (and one byte, to
    find trailing garbage) is ever decompressed.
    """
    path = Path(path)
    fix = "re-download or reinstall the original file"
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; check data.source_dir") from None
    except OSError as exc:
        raise UserError(f"cannot read {path} ({one_line(exc)}); check its permissions") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        gz = f.peek(2)[:2] == b"\x1f\x8b"  # gzipped whatever its name
        stream = gzip.GzipFile(fileobj=f) if gz else f
        try:
            return _idx_data(path, stream, size, gz, fix)
        except (OSError, EOFError, zlib.error) as exc:
            if gz:
                raise UserError(
                    f"{path} is a corrupt gzip file ({one_line(exc)}); re-download it"
                ) from None
            raise UserError(f"cannot read {path} ({one_line(exc)})") from None


def _idx_data(path: Path, f: BinaryIO, size: int, gz: bool, fix: str) -> np.ndarray:
    """The array of an open IDX stream (decompressed when gz; size: the file's on disk)."""
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise UserError(
            f"{path} is not an IDX file (bad magic {head[:4].hex() or 'empty'}, "
            f"expected 0000<type><ndim>); {fix}"
        )
    if head[2] != 0x08:
        raise UserError(
            f"{path} has IDX dtype code 0x{head[2]:02x}; only 0x08 (unsigned byte) "
            f"is supported; convert the file to uint8 IDX"
        )
    ndim = head[3]
    header = 4 + 4 * ndim
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise UserError(
            f"{path} is truncated inside its header (expected {header} bytes, "
            f"found {4 + len(raw_dims)}); {fix}"
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    expected = math.prod(dims)
    if expected > limits.MAX_IDX_BYTES:
        raise limits.LimitError(
            f"{path} declares shape {dims} = {limits.human(expected)}, more than the "
            f"{limits.human(limits.MAX_IDX_BYTES)} an IDX file may hold; {fix}"
        )
    if gz:
        limits.check_expansion(str(path), expected, size)
    elif size - header != expected:  # a plain file's data is all there before it is read
        found = size - header
        if found < expected:
            raise UserError(
                f"{path} is truncated (expected {expected} bytes of data for shape "
                f"{dims}, found {found}); {fix}"
            )
        raise UserError(
            f"{path} has {found - expected} bytes of trailing garbage after the "
            f"{expected} bytes its header declares; {fix}"
        )
    data = np.empty(expected, np.uint8)
    found = _read_into(f, memoryview(data))
    if found < expected:
        raise UserError(
            f"{path} is truncated (expected {expected} bytes of data for shape "
            f"{dims}, found {found}); {fix}"
        )
    if f.read(1):
        raise UserError(
            f"{path} has trailing garbage after the {expected} bytes its header declares; {fix}"
        )
    return data.reshape(dims)


def _read_into(f: BinaryIO, view: memoryview, chunk: int = 2**20) -> int:
    """Fill view from f in chunks (a GzipFile reads into a temporary bytes object the size of
    what is asked); returns how many bytes there were."""
    done = 0
    while done < len(view):
        got = f.readinto(view[done : done + chunk])
        if not got:
            break
        done += got
    return done


def read_idx_dir(
    directory: str | os.PathLike, prefix_train: str = "train", prefix_test: str = "t10k"
) -> tuple[Split, Split]:
    """Read {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `directory`.

    Returns (train, test); images uint8 (N, rows, cols, 1), labels int64 (N,).
    """
    directory = Path(directory)
    names = [
        f"{p}-{k}-ubyte"
        for p in (prefix_train, prefix_test)
        for k in ("images-idx3", "labels-idx1")
    ]
    found = {
        n: next((c for c in (directory / n, directory / f"{n}.gz") if c.is_file()), None)
        for n in names
    }
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise UserError(
            f"{directory} lacks IDX files {', '.join(missing)} (each may end in "
            f".gz); expected {', '.join(names)} there"
        )
    train = _idx_split(found[names[0]], found[names[1]])
    test = _idx_split(found[names[2]], found[names[3]])
    return train, test


def _idx_split(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(
            f"{images_path} and {labels_path} hold shapes {images.shape} and {labels.shape}, "
            f"expected (N, rows, cols) and (N,); check they are images-idx3 / labels-idx1 files"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels; use matching files from the same release"
        )
    return Split(images[..., np.newaxis], labels.astype(np.int64))


def read_cifar10_dir(directory: str | os.PathLike) -> tuple[Split, Split]:
    """Read the "CIFAR-10 python version": data_batch_1..5 and test_batch.

    `directory` holds those files or the extracted `cifar-10-batches-py/` folder. Each batch is
    a pickle of {b"data": uint8 (N, 3072) in CHW order, b"labels": list of N ints}, read with
    a restricted unpickler (see `_CifarUnpickler`): a crafted batch cannot run code.
    Returns (train, test); images uint8 (N, 32, 32, 3), labels int64 (N,).
    """
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    missing = [n for n in [*_CIFAR_BATCHES, "test_batch"] if not (directory / n).is_file()]
    if missing:
        raise UserError(
            f"{directory} lacks CIFAR-10 batches {', '.join(missing)}; point "
            f"data.source_dir at the extracted cifar-10-batches-py folder"
        )
    parts = [_cifar_batch(directory / n) for n in _CIFAR_BATCHES]
    train = Split(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    )
    return train, _cifar_batch(directory / "test_batch")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds: dicts, lists, bytes, str, numbers and NumPy
    arrays. Any other global (os.system, builtins.eval, ...) is refused before it is called,
    so a crafted file cannot run code; plain containers need no globals at all. What the
    allowed globals make (arrays, through `_array`, with no Python objects; bytes, through
    `_codecs.encode`; scalars) is charged to a budget of twice the file's size plus
    BUDGET_SLACK: a few bytes of pickle can call them again and again on one memoised string,
    and must not allocate gigabytes. A genuine batch spends about the file's size twice (its
    pixels as bytes, then as an array)."""

    ALLOWED = frozenset({
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell bytes
    })  # fmt: skip
    BUDGET_SLACK = 2**20

    def __init__(self, file, size: int, **kwargs):
        super().__init__(file, **kwargs)
        self.budget = 2 * size + self.BUDGET_SLACK

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not part of a CIFAR-10 batch")
        made = {"ndarray": self._array, "_reconstruct": self._reconstruct, "dtype": _dtype,
                "encode": self._encode}  # fmt: skip
        if name in made:
            return made[name]
        real = super().find_class(module, name)  # scalar, _frombuffer: charged by their bytes

        def charged(*args):
            self._charge(sum(len(a) for a in args if isinstance(a, bytes | bytearray)), name)
            return real(*args)

        return charged

    def _charge(self, nbytes: int, what: str) -> None:
        self.budget -= nbytes
        if nbytes > limits.MAX_PICKLE_BYTES or self.budget < 0:
            raise pickle.UnpicklingError(
                f"refusing {what} ({limits.human(nbytes)}): more than a CIFAR-10 batch of this "
                "size holds"
            )

    def _array(self, shape, dtype=float, *args) -> np.ndarray:
        """np.ndarray(shape, dtype, ...), charged."""
        dims = tuple(shape) if isinstance(shape, tuple | list) else (shape,)
        dtype = _dtype(dtype)
        nbytes = math.prod(map(operator.index, dims)) * dtype.itemsize
        self._charge(nbytes, f"an array of shape {dims} {dtype}")
        return np.ndarray(dims, dtype, *args)

    def _reconstruct(self, subtype, shape, dtype) -> np.ndarray:
        """How pickles make an empty array that __setstate__ (pickle's BUILD) then fills with
        a shape, a dtype and bytes of its own: that is charged too (subtype is `_array`, the
        only class the unpickler hands out)."""
        array = self._array(shape, dtype).view(_ChargedArray)
        array.charge = self._charge
        return array

    def _encode(self, text, encoding="utf-8", *args) -> bytes:
        """How protocol-2 pickles spell bytes: latin1, one byte a character; no other codec
        (unicode_escape makes ten bytes of one)."""
        if not isinstance(text, str) or args or codecs.lookup(encoding).name != "iso8859-1":
            raise pickle.UnpicklingError("refusing _codecs.encode other than latin1 of a string")
        self._charge(len(text), "bytes")
        return codecs.encode(text, "latin1")


class _ChargedArray(np.ndarray):
    """An array whose pickle state (shape, dtype, data) is charged before NumPy allocates it;
    read as a plain ndarray afterwards (np.asarray)."""

    def __setstate__(self, state):
        shape, dtype = state[-4], _dtype(state[-3])  # (version,) shape, dtype, fortran, data
        nbytes = math.prod(map(operator.index, shape)) * dtype.itemsize
        self.charge(nbytes, f"an array of shape {tuple(shape)} {dtype}")
        super().__setstate__(state)


def _dtype(*args) -> np.dtype:
    """np.dtype(*args) without Python objects: their arrays are filled item by item."""
    dtype = np.dtype(*args)
    if dtype.hasobject or not dtype.isnative:  # a swapped byte order: a copy of every array
        raise pickle.UnpicklingError(f"refusing dtype {dtype}: a CIFAR-10 batch holds numbers "
                                     "in this machine's byte order")  # fmt: skip
    return dtype


def _cifar_batch(path: Path) -> Split:
    fix = "re-extract cifar-10-python.tar.gz"
    try:
        size = limits.check_size(path, limits.MAX_PICKLE_BYTES, "a CIFAR-10 batch (31 MB)")
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, size, encoding="bytes").load()
    except limits.LimitError:
        raise
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise UserError(
            f"{path} is not a readable CIFAR-10 pickle ({one_line(exc)}); {fix}"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise UserError(f"{path} lacks the b'data' / b'labels' entries of a CIFAR-10 batch; {fix}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(
            f"{path} holds data {data.dtype} {data.shape}, expected uint8 (N, 3072); {fix}"
        )
    if labels.shape != (len(data),):
        raise UserError(f"{path} has {len(data)} images but {labels.size} labels; {fix}")
    # Rows are 1024 red, then 1024 green, then 1024 blue values: CHW, and we want HWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)
