"""Tests for gantrack.data: readers on synthetic files written here, loaders, subsets, I/O."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import re
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from gantrack import config, data
from gantrack.config import DataConfig
from gantrack.data import Split, datasets, readers
from gantrack.runtime.errors import UserError

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False, code: int = 0x08) -> Path:
    """Write `array` as IDX: 0x0000, dtype code, ndim, big-endian uint32 dims, raw bytes."""
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_idx_dir(directory: Path, shape=(28, 28), n_train=7, n_test=4, gz=True, seed=0):
    """Write the four IDX files; returns {("train"|"test", "images"|"labels"): array}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        arrays[part, "images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[part, "labels"] = rng.integers(0, 10, n, dtype=np.uint8)
    for key, array in arrays.items():
        write_idx(directory / (IDX_NAMES[key] + (".gz" if gz else "")), array, gz=gz)
    return arrays


def make_split(n=20, shape=(4, 4, 1)) -> Split:
    """Image i is filled with value i, label i: pairing is visible after subsetting."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, *shape))
    return Split(images.copy(), np.arange(n, dtype=np.int64))


def fake_keras(monkeypatch, name: str, load_data) -> None:
    """Make `import keras` inside gantrack.data see a stub whose datasets.<name> is given."""
    dataset = types.SimpleNamespace(load_data=load_data)
    stub = types.SimpleNamespace(datasets=types.SimpleNamespace(**{name: dataset}))
    monkeypatch.setitem(sys.modules, "keras", stub)


# --- read_idx ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(5, 28, 28), (9,), (3, 4, 5, 6)])
def test_read_idx_round_trips_exactly(tmp_path, gz, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = readers.read_idx(write_idx(tmp_path / "a-ubyte", array, gz=gz))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(
        readers.read_idx(write_idx(tmp_path / "x", array, gz=True)), array
    )
    np.testing.assert_array_equal(readers.read_idx(write_idx(tmp_path / "y.gz", array)), array)


def _raises(match: str, func, *args, **kwargs):
    """Assert func(*args, **kwargs) raises a one-line UserError matching `match`."""
    with pytest.raises(UserError, match=match) as info:
        func(*args, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 20)
    _raises(re.escape(str(path)) + ".*bad magic", readers.read_idx, path)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx(tmp_path / "t-ubyte", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:1000])
    _raises(re.escape(str(path)) + r".*truncated.*7840.*found 984", readers.read_idx, path)


def test_read_idx_rejects_truncated_header(tmp_path):
    path = tmp_path / "h-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    _raises(re.escape(str(path)) + ".*truncated", readers.read_idx, path)


def test_read_idx_rejects_trailing_garbage(tmp_path):
    path = write_idx(tmp_path / "g-ubyte", np.zeros((2, 3), np.uint8))
    path.write_bytes(path.read_bytes() + b"junk")
    _raises(re.escape(str(path)) + ".*4 bytes of trailing garbage", readers.read_idx, path)


def test_read_idx_rejects_non_uint8_dtype_code(tmp_path):
    path = write_idx(tmp_path / "f-ubyte", np.zeros((2, 3), np.uint8), code=0x0D)
    _raises(re.escape(str(path)) + ".*dtype code 0x0d", readers.read_idx, path)


def test_read_idx_rejects_missing_file(tmp_path):
    path = tmp_path / "nope-ubyte.gz"
    _raises(re.escape(str(path)) + ".*does not exist", readers.read_idx, path)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "c-ubyte.gz"
    whole = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 1, 0]) + bytes(range(256)))
    path.write_bytes(whole[: len(whole) // 2])
    _raises(re.escape(str(path)) + ".*corrupt gzip", readers.read_idx, path)


# --- read_idx_dir -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_dir_reads_four_files(tmp_path, gz):
    arrays = write_idx_dir(tmp_path, gz=gz)
    train, test = readers.read_idx_dir(tmp_path)
    for part, split in (("train", train), ("test", test)):
        assert split.images.shape == (len(arrays[part, "labels"]), 28, 28, 1)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        np.testing.assert_array_equal(split.images[..., 0], arrays[part, "images"])
        np.testing.assert_array_equal(split.labels, arrays[part, "labels"])


def test_read_idx_dir_accepts_mixed_compression(tmp_path):
    arrays = write_idx_dir(tmp_path, gz=True)
    plain = tmp_path / IDX_NAMES["test", "labels"]
    (tmp_path / (plain.name + ".gz")).unlink()
    write_idx(plain, arrays["test", "labels"])
    _, test = readers.read_idx_dir(tmp_path)
    np.testing.assert_array_equal(test.labels, arrays["test", "labels"])


def test_read_idx_dir_lists_missing_files(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    err = _raises("t10k-images-idx3-ubyte", readers.read_idx_dir, tmp_path)
    assert "train-images-idx3-ubyte" not in str(err).split("expected")[0]
    assert str(tmp_path) in str(err)


def test_read_idx_dir_rejects_label_count_mismatch(tmp_path):
    write_idx_dir(tmp_path, n_train=7)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(6, np.uint8), gz=True)
    _raises(
        r"7 images but .*train-labels-idx1-ubyte\.gz has 6 labels", readers.read_idx_dir, tmp_path
    )


# --- read_cifar10_dir -------------------------------------------------------------------------


def write_cifar(directory: Path, n=5, seed=0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write the six pickled batches (CHW rows, as the original); returns name -> (data, labels)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        (directory / name).write_bytes(pickle.dumps({b"data": rows, b"labels": labels}))
        batches[name] = (rows, labels)
    return batches


@pytest.mark.parametrize("nested", [False, True])
def test_read_cifar10_dir_transposes_chw_to_hwc(tmp_path, nested):
    batches = write_cifar(tmp_path / "cifar-10-batches-py" if nested else tmp_path)
    train, test = readers.read_cifar10_dir(tmp_path)
    assert train.images.shape == (25, 32, 32, 3) and test.images.shape == (5, 32, 32, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    rows, labels = batches["data_batch_2"]
    # Row layout: channel c, row r, col k is at c * 1024 + r * 32 + k.
    for i, c, r, k in [(0, 0, 0, 0), (1, 2, 31, 0), (4, 1, 5, 30), (3, 2, 31, 31)]:
        assert train.images[5 + i, r, k, c] == rows[i, c * 1024 + r * 32 + k]
    expected = batches["test_batch"][0].reshape(5, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(test.images, expected)
    assert list(train.labels[5:10]) == labels


def test_read_cifar10_dir_lists_missing_batches(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    _raises("data_batch_3", readers.read_cifar10_dir, tmp_path)


class _Payload:
    """Unpickling this calls os.system: what a crafted dataset file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_read_cifar10_dir_reads_batches_of_every_pickle_protocol(tmp_path, protocol):
    rows = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"batch_label": "b", b"data": rows, b"labels": [0, 1, 2], b"filenames": [b"a"]}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    train, test = readers.read_cifar10_dir(tmp_path)
    assert train.images.shape == (15, 32, 32, 3) and test.labels.tolist() == [0, 1, 2]


