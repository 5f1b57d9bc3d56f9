"""Keras archives from anywhere (a file, a run, the registry), loaded without running their code.

A `.keras` file is a zip of `config.json` (the architecture), `metadata.json` and the weights.
Keras rebuilds a model by importing the modules its config names and calling their classes, so
a crafted archive can name a Lambda layer (Python bytecode), a layer that loads a TensorFlow
SavedModel (whose ops run while it loads) or a class of any importable module. Before Keras
sees an archive, gantrack checks it as data: its members and their sizes, then every object its
config names, which must be one of Keras' own (no Lambda, no SavedModel wrapper, no registered
custom class) and, for layers and operations, one gantrack's networks are made of (LAYERS,
OPERATIONS: other layers compute in build() or can be asked for anything), then its inputs,
then the headers of its HDF5 weights (what reading them would allocate, never the data), then
the variables its config declares (built without their values: a config can declare gigabytes
of variables that its small weights file does not hold) and what each layer outputs per row.
Only then Keras loads it, in safe mode, from a private copy named `.keras` (Keras picks its
loader by the file's name: a zip with an HDF5 model in front, named `.h5`, would pass the zip's
checks and load the HDF5 model; a copy also cannot change between the checks and the load).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from gantrack.io import limits
from gantrack.io.files import copy_regular_file
from gantrack.runtime.errors import UserError, one_line

MAX_CONFIG_BYTES = 16 * 2**20  # a generator's config is ~10 KB
MAX_DEPTH = 64  # nesting of config objects
TOP_CLASSES = {"Functional", "Sequential"}
# Keras' markers for inline values; not "__lambda__" (bytecode) nor "__typespec__".
DATA_MARKERS = {"__keras_tensor__", "__slice__", "__ellipsis__", "__bytes__", "__tensor__",
                "__numpy__"}  # fmt: skip
ACTIVATIONS = ("keras.activations", "keras.src.activations")
# Keras classes that run code or load other formats when they are built.
REFUSED_CLASSES = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}
# The layers gantrack's generators and classifiers are made of, and the operations their
# functional graphs apply (a slice, an argmax, products and sums): only these. Other layers
# compute in build() (Normalization broadcasts its mean there, outside the variables counted)
# or can be asked for anything.
LAYERS = frozenset({
    "InputLayer", "Dense", "Conv2D", "Conv2DTranspose", "BatchNormalization", "Embedding",
    "CategoryEncoding", "ReLU", "LeakyReLU", "Activation", "Reshape", "Flatten", "Dropout",
    "MaxPooling2D", "Concatenate", "Add", "Multiply",
})  # fmt: skip
OPERATIONS = frozenset({"GetItem", "Argmax", "Add", "Multiply", "Subtract", "Sum", "Cast",
                        "Concatenate", "Tanh"})  # fmt: skip
MODELS = {"Functional", "Sequential"}
MAX_OBJECTS = 2000  # objects in a config (a generator's: ~60); building costs grow faster
MAX_ROW_VALUES = 2**24  # values any layer outputs per input row (a 64x64 generator's: ~131k)
WEIGHTS = "model.weights.h5"  # Keras' default; gantrack refuses the .npz alternative
# Keras writes every weight contiguous and uncompressed, so a genuine weights file declares
# fewer bytes than it holds (its headers add ~15% to a generator's 310 kB). The slack lets a few
# small datasets written otherwise (compressed, or never written: fill value only) through; it
# is at most 1 MiB that loading allocates beyond the file's own size.
WEIGHTS_SLACK = 2**20
MAX_H5_OBJECTS = 100_000  # groups and datasets in the weights (a generator's: ~50)


def check(path: str | Path, what: str, *, inputs: int | None = None) -> dict[str, Any]:
    """Check the archive at path without loading it; returns its config (parsed config.json).

    what names it in errors ("--model: x.keras"). inputs: the rank every model input must have
    (2: noise vectors (N, latent); 4: images), None for any. Raises UserError (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what}: no such file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{what} is not a .keras archive (not a zip file); gantrack loads "
                        "only Keras 3 .keras files, not SavedModels, HDF5 or pickles")  # fmt: skip
    try:
        limits.check_zip(path)  # sizes and ratios from the central directory, nothing inflated
        with zipfile.ZipFile(path) as archive:
            _check_members(archive, what)
            config = json.loads(archive.read("config.json"))
    except UserError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{what} is not a readable .keras archive ({one_line(exc)})") from None
    _check_objects(config, what)
    _check_inputs(config, what, inputs)
    declared = _check_weights(path, what)
    _check_variables(config, what, declared)
    return config


