"""Feature extractors by name: uint8 images (N, H, W, C) -> features (N, D) and, where the
network has a class head, probabilities (N, K). Every metric name carries the extractor's name.

Adding an extractor is one entry in EXTRACTORS (a function building the extract function) plus
its tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from gantrack.errors import UserError
from gantrack.evaluation import classifier, inception

logger = logging.getLogger(__name__)

# images uint8 (N, H, W, C), batch_size -> (features (N, D) float64, probabilities or None)
Extract = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray | None]]


def _classifier(classifier_path: Path, weights: str | None) -> Extract:
    if not Path(classifier_path).is_file():
        raise UserError(f"{classifier_path} is missing; run `dvc repro classifier` first")
    model = keras.models.load_model(classifier_path)
    return lambda images, batch_size: classifier.extract(model, images, batch_size)


def _inception(classifier_path: Path, weights: str | None) -> Extract:
    # No ImageNet head here, so no class probabilities and no Inception Score.
    model = inception.build_inception(inception.inception_weights(weights))
    return lambda images, batch_size: (inception.extract_inception(model, images, batch_size), None)


# name -> builder(classifier_path, inception_weights) -> Extract
EXTRACTORS: dict[str, Callable[[Path, str | None], Extract]] = {
    "classifier": _classifier,
    "inception": _inception,
}


def resolve_extractor(name: str, configured_weights: str | None) -> str:
    """`auto` -> `inception` when its weights are present, else `classifier` (said in the log).

    Asking for `inception` without weights is a UserError: it would otherwise download them.
    """
    weights = inception.inception_weights(configured_weights)
    if name == "auto":
        name = "inception" if weights else "classifier"
        logger.info("extractor auto -> %s (InceptionV3 weights %s)", name,
                    weights or "not found")  # fmt: skip
    elif name == "inception" and weights is None:
        where = configured_weights or f"$KERAS_HOME/models/{inception.INCEPTION_WEIGHTS_FILE}"
        raise UserError(
            f"evaluate.extractor: inception needs InceptionV3 weights at {where}; "
            "set evaluate.inception_weights or use extractor classifier"
        )
    return name


def load_extractor(name: str, classifier_path: Path, weights: str | None) -> Extract:
    """The extract function of a resolved extractor name (see resolve_extractor)."""
    return EXTRACTORS[name](classifier_path, weights)