def test_read_cifar10_dir_refuses_a_batch_that_would_run_code(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Payload(marker)}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    _raises("data_batch_1 is not a readable CIFAR-10 pickle.*refusing posix.system",
            readers.read_cifar10_dir, tmp_path)  # fmt: skip
    assert not marker.exists()


def test_a_batch_that_copies_one_string_many_times_is_refused_before_it_costs_more(tmp_path):
    """Bytes made by _codecs.encode from one memoised 1 MB string, 64 times: 64 MB from a 1 MB
    file (any number of times more in a larger one). Refused once the allowed calls have made
    twice the file's size."""
    write_cifar(tmp_path)

    def text(value: str) -> bytes:
        raw = value.encode()
        return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE

    memo = b"c_codecs\nencode\nq\x000" + text("A" * 2**20) + text("latin1") + b"\x86q\x010"
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x02" + memo + b"](" + b"h\x00h\x01R" * 64
                                            + b"e.")  # fmt: skip
    _raises("data_batch_1 is not a readable CIFAR-10 pickle.*refusing bytes",
            readers.read_cifar10_dir, tmp_path)  # fmt: skip


@pytest.mark.parametrize(("dtype", "needle"), [("<f8", "refusing an array of shape"),
                                              (">f8", "refusing dtype >f8")])  # fmt: skip
def test_arrays_filled_again_and_again_from_one_buffer_are_refused(tmp_path, dtype, needle):
    """Pickle's BUILD gives an empty array a new shape and data (ndarray.__setstate__): 64
    arrays of 1 MB from one memoised 1 MB buffer. Charged like any array (a swapped byte order
    is refused outright: NumPy copies every such array)."""
    write_cifar(tmp_path)

    def name(module, attr):
        return b"c" + module + b"\n" + attr + b"\n"

    payload = bytes(2**20)
    pickled = (b"\x80\x02" + name(b"numpy.core.multiarray", b"_reconstruct") + b"q\x00"
               + name(b"numpy", b"ndarray") + b"q\x01" + name(b"numpy", b"dtype") + b"q\x02"
               + b"B" + len(payload).to_bytes(4, "little") + payload + b"q\x030](")  # fmt: skip
    for _ in range(64):  # _reconstruct(ndarray, (0,), b"b"), then BUILD (1, (2**17,), dtype, ...)
        shape = b"J" + (2**17).to_bytes(4, "little") + b"\x85"
        pickled += (b"h\x00h\x01K\x00\x85C\x01b\x87R(K\x01" + shape + b"h\x02X\x03\x00\x00\x00"
                    + dtype.encode() + b"\x85R\x89h\x03tb")  # fmt: skip
    (tmp_path / "data_batch_1").write_bytes(pickled + b"e.")
    _raises(f"data_batch_1 is not a readable CIFAR-10 pickle.*{needle}",
            readers.read_cifar10_dir, tmp_path)  # fmt: skip