def load(path: str | Path, what: str, *, inputs: int | None = None):
    """The model in the .keras archive at path, checked (see check) and loaded in Keras' safe
    mode without its training configuration, from a private copy. Raises UserError (one
    line)."""
    with tempfile.TemporaryDirectory(prefix="gantrack-model-") as folder:
        copy = Path(folder) / "model.keras"
        copy_regular_file(Path(path), copy, limits.MAX_MODEL_BYTES, what)
        check(copy, what, inputs=inputs)
        import keras

        try:
            with warnings.catch_warnings():  # Keras warns of weights it skips: one line here
                warnings.simplefilter("ignore")
                return keras.saving.load_model(copy, compile=False, safe_mode=True)
        except Exception as exc:  # a checked archive can still hold weights that do not fit
            raise UserError(f"{what} cannot be loaded as a Keras model "
                            f"({one_line(exc)})") from None  # fmt: skip


def _check_members(archive: zipfile.ZipFile, what: str) -> None:
    names = set(archive.namelist())
    if not {"config.json", "metadata.json"} <= names:
        raise UserError(f"{what} is not a .keras archive (it lacks config.json or "
                        "metadata.json)")  # fmt: skip
    if WEIGHTS not in names:
        raise UserError(f"{what}: it holds no {WEIGHTS}; gantrack loads only Keras' HDF5 "
                        "weights")  # fmt: skip
    config = archive.getinfo("config.json").file_size
    if config > MAX_CONFIG_BYTES:
        raise UserError(f"{what}: its config.json holds {config} bytes, more than a model's "
                        f"architecture needs ({MAX_CONFIG_BYTES})")  # fmt: skip


def _check_objects(config: Any, what: str) -> None:
    """Every object the config names is a Keras class, none of those that run code."""
    if not isinstance(config, dict) or config.get("class_name") not in TOP_CLASSES:
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise UserError(f"{what} holds a {found}, not a Keras Functional or Sequential model")
    todo, objects = [(config, 0)], 0
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"{what}: its config nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            todo += [(item, depth + 1) for item in node]
            continue
        if not isinstance(node, dict):
            continue
        if "class_name" in node:
            objects += 1
            if objects > MAX_OBJECTS:
                raise UserError(f"{what}: its config names more than {MAX_OBJECTS} objects; a "
                                "generator has a few dozen")  # fmt: skip
            _check_class(node, what)
        todo += [(value, depth + 1) for value in node.values()]


def _check_class(node: dict, what: str) -> None:
    name, module = node.get("class_name"), node.get("module")
    registered = node.get("registered_name")
    if name in DATA_MARKERS and module is None:
        return  # a value Keras stores inline (a tensor reference, a slice, bytes), no class
    builtin = isinstance(module, str) and (module == "keras" or module.startswith("keras."))
    custom = isinstance(registered, str) and ">" in registered  # register_keras_serializable
    if name == "function":  # a function by name: activations only (e.g. a Dense's)
        builtin = isinstance(module, str) and module.startswith(ACTIVATIONS)
    inner = node.get("config")
    code = isinstance(inner, dict) and "function" in inner  # Lambda-like: Python bytecode
    if not builtin or custom or name in REFUSED_CLASSES or code:
        where = registered if custom else f"{module}.{name}"
        raise UserError(f"{what} uses {where}, which is not a built-in Keras layer; gantrack "
                        "loads only models made of Keras' own layers (no Lambda, custom or "
                        "SavedModel layers)")  # fmt: skip
    if not _known_layer(module, name):
        raise UserError(f"{what} uses {module}.{name}, which gantrack's generators and "
                        "classifiers are not made of; gantrack loads only those")  # fmt: skip


