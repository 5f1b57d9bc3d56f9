"""Limits on what untrusted inputs may cost.

Every file or text a user hands gantrack says how big it is before it is expanded: an IDX or
.npy header its shape, a zip member its uncompressed size, an image its width and height, a
YAML document its aliases. The checks here read only those declarations and compare them with
a limit and with the bytes actually present, so that a hostile file (a gzip or zip bomb, a
header declaring a terabyte, a "billion laughs" params.yaml, a 30000x30000 PNG) is refused with
one line before anything large is allocated. What passes costs at most the named limit and,
when it is compressed, at most MAX_RATIO times its bytes on disk (any ratio below
RATIO_FREE_BYTES).

Limit violations raise LimitError, a UserError. Files that are merely unreadable (not a zip,
a damaged header) raise what the libraries raise, so that callers word them as before.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterable

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent, NodeEvent
from ruamel.yaml.nodes import MappingNode, SequenceNode

from gantrack.runtime.errors import UserError, one_line

# Sizes are decimal (1 GB = 10**9 bytes), as messages print them.
MAX_ARRAY_BYTES = 4 * 10**9  # one .npz array; a split of 1,000 RGB 1024x1024 images is 3.1 GB
MAX_IDX_BYTES = 2 * 10**9  # one IDX file's data; MNIST's train images are 47 MB
MAX_PICKLE_BYTES = 256 * 10**6  # one CIFAR-10 batch file (31 MB) and any array in it
MAX_MODEL_BYTES = 10**9  # a network's file: Inception's weights are 96 MB, its FID graph 96 MB
MAX_PARAMS_BYTES = 10**6  # params.yaml (gantrack's own is 10 kB)
MAX_YAML_NODES = 10_000  # values in params.yaml, aliases expanded (gantrack's has ~250)
MAX_YAML_DEPTH = 32  # nesting of params.yaml (sections, keys, lists: 4 levels)
MAX_IMAGE_PIXELS = 8192 * 8192  # one image of a folder dataset (a 61-megapixel photo fits)
# Deflate reaches ~1032:1 on constant data; real images and arrays stay below 20:1.
MAX_RATIO = 100
RATIO_FREE_BYTES = 64 * 10**6  # expanding to less than this is cheap whatever the ratio
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class LimitError(UserError):
    """An input declares more than gantrack reads: its message names the file, what it
    declares and the limit."""


def human(n: int | float) -> str:
    """A byte count for people: 512 B, 47.0 MB, 1.0 TB (decimal units)."""
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} PB"


def read_at_most(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """The file's bytes; LimitError when it holds more than limit (only limit + 1 are read,
    so a file that grows or never ends costs no more)."""
    with open(path, "rb") as f:
        raw = f.read(limit + 1)
        size = max(os.fstat(f.fileno()).st_size, len(raw))
    if len(raw) > limit:
        raise LimitError(f"{path}: {human(size)}, more than the {human(limit)} allowed for {what}")
    return raw


def check_size(path: str | os.PathLike, limit: int, what: str) -> int:
    """The file's size in bytes; LimitError when it is above limit. what: the kind of file, as
    in "more than the 1.0 GB allowed for {what}"."""
    size = os.stat(path).st_size
    if size > limit:
        raise LimitError(f"{path}: {human(size)}, more than the {human(limit)} allowed for {what}")
    return size


def check_expansion(where: str, declared: int, stored: int, max_ratio: float = MAX_RATIO) -> None:
    """LimitError when `declared` bytes are to come out of `stored` compressed ones at more
    than max_ratio:1 (and more than RATIO_FREE_BYTES): a decompression bomb, not data."""
    if declared > RATIO_FREE_BYTES and declared > max_ratio * stored:
        raise LimitError(
            f"{where} declares {human(declared)} from {human(stored)} on disk "
            f"({declared / max(stored, 1):,.0f}:1); real data stays below {max_ratio:g}:1"
        )


def check_zip(path: str | os.PathLike, max_total_bytes: int = MAX_MODEL_BYTES,
              max_ratio: float = MAX_RATIO) -> None:  # fmt: skip
    """Check a zip archive (a .keras model, an .npz) from its central directory, extracting
    nothing: members stored or deflated (other methods can expand without bound while they are
    read), each within max_ratio:1 of its compressed size, together at most max_total_bytes,
    and their compressed bytes present in the file. LimitError when not; zipfile.BadZipFile
    (or OSError) when it is no readable zip."""
    size = os.stat(path).st_size
    with zipfile.ZipFile(path) as archive:
        _check_members(path, archive.infolist(), size, max_ratio)
        total = sum(info.file_size for info in archive.infolist())
    if total > max_total_bytes:
        raise LimitError(
            f"{path}: its members declare {human(total)} in all, more than the "
            f"{human(max_total_bytes)} allowed"
        )


def _check_members(path, infos: list[zipfile.ZipInfo], size: int, max_ratio: float) -> None:
    for info in infos:
        where = f"{path}: member {info.filename}"
        if info.compress_type not in ZIP_METHODS:
            raise LimitError(
                f"{where} is compressed with zip method {info.compress_type}; only "
                f"{' and '.join(ZIP_METHODS.values())} members are read"
            )
        check_expansion(where, info.file_size, info.compress_size, max_ratio)
    stored = sum(info.compress_size for info in infos)
    if stored > size:
        raise LimitError(
            f"{path}: its members claim {human(stored)} on disk, the file has {human(size)}; "
            "it is truncated or crafted"
        )


def check_npz(path: str | os.PathLike, keys: Iterable[str], max_bytes: int = MAX_ARRAY_BYTES,
              fix: str = "") -> dict[str, tuple[tuple[int, ...], np.dtype]]:  # fmt: skip
    """Check the arrays `keys` of an .npz from their .npy headers before NumPy allocates them:
    no Python objects, at most max_bytes each, exactly as large as their zip member, and each
    member within check_zip's bounds. Keys the archive lacks are skipped (the caller says which
    it needs). fix: appended to LimitError messages ("; {fix}"). Unreadable archives raise what
    zipfile and NumPy raise (BadZipFile, ValueError, OSError, EOFError).

    Returns {key: (shape, dtype)} as the headers declare them, for the keys present: a caller
    checks what it expects before loading."""
    tail = f"; {fix}" if fix else ""
    wanted = {name for key in keys for name in (key, f"{key}.npy")}
    size = os.stat(path).st_size
    declared = {}
    with zipfile.ZipFile(path) as archive:
        members = [info for info in archive.infolist() if info.filename in wanted]
        try:
            _check_members(path, members, size, MAX_RATIO)
        except LimitError as exc:
            raise LimitError(f"{exc}{tail}") from None
        for info in members:
            where = f"{path}: member {info.filename}"
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0), (3, 0)):
                        raise ValueError(f"{info.filename}: .npy format version {version}")
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)  # fmt: skip
                    shape, _, dtype = read_header(member)
                    header = member.tell()
            # Methods are stored or deflate by now (_check_members); zipfile raises
            # RuntimeError for an encrypted member.
            except RuntimeError as exc:
                raise zipfile.BadZipFile(f"{info.filename}: {exc}") from None
            described = f"shape {shape} {dtype}"
            if dtype.hasobject:
                raise LimitError(f"{where} holds Python objects ({described}), which gantrack "
                                 f"never loads{tail}")  # fmt: skip
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > max_bytes:
                raise LimitError(f"{where} declares {described} = {human(nbytes)}, more than "
                                 f"the {human(max_bytes)} limit{tail}")  # fmt: skip
            if header + nbytes != info.file_size:
                raise LimitError(f"{where} declares {described} = {human(nbytes)} but holds "
                                 f"{human(info.file_size - header)}{tail}")  # fmt: skip
            declared[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    return declared


def check_pixels(path: str | os.PathLike, size: tuple[int, int]) -> None:
    """LimitError when an image of size (width, height), read from its header, has more than
    MAX_IMAGE_PIXELS pixels: decoding it would cost gigabytes."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        side = math.isqrt(MAX_IMAGE_PIXELS)
        raise LimitError(
            f"{path} is {width}x{height} = {width * height:,} pixels, more than the "
            f"{MAX_IMAGE_PIXELS:,} ({side}x{side}) allowed"
        )


