"""classifier: the train split -> models/classifier.keras (the FID feature extractor) and its
test accuracy in metrics/classifier.json."""

from __future__ import annotations

import logging

import keras

from gantrack import data
from gantrack.config import Config
from gantrack.errors import UserError
from gantrack.evaluation import classifier
from gantrack.files import atomic_path, write_json
from gantrack.paths import PATHS, Paths

logger = logging.getLogger(__name__)


def run(cfg: Config, paths: Paths = PATHS) -> float:
    """Train the classifier on the train split; returns its test accuracy."""
    train, test = data.load_split(paths.train), data.load_split(paths.test)
    if len(set(train.labels.tolist())) < 2:
        raise UserError(
            "classifier: the data has one class (a folder without class subfolders), and the "
            "classifier extractor learns its features from classes; sort the images into "
            "subfolders, one per class"
        )
    keras.utils.set_random_seed(cfg.base.seed)
    model, accuracy = classifier.train_classifier(
        cfg.classifier, train.images, train.labels, test.images, test.labels
    )
    with atomic_path(paths.classifier) as tmp:
        model.save(tmp)
    write_json(paths.classifier_metrics, {"classifier_test_accuracy": accuracy})
    logger.info("classifier test accuracy: %.4f", accuracy)
    return accuracy