def _known_layer(module: str, name: str) -> bool:
    """Whether a Keras object is allowed in the layers' place: a layer of LAYERS, an operation
    of OPERATIONS, a model; anything not a layer (initializers, dtype policies, activations)
    passes here."""
    if module in ("keras.layers", "keras.src.layers") or module.startswith("keras.src.layers."):
        return name in LAYERS
    if module.startswith("keras.src.ops"):
        return name in OPERATIONS
    if module in ("keras.models", "keras.src.models") or module.startswith("keras.src.models."):
        return name in MODELS
    return True


def _check_weights(path: Path, what: str) -> int:
    """The datasets of the archive's HDF5 weights declare at most the member's own size (plus
    WEIGHTS_SLACK), read from their headers: a chunked, compressed dataset can declare
    gigabytes that it never stores (a "shape bomb"), which Keras would allocate. Returns the
    bytes they declare."""
    with tempfile.TemporaryFile() as copy:
        try:  # h5py seeks a lot: a copy (its size bounded by check_zip), not the zip member
            with zipfile.ZipFile(path) as archive, archive.open(WEIGHTS) as member:
                shutil.copyfileobj(member, copy)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # RuntimeError: encrypted
            raise UserError(f"{what} is not a readable .keras archive ({one_line(exc)})") from None
        return _within_size(copy, copy.tell(), f"{what}: its {WEIGHTS}")


def _check_variables(config: dict, what: str, weights_bytes: int) -> None:
    """The variables the config declares take at most what its weights declare (plus
    WEIGHTS_SLACK), and every layer's output at most MAX_ROW_VALUES values per input row.
    Keras allocates every variable while it builds the model, before it reads the weights, so
    an Input(20000) into a Dense(20000) in a 15 kB archive would cost ~2 GB first. The model is
    built here in a stateless scope, which gives each variable its shape and defers its values
    (nothing is allocated), and dropped."""
    import keras
    from keras.src.backend.common import global_state  # Keras' list of deferred variables

    deferred = global_state.get_global_attribute("uninitialized_variables")
    global_state.set_global_attribute("uninitialized_variables", None)  # a list of their own
    try:
        with warnings.catch_warnings(), keras.StatelessScope(initialize_variables=False):
            warnings.simplefilter("ignore")
            # Without the training configuration (loaded with compile=False too): its optimizer
            # and metrics would make variables from values, which a stateless scope refuses.
            architecture = {k: v for k, v in config.items() if k != "compile_config"}
            model = keras.saving.deserialize_keras_object(architecture, safe_mode=True)
        declared = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights)
        outputs = [(op.name, tuple(t.shape[1:])) for op in _operations(model)
                   for node in op._inbound_nodes for t in node.outputs]  # fmt: skip
    except Exception as exc:  # a config Keras cannot build (shapes that do not fit, ...)
        raise UserError(f"{what} cannot be loaded as a Keras model ({one_line(exc)})") from None
    finally:  # the checked model's variables are never initialised, by anything
        global_state.set_global_attribute("uninitialized_variables", deferred)
    if declared > weights_bytes + WEIGHTS_SLACK:
        raise UserError(f"{what}: its config declares {limits.human(declared)} of variables "
                        f"and its {WEIGHTS} holds {limits.human(weights_bytes)}; a model's "
                        "weights hold every variable, so it is not a model")  # fmt: skip
    for name, shape in outputs:  # what each row costs when the model runs (UpSampling bombs)
        if None in shape or math.prod(shape) > MAX_ROW_VALUES:
            raise UserError(f"{what}: its layer {name} outputs {shape} per input row, above "
                            f"the {MAX_ROW_VALUES:,} values of gantrack's networks")  # fmt: skip