def load_yaml(path: str | os.PathLike, max_bytes: int = MAX_PARAMS_BYTES,
              what: str = "a params file") -> object:  # fmt: skip
    """The YAML document in the file at path, loaded with the safe loader (plain data) once it
    passed read_at_most and check_yaml. Raises what reading and parsing raise (OSError,
    UnicodeDecodeError, YAMLError), and LimitError beyond the limits or for a value Python
    cannot hold (an integer of more than 4,300 digits)."""
    text = read_at_most(path, max_bytes, what).decode()
    check_yaml(text, path)
    try:
        return YAML(typ="safe", pure=True).load(text)
    except ValueError as exc:
        raise LimitError(f"{path}: a value cannot be read ({one_line(exc)})") from None


def check_yaml(text: str, path: str | os.PathLike) -> None:
    """LimitError when a YAML document nests deeper than MAX_YAML_DEPTH or holds more than
    MAX_YAML_NODES values once its aliases and merge keys are expanded, or refers to itself.

    Counted on the parser's events (no recursion) and on the composed node graph, where an
    alias is the node it names: memoised by node, so a "billion laughs" costs its own size to
    count, not a billion. Invalid YAML raises the YAMLError the loader would.
    """
    yaml = YAML(typ="safe", pure=True)
    depth = values = 0
    for event in yaml.parse(text):  # stops at the first value past a limit
        values += isinstance(event, NodeEvent)
        if isinstance(event, CollectionStartEvent):
            depth += 1
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        if depth > MAX_YAML_DEPTH:
            raise LimitError(
                f"{path}: nested more than {MAX_YAML_DEPTH} levels deep (line "
                f"{event.start_mark.line + 1}); params are sections of keys"
            )
        if values > MAX_YAML_NODES:
            raise LimitError(
                f"{path}: holds more than {MAX_YAML_NODES:,} values (line "
                f"{event.start_mark.line + 1}); params are sections of keys"
            )
    root = yaml.compose(text)
    if root is None:
        return
    nodes, depth = _extent(root, path)
    if depth > MAX_YAML_DEPTH:
        raise LimitError(f"{path}: nested more than {MAX_YAML_DEPTH} levels deep once its "
                         "aliases are expanded; write the values out")  # fmt: skip
    if nodes > MAX_YAML_NODES:
        raise LimitError(
            f"{path}: holds {nodes:,} values once its aliases (*name, <<: merges) are "
            f"expanded, more than the {MAX_YAML_NODES:,} allowed; write the values out"
        )


def _extent(root, path) -> tuple[int, int]:
    """(values, depth) of the tree a composed YAML node graph stands for, aliases expanded:
    each node is visited once (a depth-first walk on a stack, its results kept by id)."""

    def children(node) -> list:
        if isinstance(node, MappingNode):  # (key, value) pairs
            return [c for pair in node.value for c in pair]
        return list(node.value) if isinstance(node, SequenceNode) else []  # scalars: none

    done: dict[int, tuple[int, int]] = {}
    open_ = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            kids = [done[id(c)] for c in children(node)]
            done[id(node)] = (1 + sum(n for n, _ in kids), 1 + max((d for _, d in kids), default=0))
            open_.discard(id(node))
        elif id(node) in open_:
            raise LimitError(f"{path}: an alias names a node that contains it (a recursive "
                             "structure); params must be a tree")  # fmt: skip
        elif id(node) not in done:
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children(node))
    return done[id(root)]
