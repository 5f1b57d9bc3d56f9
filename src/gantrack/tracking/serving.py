"""The generator as a service: what `mlflow models serve` answers for a logged generator.

A request names the images it wants and the model draws their noise:

    {"inputs": [], "params": {"n": 4, "class_name": "3", "seed": 7, "truncation": 1.5,
                              "format": "png"}}

or it sends the noise itself, one latent vector per image (`{"inputs": [[...], ...]}`, the older
shape, answered as before with the generator's floats in [-1, 1]). The params and their defaults
are PARAMS, part of the model's signature; `format` is `uint8` (nested lists of ints, NHWC),
`png` (one base64 PNG per image) or `float`. A request the model cannot answer is an HTTP 400
naming the problem, never a traceback.

The logged model is MLflow "models from code": its code file is served.py (three lines handing
`Generator` to MLflow; a registry load compares it byte for byte), its one artifact the
generator as a .keras archive, loaded through keras_files. Nothing is pickled.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types import ParamSchema, ParamSpec
from PIL import Image

from gantrack.config import MAX_SEED
from gantrack.gan import sampling
from gantrack.io import images, keras_files
from gantrack.runtime import redact
from gantrack.runtime.errors import one_line

logger = logging.getLogger(__name__)
SERVED_CODE = Path(__file__).with_name("served.py")  # the model's code file
ARTIFACT = "generator"  # the .keras archive's name among the model's artifacts
ARCHIVE = "generator.keras"
FORMAT_VERSION = 1  # metadata["gantrack_generator"]: the request and answer described here
MAX_IMAGES = 256  # per request: a 64x64x3 image is ~40 KB of JSON
# ... and at most this many pixel values (256 images of 64x64x3): a generator of larger images
# answers fewer (16 of 256x256x3, 1 of 1024x1024x3) rather than gigabytes of JSON
MAX_VALUES = 256 * 64 * 64 * 3
FORMATS = ("auto", "uint8", "png", "float")  # auto: uint8 for drawn noise, float for sent noise
BATCH_SIZE = 64
# Noise sent as inputs: at most this in magnitude. N(0, 1) noise never gets near (|z| > 10 has
# probability ~1e-23 an entry); scaled or extrapolated noise has room. A bound, not only a
# finiteness check: the generator computes in float32 (1e39 is inf) or, trained under
# mixed_float16, in float16 (max 65504), and its activations grow with |z| (piecewise-linear
# layers), so noise far past any draw ends in inf and NaN images (an invalid JSON answer).
MAX_NOISE = 100.0
PARAMS = ParamSchema([
    ParamSpec("n", "long", 1),
    ParamSpec("class", "long", -1),  # -1: any class (as drawn)
    ParamSpec("class_name", "string", ""),  # "": any class
    ParamSpec("seed", "long", 0),
    ParamSpec("truncation", "double", 0.0),  # 0: plain N(0, 1) noise
    ParamSpec("format", "string", "auto"),
])  # fmt: skip
SIGNATURE = ModelSignature(inputs=None, outputs=None, params=PARAMS)
KINDS = {"long": "an integer", "double": "a number", "string": "a string"}  # for messages


class RequestError(ValueError):
    """A request the generator cannot answer: its message names the param and what is allowed."""


def describe(generator, class_names=None) -> dict:
    """The model's metadata: latent size, classes and their names, image shape (NHWC, no N).
    class_names: the data's (meta.json), used when there is one per class; else "0".."K-1"."""
    k = sampling.num_classes(generator)
    names = [str(c) for c in class_names or ()]
    if len(names) != k or len(set(names)) != k:
        names = [str(i) for i in range(k)]
    return {
        "gantrack_generator": FORMAT_VERSION,
        "latent_dim": int(generator.input_shape[-1]),
        "num_classes": k,
        "class_names": names,
        "image_shape": [int(d) for d in generator.output_shape[1:]],
        "max_images": max_images(generator),
    }


def input_example(metadata: dict) -> tuple[list, dict]:
    """A request for two images (of the first class, by name, for a conditional generator)."""
    params = {"n": 2, "seed": 0, "format": "uint8"}
    if metadata["num_classes"]:
        params["class_name"] = metadata["class_names"][0]
    return [], params


def png_base64(fakes: np.ndarray) -> list[str]:
    """uint8 (N, H, W, C) images -> one base64-encoded PNG each."""
    encoded = []
    for picture in fakes:
        buffer = io.BytesIO()
        Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, "PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded


# MLflow warns (its own filter: once) of a predict without type hints when the class is made:
# the input is [] or noise vectors (see the module's docstring), checked by sent_noise.
with warnings.catch_warnings(record=True):  # recorded, dropped

    class Generator(mlflow.pyfunc.PythonModel):
        """The served generator: a request (see the module's docstring) -> images."""

        def load_context(self, context):
            path = context.artifacts[ARTIFACT]
            self.generator = keras_files.load(path, f"the served generator ({ARCHIVE})", inputs=2)
            config = context.model_config or {}
            self.names = describe(self.generator, config.get("class_names"))["class_names"]

        def predict(self, context, model_input, params=None):
            try:
                return answer(self.generator, self.names, model_input, params or {})
            except RequestError as exc:
                raise MlflowException(str(exc), INVALID_PARAMETER_VALUE) from None
            except Exception as exc:  # noqa: BLE001 - no traceback reaches the client
                logger.error("the generator failed on a request: %s", redact.mask(one_line(exc)))
                raise MlflowException("the generator failed on this request (the server's log "
                                      "says why)", INTERNAL_ERROR) from None  # fmt: skip