def _operations(model) -> list:
    """Every layer and operation of a model, those of nested models too."""
    found, todo = [], [model]
    while todo:
        op = todo.pop()
        found.append(op)  # a Sequential has layers, not operations
        todo += getattr(op, "operations", None) or getattr(op, "layers", None) or []
    return found


def check_hdf5_weights(path: Path, what: str) -> None:
    """A weights file of Keras' HDF5 format (not in an archive) whose datasets declare at most
    its own size plus WEIGHTS_SLACK (see _check_weights), or UserError (one line)."""
    _within_size(path, Path(path).stat().st_size, what)


def _within_size(weights, size: int, what: str) -> int:
    """The bytes the HDF5 weights (a path or a file object) declare, at most size plus
    WEIGHTS_SLACK, or UserError (one line) naming them `what`."""
    try:
        with h5py.File(weights, "r") as opened:
            declared = _declared_bytes(opened, what)
    except UserError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, TypeError... on a crafted file
        raise UserError(f"{what} is not readable HDF5 ({one_line(exc)})") from None
    if declared > size + WEIGHTS_SLACK:
        raise UserError(f"{what} declares {limits.human(declared)} of weights in "
                        f"{limits.human(size)}; Keras stores weights uncompressed, so it is a "
                        "shape bomb, not a model")  # fmt: skip
    return declared


def _declared_bytes(weights: h5py.File, what: str) -> int:
    """The bytes reading every dataset in weights would allocate, from the headers: each one's
    shape rounded up to whole chunks (HDF5 inflates a chunk whole: 4 values in a 1 GiB chunk
    cost 1 GiB) times its item size. At most MAX_H5_OBJECTS objects are visited (each once).
    what names the file in errors."""
    total = visited = 0

    def visit(name: str, node) -> None:
        nonlocal total, visited
        visited += 1
        if visited > MAX_H5_OBJECTS:
            raise UserError(f"{what} holds more than {MAX_H5_OBJECTS:,} objects; a model's "
                            "weights are a few thousand")  # fmt: skip
        if not isinstance(node, h5py.Dataset):
            return
        where = f"{what} dataset {name}"
        if node.external or node.is_virtual:
            raise UserError(f"{where} keeps its data outside the file (external or virtual)")
        # Variable-length items can all point to one stored value: N of them cost N times it.
        if node.dtype.hasobject:
            raise UserError(f"{where} holds variable-length values ({node.dtype}), not weights")
        if "dtype" in node.attrs and node.attrs.get_id("dtype").shape:  # Keras reads it
            raise UserError(f"{where} has a 'dtype' attribute of shape "
                            f"{node.attrs.get_id('dtype').shape}, not one name")  # fmt: skip
        if node.shape is not None:  # None: an empty dataspace, no values
            chunks = node.chunks or node.shape
            whole = [-(-n // c) * c for n, c in zip(node.shape, chunks, strict=True)]
            total += math.prod(whole) * node.dtype.itemsize

    weights.visititems(visit)
    return total


def _check_inputs(config: dict, what: str, rank: int | None) -> None:
    """The model's input layers, from the config: one, of the given rank."""
    if rank is None:
        return
    layers = config.get("config", {}).get("layers", [])
    shapes = [
        layer.get("config", {}).get("batch_shape")
        for layer in layers
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"
    ]
    if len(shapes) != 1 or not isinstance(shapes[0], list) or len(shapes[0]) != rank:
        kind = "noise vectors (N, latent)" if rank == 2 else f"{rank}-d arrays"
        raise UserError(f"{what} is not a generator: it takes {len(shapes)} input(s) "
                        f"{', '.join(map(str, shapes))}, not one input of {kind}")  # fmt: skip
