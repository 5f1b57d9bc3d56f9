import hashlib
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from gantrack import data
from gantrack.config import ClassifierConfig, DataConfig, EvaluateConfig
from gantrack.data import datasets
from gantrack.evaluation import classifier as classifier_lib
from gantrack.evaluation import extractors, inception, inception_fid, metrics
from gantrack.runtime.errors import UserError


def test_auto_is_the_classifier_when_one_was_trained_else_inception(tmp_path, inception_weights):
    e = EvaluateConfig(extractor="auto", inception_weights=str(inception_weights))
    missing = tmp_path / "models" / "classifier" / "classifier.keras"  # data without labels
    assert extractors.load_extractor(e, missing)[0] == "inception"
    with pytest.raises(UserError, match="classifier stage trains only on data with labels"):
        extractors.load_extractor(replace(e, extractor="classifier"), missing)
    missing.parent.mkdir(parents=True)
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]).save(missing)
    assert extractors.load_extractor(e, missing)[0] == "classifier"


def _serve(monkeypatch, module, source: Path, md5: str | None = None) -> None:
    """Point a module's download at a local file URL (the download is what cannot run here)."""
    if module is inception:
        monkeypatch.setattr(inception, "INCEPTION_WEIGHTS_URL", source.as_uri())
        monkeypatch.setattr(inception, "INCEPTION_WEIGHTS_MD5", md5)
    else:
        monkeypatch.setattr(inception_fid, "GRAPH_URL", source.as_uri())