def test_read_cifar10_dir_rejects_corrupt_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    _raises(re.escape(str(tmp_path / "test_batch")), readers.read_cifar10_dir, tmp_path)


def test_read_cifar10_dir_rejects_label_count_mismatch(tmp_path):
    write_cifar(tmp_path)
    batch = {b"data": np.zeros((5, 3072), np.uint8), b"labels": [1, 2]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    _raises("data_batch_1 has 5 images but 2 labels", readers.read_cifar10_dir, tmp_path)


# --- load_dataset -----------------------------------------------------------------------------


def test_load_dataset_unknown_name_lists_allowed_names():
    err = _raises("data.dataset: unknown value 'cifar100'", data.load_dataset,
                  DataConfig(dataset="cifar100"))  # fmt: skip
    for name in data.DATASETS:
        assert name in str(err)


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_load_dataset_reads_idx_source_dir(tmp_path, name):
    arrays = write_idx_dir(tmp_path, gz=False)
    train, test = data.load_dataset(DataConfig(dataset=name, source_dir=str(tmp_path)))
    assert train.images.shape == (7, 28, 28, 1) and test.images.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(test.images[..., 0], arrays["test", "images"])


def test_load_dataset_rejects_wrong_image_shape(tmp_path):
    write_idx_dir(tmp_path, shape=(10, 10))
    _raises(r"expected \(28, 28, 1\)", data.load_dataset,
            DataConfig(dataset="fashion_mnist", source_dir=str(tmp_path)))  # fmt: skip


def test_load_dataset_cifar10_source_dir(tmp_path):
    write_cifar(tmp_path)
    train, test = data.load_dataset(DataConfig(dataset="cifar10", source_dir=str(tmp_path)))
    assert train.images.shape == (25, 32, 32, 3) and len(test) == 5


def test_load_dataset_keras_fallback_adds_channel_axis_and_flattens_labels(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.arange(6).reshape(6, 1)  # keras cifar10 labels are (N, 1)
    fake_keras(monkeypatch, "cifar10", lambda: ((x, y), (x[:2], y[:2])))
    train, test = data.load_dataset(DataConfig(dataset="cifar10"))
    np.testing.assert_array_equal(train.images, x)
    assert train.labels.shape == (6,) and train.labels.dtype == np.int64 and len(test) == 2

    gray = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    fake_keras(monkeypatch, "mnist", lambda: ((gray, np.arange(3)), (gray, np.arange(3))))
    train, _ = data.load_dataset(DataConfig(dataset="mnist"))
    np.testing.assert_array_equal(train.images[..., 0], gray)


def test_load_dataset_fashion_download_failure_says_install_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "absent")

    def offline():
        raise OSError("Temporary failure in name resolution\nmore details")

    fake_keras(monkeypatch, "fashion_mnist", offline)
    _raises(
        r"apt-get install dataset-fashion-mnist.*data\.source_dir",
        data.load_dataset,
        DataConfig(dataset="fashion_mnist"),
    )


def test_load_dataset_fashion_prefers_system_dir(monkeypatch, tmp_path):
    arrays = write_idx_dir(tmp_path)
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path)
    fake_keras(monkeypatch, "fashion_mnist", lambda: pytest.fail("must not download"))
    train, _ = data.load_dataset(DataConfig(dataset="fashion_mnist"))
    np.testing.assert_array_equal(train.labels, arrays["train", "labels"])