def answer(generator, names: list[str], model_input, params: dict):
    """The images a request asks of generator (whose classes are names), in its format."""
    refuse_nulls(params)
    fmt = str(params.get("format", "auto"))
    if fmt not in FORMATS:
        raise RequestError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    latent, most = int(generator.input_shape[-1]), max_images(generator)
    noise = sent_noise(model_input, latent, most)
    if noise is None:
        n = _bounded(params, "n", 1, most)
        seed = _bounded(params, "seed", 0, MAX_SEED)
        rng = np.random.default_rng(seed)  # as `gantrack sample --seed` draws
        noise = sampling.draw_noise(rng, (n, latent), _truncation(params))
    elif fmt == "auto":
        fmt = "float"  # noise sent by the client: the generator's own output, as before
    label = requested_class(params, names)
    if label is not None:
        noise = sampling.with_classes(noise, np.full(len(noise), label), len(names))
    fakes = generator.predict(noise.astype(np.float32), batch_size=BATCH_SIZE, verbose=0)
    if not np.isfinite(fakes).all():  # a broken generator (checked noise does not): a 500
        raise FloatingPointError("the generator's output is not finite (inf or NaN)")
    if fmt == "float":
        return fakes
    fakes = images.to_uint8(fakes)
    return png_base64(fakes) if fmt == "png" else fakes


def refuse_nulls(params: dict) -> None:
    """A param sent as JSON null (which MLflow passes on, unchecked) is a 400 naming it, as
    MLflow's own check answers a value of the wrong type: null is no integer, number or string,
    and taking it for the default would hide a client's bug (a field it failed to fill)."""
    for spec in PARAMS.params:
        if spec.name in params and params[spec.name] is None:
            raise RequestError(f"{spec.name}: must be {KINDS[spec.dtype.name]}, not null (leave "
                               f"{spec.name} out for its default, {spec.default!r})")  # fmt: skip


def requested_class(params: dict, names: list[str]) -> int | None:
    """The class a request names by index (`class`) or by name (`class_name`), or None."""
    index, name, k = int(params.get("class", -1)), str(params.get("class_name", "")), len(names)
    if index == -1 and not name:
        return None
    if not k:
        raise RequestError("class: this generator is not class-conditional (trained without "
                           "classes); leave class and class_name out")  # fmt: skip
    if name:
        if name not in names:
            shown = ", ".join(map(repr, names[:20])) + (", ..." if k > 20 else "")
            raise RequestError(f"class_name: {name!r} is not a class of this generator; its "
                               f"classes: {shown}")  # fmt: skip
        if index not in (-1, names.index(name)):
            raise RequestError(f"class: {index} and class_name: {name!r} name different classes; "
                               "give one of them")  # fmt: skip
        return names.index(name)
    if not 0 <= index < k:
        raise RequestError(f"class: {index} is out of range; this generator has classes "
                           f"0..{k - 1} (-1: any)")  # fmt: skip
    return index


def max_images(generator) -> int:
    """Images a request may ask of generator: MAX_IMAGES, fewer where they are large."""
    return max(1, min(MAX_IMAGES, sampling.images_within(generator, MAX_VALUES)))


def sent_noise(model_input, latent: int, most: int = MAX_IMAGES) -> np.ndarray | None:
    """The noise vectors a request sent as its inputs (at most `most`), checked; None for
    empty inputs. Only numbers are converted: NumPy turns a string into float64 through ~500
    bytes per character (a 2 MB string in a request took a gigabyte)."""
    wrong = f"inputs: give [] or noise vectors, lists of {latent} numbers"
    try:
        noise = np.asarray(model_input)
    except (TypeError, ValueError):  # ragged lists
        raise RequestError(wrong) from None
    if noise.size == 0:
        return None
    if noise.dtype.kind not in "biuf":  # strings, objects (a dict, mixed lists), dates
        raise RequestError(wrong)
    noise = noise.astype(np.float64)
    if noise.ndim != 2 or noise.shape[1] != latent:
        raise RequestError(f"inputs: noise of shape {noise.shape}; this generator takes "
                           f"(N, {latent}), one vector of {latent} numbers per image")  # fmt: skip
    if len(noise) > most:
        raise RequestError(f"inputs: {len(noise)} noise vectors; at most {most} a request")
    outside = ~(np.abs(noise) <= MAX_NOISE)  # also nan
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise RequestError(f"inputs: vector {row} holds {noise[row, col]:g}; noise entries must "
                           f"be finite numbers with |z| <= {MAX_NOISE:g} (N(0, 1) noise stays "
                           "within 10)")  # fmt: skip
    return noise


def _bounded(params: dict, name: str, low: int, high: int) -> int:
    value = int(params.get(name, low))
    if not low <= value <= high:
        raise RequestError(f"{name}: {value} is out of range; must be in {low}..{high}")
    return value


def _truncation(params: dict) -> float | None:
    value = float(params.get("truncation", 0.0))
    if value == 0:
        return None
    if not 0 < value <= 1e6:  # also nan
        raise RequestError(f"truncation: {value} is out of range; 0 (none) or a bound T > 0 "
                           "on |z| (values above are drawn again)")  # fmt: skip
    return value
