"""Feature extractors by name: uint8 images (N, H, W, C) -> features (N, D) and, where the
network has a class head, probabilities (N, K). Every metric name carries the extractor's name;
each extract function's `sha256` names its weights, so FIDs from two classifiers (trained with
other params or seeds) are never taken for comparable.

Adding an extractor is one entry in EXTRACTORS (a function building the extract function) plus
its tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gantrack.evaluation import classifier, inception, inception_fid
from gantrack.io import keras_files
from gantrack.io.digests import arrays_sha256
from gantrack.runtime.errors import UserError

if TYPE_CHECKING:  # annotations only: config imports the registries
    from gantrack.config import EvaluateConfig

logger = logging.getLogger(__name__)

# images uint8 (N, H, W, C), batch_size -> (features (N, D) float64, probabilities or None);
# its attribute sha256 identifies the network's weights
Extract = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray | None]]


def _classifier(classifier_path: Path, e: EvaluateConfig) -> Extract:
    if not Path(classifier_path).is_file():
        raise UserError(
            f"evaluate.extractor: classifier needs {classifier_path}, which the classifier "
            "stage trains only on data with labels (two or more classes); run `dvc repro "
            "classifier`, or use extractor auto or inception"
        )
    model = keras_files.load(classifier_path, str(classifier_path))

    def extract(images, batch_size):
        return classifier.extract(model, images, batch_size)

    extract.input_shape = tuple(model.input_shape[1:])  # the images it was trained on
    extract.sha256 = weights_sha256(model)
    return extract


def _inception(classifier_path: Path, e: EvaluateConfig) -> Extract:
    # No ImageNet head here, so no class probabilities and no Inception Score.
    model = inception.build_inception(inception.inception_weights(e.inception_weights))

    def extract(images, batch_size):
        return inception.extract_inception(model, images, batch_size), None

    extract.sha256 = weights_sha256(model)
    return extract


def _inception_fid(classifier_path: Path, e: EvaluateConfig) -> Extract:
    path = inception_fid.graph_path(e.inception_fid_graph)
    network = inception_fid.load(path)
    digest = inception_fid.sha256(path)
    logger.info("inception_fid: %s (sha256 %s)", path, digest)

    def extract(images, batch_size):
        return inception_fid.extract(network, images, batch_size), None

    extract.sha256 = digest
    return extract


def weights_sha256(model) -> str:
    """SHA-256 of a Keras model's weights (shapes, dtypes, values, in the model's order): the
    same for the same network however it was saved, other for any retrained one."""
    return arrays_sha256(model.get_weights())


# name -> builder(classifier_path, evaluate params) -> Extract; raises UserError when the
# network's files are missing and cannot be downloaded.
EXTRACTORS: dict[str, Callable[[Path, EvaluateConfig], Extract]] = {
    "classifier": _classifier,
    "inception": _inception,
    "inception_fid": _inception_fid,
}


def load_extractor(
    e: EvaluateConfig, classifier_path: Path, shape: tuple[int, ...] | None = None
) -> tuple[str, Extract]:
    """(name, extract function) of evaluate.extractor. `auto` is the domain classifier when
    one was trained (the data has labels), else inception; the choice is said in the log.
    shape: the (H, W, C) of the images it is to read, refused when the network cannot."""
    name, why = e.extractor, None
    if name == "auto":
        name = "classifier" if Path(classifier_path).is_file() else "inception"
        why = "the data has labels" if name == "classifier" else "no classifier: no labels"
    extract = EXTRACTORS[name](Path(classifier_path), e)
    takes = getattr(extract, "input_shape", None)
    if shape is not None and (tuple(shape) != takes if takes else shape[-1] not in (1, 3)):
        allowed = "x".join(map(str, takes)) if takes else "grayscale or RGB (1 or 3 channels)"
        raise UserError(f"the {name} extractor reads {allowed} images, not "
                        f"{'x'.join(map(str, shape))} ones; choose another extractor")  # fmt: skip
    if why:
        logger.info("extractor auto -> %s (%s)", name, why)
    return name, extract