@pytest.mark.skipif(
    not (datasets.SYSTEM_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_load_dataset_real_fashion_mnist():
    train, test = data.load_dataset(DataConfig(dataset="fashion_mnist"))
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(test.labels)) == list(range(10))


def test_digits_shapes_scaling_and_stratified_split(caplog):
    with caplog.at_level(logging.WARNING, logger="gantrack.data"):
        train, test = data.load_dataset(
            DataConfig(dataset="digits", source_dir="/ignored", test_fraction=0.2), 3
        )
    assert "ignoring source_dir" in caplog.text
    assert train.images.shape == (1437, 8, 8, 1) and test.images.shape == (360, 8, 8, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert max(train.images.max(), test.images.max()) == 255
    everything = np.concatenate([train.labels, test.labels])
    # Stratified: each class's share of the test split is within one image of 20 %.
    for label in range(10):
        total = np.sum(everything == label)
        assert abs(np.sum(test.labels == label) - 0.2 * total) <= 1
    assert train.class_names == test.class_names == tuple("0123456789")


def test_named_datasets_name_their_classes_by_label():
    """What a user asks the served generator for: Fashion-MNIST's and CIFAR-10's labels in
    their published order."""
    fashion, cifar = data.DATASETS["fashion_mnist"], data.DATASETS["cifar10"]
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert cifar.class_names[0] == "airplane" and cifar.class_names[9] == "truck"
    subset = data.subsample(data.load_dataset(DataConfig(dataset="digits"), 0)[0], 20, 0)
    assert subset.class_names == tuple("0123456789")  # kept by a data.limit subset


def test_digits_split_depends_on_seed():
    a, _ = data.load_dataset(DataConfig(dataset="digits"), 0)
    b, _ = data.load_dataset(DataConfig(dataset="digits"), 0)
    c, _ = data.load_dataset(DataConfig(dataset="digits"), 1)
    assert data.digest(a) == data.digest(b) != data.digest(c)


def test_digits_rejects_bad_test_fraction():
    """Validated once, when params load."""
    _raises("data.test_fraction: 1.5 is out of range", config.from_dict,
            {"data": {"dataset": "digits", "test_fraction": 1.5}})  # fmt: skip


# --- Split, subsample, digest -----------------------------------------------------------------


def test_split_rejects_wrong_dtype_or_length():
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        Split(np.zeros((2, 4, 4, 1), np.uint8), np.zeros(3, np.int64))


def test_subsample_is_seeded_and_keeps_pairs():
    split = make_split(50)
    a, b, c = (data.subsample(split, 10, seed) for seed in (7, 7, 8))
    assert len(a) == 10
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    assert np.all(np.diff(a.labels) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(a.images[:, 0, 0, 0], a.labels)


@pytest.mark.parametrize("limit", [None, 50, 1000])
def test_subsample_without_effective_limit_returns_everything(limit):
    split = make_split(50)
    assert data.subsample(split, limit, 0) is split


def test_digest_is_deterministic_and_sensitive():
    split, other = make_split(10), make_split(6)
    assert data.digest(split, other) == data.digest(make_split(10), make_split(6))
    assert data.digest(split, other) != data.digest(other, split)
    images = split.images.copy()
    images[3, 1, 2, 0] ^= 1
    assert data.digest(Split(images, split.labels)) != data.digest(split)
    labels = split.labels.copy()
    labels[0] = 9
    assert data.digest(Split(split.images, labels)) != data.digest(split)
    reshaped = Split(split.images.reshape(10, 2, 8, 1), split.labels)
    assert data.digest(reshaped) != data.digest(split)


# --- save_split / load_split ------------------------------------------------------------------


def test_save_and_load_split_round_trip(tmp_path):
    split = make_split(12, shape=(8, 8, 3))
    path = tmp_path / "sub" / "train.npz"
    data.save_split(path, split)
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.npz"]  # no temp left
    loaded = data.load_split(path)
    np.testing.assert_array_equal(loaded.images, split.images)
    np.testing.assert_array_equal(loaded.labels, split.labels)
    assert data.digest(loaded) == data.digest(split)


def test_load_split_missing_file(tmp_path):
    _raises(r"train\.npz does not exist.*dvc repro", data.load_split, tmp_path / "train.npz")


def test_load_split_missing_key(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 1), np.uint8))
    _raises(r"x\.npz lacks array\(s\) labels", data.load_split, path)


def test_load_split_wrong_dtype(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((2, 4, 4, 1), np.float32), labels=np.zeros(2, np.int64))
    _raises(r"x\.npz holds the wrong arrays.*uint8", data.load_split, path)


@pytest.mark.parametrize("content", [b"garbage bytes", None])
def test_load_split_not_an_npz(tmp_path, content):
    path = tmp_path / "x.npz"
    if content is None:
        with path.open("wb") as f:  # a bare .npy under an .npz name
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(content)
    _raises(r"x\.npz is not a readable \.npz", data.load_split, path)


def test_a_split_larger_than_load_split_reads_is_not_written(tmp_path, monkeypatch):
    """prepare would write it, and every later stage refuse it: refused before writing."""
    from gantrack.data import splits
    from gantrack.io import limits

    monkeypatch.setattr(limits, "MAX_ARRAY_BYTES", 1000)
    split = splits.Split(np.zeros((20, 8, 8, 1), np.uint8), np.zeros(20, np.int64))
    with pytest.raises(UserError, match="1.3 kB of images, more than the 1.0 kB a split may hold"):
        splits.save_split(tmp_path / "train.npz", split)
    assert not list(tmp_path.iterdir())