def test_inception_weights_are_downloaded_once_into_keras_cache_and_checked(
    tmp_path, monkeypatch, inception_weights
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty cache
    md5 = hashlib.md5(inception_weights.read_bytes()).hexdigest()
    _serve(monkeypatch, inception, inception_weights, md5="0" * 32)  # a corrupted download
    with pytest.raises(UserError) as bad:
        inception.inception_weights(None)
    assert "\n" not in str(bad.value) and "evaluate.inception_weights" in str(bad.value)
    cached = tmp_path / "keras" / "models" / inception.INCEPTION_WEIGHTS_FILE
    assert not cached.exists()  # nothing half written
    _serve(monkeypatch, inception, inception_weights, md5=md5)
    assert inception.inception_weights(None) == cached and cached.is_file()
    _serve(monkeypatch, inception, tmp_path / "gone.h5")  # offline from now on: the cache is used
    assert inception.inception_weights(None) == cached
    cached.unlink()
    with pytest.raises(UserError, match=f"put the file at {cached}"):
        inception.inception_weights(None)
    with pytest.raises(UserError, match="no such file"):
        inception.inception_weights(str(tmp_path / "typo.h5"))


def test_inception_weights_declaring_more_than_they_hold_are_refused_before_keras_reads_them(
    tmp_path, inception_weights
):
    """A chunked, compressed dataset never written declares 2 GB in a few kB: Keras would read
    it whole. One line, before it does."""
    import h5py

    bomb = tmp_path / "inception.weights.h5"
    shutil.copyfile(inception_weights, bomb)
    with h5py.File(bomb, "a") as f:
        f.create_dataset("extra", shape=(500_000_000,), dtype="f4", chunks=(2**20,),
                         compression="gzip")  # fmt: skip
    with pytest.raises(UserError, match=r"inception.weights.h5 declares 2\.\d GB of weights in"):
        inception.build_inception(bomb)


def test_inception_features_from_configured_weights(inception_weights):
    e = EvaluateConfig(extractor="inception", inception_weights=str(inception_weights))
    _, extract = extractors.load_extractor(e, Path("unused.keras"))
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    feats, probs = extract(gray, 2)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and probs is None
    # Grayscale is tiled to RGB: the same picture given as 3 equal channels has equal features.
    rgb, _ = extract(np.repeat(gray, 3, axis=-1), 2)
    np.testing.assert_allclose(rgb, feats, rtol=1e-5, atol=1e-6)
    assert not np.allclose(feats[0], feats[1])


@pytest.mark.skipif(
    not datasets.SYSTEM_FASHION_MNIST.is_dir(), reason="needs the dataset-fashion-mnist package"
)
def test_classifier_learns_fashion_mnist_subset():
    train, test = data.load_dataset(DataConfig(dataset="fashion_mnist"))
    train, test = data.subsample(train, 12000, seed=0), data.subsample(test, 2000, seed=0)
    keras.utils.set_random_seed(0)
    model, accuracy = classifier_lib.train_classifier(
        ClassifierConfig(epochs=3), train.images, train.labels, test.images, test.labels
    )
    # The default params (all 60k images, 2 epochs) reach 88%; a fifth of the data, 85%.
    assert accuracy >= 0.85
    feats, probs = classifier_lib.extract(model, test.images[:10], 5)
    assert feats.shape == (10, 128) and probs.shape == (10, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)


@pytest.fixture(scope="module")
def fid_graph(tmp_path_factory) -> Path:
    """A small frozen graph with the FID Inception graph's tensor names: `ExpandDims:0` takes
    one image (1, H, W, 3) 0..255, the graph resizes and normalises it itself, `pool_3:0` gives
    (1, 1, 1, D) features; like the real one, a later op has the batch of 1 baked in."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, (1, None, None, 3), name="Cast")
        x = tf.identity(image, name="ExpandDims")
        x = tf.compat.v1.image.resize_bilinear(x, (19, 19))
        x = (x - 128.0) / 128.0
        kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 16)).astype(np.float32)
        x = tf.nn.relu(tf.nn.conv2d(x, tf.constant(kernel), strides=2, padding="VALID"))
        pool = tf.nn.avg_pool2d(x, ksize=9, strides=1, padding="VALID", name="pool_3")
        tf.reshape(pool, (1, 16), name="pool_3/_reshape")
    path = tmp_path_factory.mktemp("graph") / "classify_image_graph_def.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_inception_fid_feeds_any_batch_and_size_to_the_graphs_own_resizing(fid_graph):
    e = EvaluateConfig(extractor="inception_fid", inception_fid_graph=str(fid_graph))
    name, extract = extractors.load_extractor(e, Path("unused.keras"))
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    feats, probs = extract(small, 2)
    assert name == "inception_fid" and probs is None
    assert feats.shape == (5, 16) and feats.dtype == np.float64 and np.isfinite(feats).all()
    one_by_one = np.concatenate([extract(small[i : i + 1], 1)[0] for i in range(5)])
    np.testing.assert_allclose(feats, one_by_one, rtol=1e-5)  # batching changes nothing
    rgb, _ = extract(np.repeat(small, 3, axis=-1), 5)
    np.testing.assert_allclose(rgb, feats, rtol=1e-5)  # grayscale is tiled to RGB
    bigger, _ = extract(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8), 3)
    assert bigger.shape == (3, 16)
    # The FID on these features is the project's one Frechet distance.
    same = metrics.frechet_distance(*metrics.statistics(feats), *metrics.statistics(feats))
    assert same == pytest.approx(0.0, abs=1e-6)


def test_inception_fid_graph_is_downloaded_and_extracted_into_keras_cache(
    tmp_path, monkeypatch, fid_graph
):
    archive = tmp_path / inception_fid.ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fid_graph, arcname=inception_fid.GRAPH_FILE)
        tar.add(fid_graph, arcname="LICENSE")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    _serve(monkeypatch, inception_fid, archive)
    cached = inception_fid.graph_path(None)
    assert cached == tmp_path / "keras" / "models" / inception_fid.GRAPH_FILE
    assert cached.read_bytes() == fid_graph.read_bytes()
    assert inception_fid.sha256(cached) == hashlib.sha256(fid_graph.read_bytes()).hexdigest()
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff not a graph")
    with pytest.raises(UserError, match="not a TensorFlow GraphDef|not the FID Inception graph"):
        inception_fid.load(junk)
    with pytest.raises(UserError, match="not the FID Inception graph"):
        inception_fid.load(_graph_without_pool_3(tmp_path))
    with pytest.raises(UserError, match="no such file"):
        inception_fid.graph_path(str(tmp_path / "typo.pb"))


def test_a_graph_whose_pool_3_writes_a_file_is_refused_and_runs_nothing(tmp_path, fid_graph):
    """A GraphDef is a program: a pool_3 with a control dependency on WriteFile would write
    any file when imported. Refused with one line naming the op; nothing is written. Nodes
    pool_3 does not depend on are never imported, whatever they are."""
    import tensorflow as tf

    mark = tmp_path / "written"
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, None, None, 3), name="ExpandDims")
        write = tf.raw_ops.WriteFile(filename=str(mark), contents="ran")
        with tf.control_dependencies([write]):
            tf.identity(tf.reduce_mean(x, axis=(1, 2), keepdims=True), name="pool_3")
    evil = tmp_path / "evil.pb"
    evil.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(UserError, match=r"evil.pb: not the FID Inception graph: pool_3 depends "
                                        r"on WriteFile"):  # fmt: skip
        inception_fid.load(evil)
    # The test graph with a WriteFile beside it (not under pool_3): loads, runs, writes nothing.
    graph_def = tf.compat.v1.GraphDef.FromString(fid_graph.read_bytes())
    with tf.Graph().as_default() as beside:
        tf.raw_ops.WriteFile(filename=str(mark), contents="ran", name="stray")
    graph_def.node.extend(beside.as_graph_def().node)
    (tmp_path / "beside.pb").write_bytes(graph_def.SerializeToString())
    network = inception_fid.load(tmp_path / "beside.pb")
    feats = inception_fid.extract(network, np.zeros((2, 8, 8, 3), np.uint8), 2)
    assert feats.shape == (2, 16) and not mark.exists()


def _pool_3_graph(tmp_path: Path, name: str, make) -> Path:
    """A graph whose pool_3 is make(images) of its ExpandDims input, as a .pb file."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, None, None, 3), name="ExpandDims")
        tf.identity(make(x), name="pool_3")
    path = tmp_path / f"{name}.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_a_graph_that_would_compute_gigabytes_from_a_few_bytes_is_refused(tmp_path):
    """Pure tensor math can still be a memory bomb: a constant declaring 10**9 values that the
    file holds one of (TensorFlow fills it), a resize to 60000x60000. Refused before they run."""
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2

    def filled(x):
        return tf.reduce_mean(x, axis=(1, 2), keepdims=True) + tf.zeros((1,))

    path = _pool_3_graph(tmp_path, "filled", filled)
    graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
    const = next(n for n in graph_def.node if n.op == "Const" and n.name.startswith("zeros"))
    tensor = tf.make_tensor_proto(0.0, tf.float32, shape=(10**9,))  # one value, declared 10**9
    const.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tensor))
    path.write_bytes(graph_def.SerializeToString())
    with pytest.raises(UserError, match="declares 1,000,000,000 values and holds 1"):
        inception_fid.load(path)

    def resized(x):
        return tf.compat.v1.image.resize_bilinear(x, (60000, 60000))

    with pytest.raises(UserError, match=r"computes \[1, 60000, 60000, 3\] for one image"):
        inception_fid.load(_pool_3_graph(tmp_path, "resized", resized))


def _graph_without_pool_3(tmp_path: Path) -> Path:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.identity(tf.compat.v1.placeholder(tf.float32, (1, 4, 4, 3)), name="ExpandDims")
    path = tmp_path / "other.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_a_classifiers_weights_name_it_however_it_was_saved(tmp_path):
    """FIDs are comparable only on the same classifier: its weights' sha256 is the same for the
    same network saved twice (archives that record when they were saved) and other for one
    trained otherwise."""
    e = EvaluateConfig(extractor="classifier")
    digests = {}
    for name, seed in (("a", 0), ("a_again", 0), ("b", 1)):
        keras.utils.set_random_seed(seed)
        model = classifier_lib.build_classifier(ClassifierConfig(filters=4), (8, 8, 1), 3)
        path = tmp_path / name / "classifier.keras"
        path.parent.mkdir()
        model.save(path)
        digests[name] = extractors.load_extractor(e, path)[1].sha256
    assert digests["a"] == digests["a_again"] != digests["b"]
