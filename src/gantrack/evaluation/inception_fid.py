"""The `inception_fid` feature extractor: the network published FIDs are computed with.

Heusel et al. (2017) defined FID on the `pool_3` features of the 2015 TensorFlow Inception graph
(`classify_image_graph_def.pb` in inception-2015-12-05.tgz); their reference implementation
(TTUR) feeds images with values 0..255 of any size to its `ExpandDims:0` tensor, and the graph
resizes (bilinear, to 299x299) and normalises them itself. This module does the same, so
`fid_inception_fid` at 50,000 samples can be put next to published numbers.

A GraphDef is a program, not data: its ops can write and read files (WriteFile, ReadFile,
SaveV2), run Python (PyFunc) or call functions, and importing it runs every op pool_3 depends
on, control dependencies included. So only the nodes pool_3 depends on are imported, down to
the input (which becomes a placeholder for the images), and each must be an op of PURE_OPS:
the tensor math the Inception graph is made of. A graph from anywhere else is refused with one
line. The archive comes over HTTPS; its digest is not pinned (logged as the graph's sha256).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gantrack.evaluation.inception import batches, download, keras_cache, local_file
from gantrack.io import limits
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError, one_line

GRAPH_URL = "https://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
ARCHIVE = "inception-2015-12-05.tgz"
GRAPH_FILE = "classify_image_graph_def.pb"
INPUT = "ExpandDims:0"  # float images (B, H, W, 3), values 0..255
OUTPUT = "pool_3:0"  # (B, 1, 1, 2048)
# Tensor math without side effects: what the 2015 Inception graph computes pool_3 with
# (Conv2D, BatchNormWithGlobalNormalization, Relu, MaxPool, AvgPool, Concat, ResizeBilinear,
# Sub, Mul, Const) and its close kin. No op that touches files, runs Python or calls functions.
PURE_OPS = frozenset({
    "Const", "Identity", "Placeholder", "NoOp", "Conv2D", "DepthwiseConv2dNative", "BiasAdd",
    "MatMul", "BatchNormWithGlobalNormalization", "FusedBatchNorm", "FusedBatchNormV2",
    "FusedBatchNormV3", "Relu", "Relu6", "Elu", "Tanh", "Sigmoid", "Softmax", "MaxPool",
    "AvgPool", "Concat", "ConcatV2", "Reshape", "Squeeze", "ExpandDims", "Cast", "Shape",
    "Pack", "StridedSlice", "Mean", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum",
    "Minimum", "Rsqrt", "Sqrt", "Square", "ResizeBilinear", "Transpose",
})  # fmt: skip
# Bounds on what the graph computes for one image (shapes inferred at 299x299, the Inception
# graph's own size; it resizes any image to it): the Inception graph's largest tensor holds
# 1.4M values, all of them together ~50M (weights included).
MAX_TENSOR_VALUES = 2**24
MAX_GRAPH_VALUES = 2**28
CHECK_SHAPE = (1, 299, 299, 3)
# A constant's values must all be in the file: TensorFlow fills a declared shape from one value.
SPLAT_VALUES = 1024
CONST_DTYPES = {"float32": 4, "float64": 8, "int32": 4, "int64": 8}  # DType names, item sizes


def graph_path(configured: str | None) -> Path:
    """The graph file: the configured path (the .pb), else Keras' cache, else downloaded into
    the cache and extracted from its archive."""
    found = local_file(configured, "evaluate.inception_fid_graph", GRAPH_FILE)
    if found:
        return found
    cached = keras_cache() / GRAPH_FILE
    archive = download(ARCHIVE, GRAPH_URL, None, "evaluate.inception_fid_graph")
    with tarfile.open(archive) as tar, atomic_path(cached) as tmp:
        info = next((m for m in tar.getmembers() if m.name == GRAPH_FILE and m.isfile()), None)
        if info is None:
            raise UserError(f"{archive}: holds no {GRAPH_FILE}; delete it and run again")
        if info.size > limits.MAX_MODEL_BYTES:  # declared in its header: checked before a byte
            raise limits.LimitError(
                f"{archive}: {GRAPH_FILE} declares {limits.human(info.size)}, more than the "
                f"{limits.human(limits.MAX_MODEL_BYTES)} allowed; delete it and run again"
            )
        with tar.extractfile(info) as member, open(tmp, "wb") as out:
            shutil.copyfileobj(member, out)
    return cached


def sha256(path: Path) -> str:
    """The graph file's SHA-256 (logged, so runs scored with different graphs are told apart)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load(path: Path) -> Callable:
    """The graph as a function: float32 images (B, H, W, 3) 0..255 -> pool_3 features (B, 2048).

    The input tensor is remapped to a batch of any size; only the ops up to pool_3 run.
    """
    import tensorflow as tf

    limits.check_size(path, limits.MAX_MODEL_BYTES, "the FID Inception graph (96 MB)")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except Exception as exc:  # protobuf's DecodeError and friends
        raise UserError(f"{path}: not a TensorFlow GraphDef ({one_line(exc)})") from None
    names = {node.name for node in graph_def.node}
    missing = [t for t in (INPUT, OUTPUT) if t.split(":")[0] not in names]
    if missing:
        raise UserError(f"{path}: not the FID Inception graph (no {', '.join(missing)})")
    graph_def = _pool_3_only(graph_def, path)

    def imported(images):
        (features,) = tf.compat.v1.import_graph_def(
            graph_def, input_map={INPUT: images}, return_elements=[OUTPUT], name="fid"
        )
        return tf.reshape(features, (tf.shape(features)[0], -1))

    spec = tf.TensorSpec((None, None, None, 3), tf.float32)
    return tf.compat.v1.wrap_function(imported, [spec])


def _pool_3_only(graph_def, path: Path):
    """The nodes pool_3 depends on through inputs and control inputs, down to the input node,
    which becomes a float placeholder (its own inputs never run); UserError (one line) when
    one is missing or is not an op of PURE_OPS."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph_def.node}
    input_name, output_name = INPUT.split(":")[0], OUTPUT.split(":")[0]
    kept, todo = {}, [output_name]
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        if name not in nodes:
            raise UserError(f"{path}: not the FID Inception graph (node {name!r} is missing)")
        kept[name] = nodes[name]
        if name != input_name:
            todo += [i.lstrip("^").split(":")[0] for i in nodes[name].input]
    refused = sorted({n.op for name, n in kept.items() if name != input_name} - PURE_OPS)
    if refused:
        raise UserError(f"{path}: not the FID Inception graph: pool_3 depends on "
                        f"{', '.join(refused)}, not only tensor math")  # fmt: skip
    pruned = tf.compat.v1.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    for name, node in kept.items():
        if name == input_name:
            placeholder = pruned.node.add(name=input_name, op="Placeholder")
            placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
        else:
            if node.op == "Const":
                _check_constant(node, path)
            pruned.node.append(node)
    _check_shapes(pruned, path)
    return pruned


def _check_constant(node, path: Path) -> None:
    """A numeric constant whose values are all in the file (a small one may give one value)."""
    import tensorflow as tf

    tensor = node.attr["value"].tensor
    try:
        dtype = tf.dtypes.as_dtype(tensor.dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in CONST_DTYPES:
        raise UserError(f"{path}: not the FID Inception graph: constant {node.name!r} holds "
                        f"{dtype.name if dtype else 'unknown'} values, not numbers")  # fmt: skip
    declared = math.prod(d.size for d in tensor.tensor_shape.dim)
    values = (len(tensor.tensor_content) // CONST_DTYPES[dtype.name] if tensor.tensor_content else
              len(tensor.float_val) + len(tensor.double_val) + len(tensor.int_val)
              + len(tensor.int64_val))  # fmt: skip
    if declared > SPLAT_VALUES and values != declared:
        raise UserError(f"{path}: not the FID Inception graph: constant {node.name!r} declares "
                        f"{declared:,} values and holds {values:,}")  # fmt: skip


def _check_shapes(graph_def, path: Path) -> None:
    """Every tensor the graph computes for one CHECK_SHAPE image has a known shape of at most
    MAX_TENSOR_VALUES values, all of them together at most MAX_GRAPH_VALUES (a resize to
    100000x100000 or a stack of a thousand copies is refused here, before it runs)."""
    import tensorflow as tf

    input_name = INPUT.split(":")[0]
    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, CHECK_SHAPE)
        try:
            tf.compat.v1.import_graph_def(graph_def, input_map={INPUT: images}, name="checked")
        except (ValueError, TypeError) as exc:  # shapes that do not fit, a cycle
            raise UserError(f"{path}: not the FID Inception graph ({one_line(exc)})") from None
    total = 0
    for op in graph.get_operations():
        if op.name == f"checked/{input_name}":
            continue  # replaced by the images
        for tensor in op.outputs:
            dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
            size = math.prod(dims) if dims is not None and None not in dims else None
            if size is None or size > MAX_TENSOR_VALUES:
                what = dims if dims else "an unknown shape"
                raise UserError(f"{path}: not the FID Inception graph: {op.name[8:]} computes "
                                f"{what} for one image")  # fmt: skip
            total += size
    if total > MAX_GRAPH_VALUES:
        raise UserError(f"{path}: not the FID Inception graph: {total:,} values for one image")


def extract(network: Callable, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> pool_3 features (N, 2048) float64; grayscale tiled to RGB."""
    import tensorflow as tf

    out = []
    for batch in batches(images, batch_size, "inception_fid"):
        if batch.shape[-1] == 1:
            batch = np.repeat(batch, 3, axis=-1)
        out.append(network(tf.constant(batch, tf.float32)).numpy())
    return np.concatenate(out).astype(np.float64)
