"""classifier: the train split -> models/classifier/classifier.keras (the FID feature extractor)
and its test accuracy in metrics/classifier.json. Data without labels (one class) gets no
classifier, only a NOT_TRAINED.txt saying why; evaluation then uses Inception features."""

from __future__ import annotations

import logging

import keras

from gantrack import data
from gantrack.config import Config
from gantrack.evaluation import classifier
from gantrack.io.files import atomic_path, write_json
from gantrack.io.paths import PATHS, Paths

logger = logging.getLogger(__name__)

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = ("classifier",)


def run(cfg: Config, paths: Paths = PATHS) -> float | None:
    """Train the classifier on the train split; returns its test accuracy (None: no labels)."""
    train, test = data.load_split(paths.train), data.load_split(paths.test)
    if len(set(train.labels.tolist())) < 2:
        paths.classifier_dir.mkdir(parents=True, exist_ok=True)
        (paths.classifier_dir / "NOT_TRAINED.txt").write_text(
            "The data has no labels (one class), so no classifier was trained; evaluation uses "
            "Inception features (evaluate.extractor: auto).\n"
        )
        write_json(paths.classifier_metrics, {})
        logger.info("the data has no labels (one class): no classifier; evaluation uses "
                    "Inception features (evaluate.extractor auto)")  # fmt: skip
        return None
    keras.utils.set_random_seed(cfg.classifier.seed)
    model, accuracy = classifier.train_classifier(
        cfg.classifier, train.images, train.labels, test.images, test.labels
    )
    with atomic_path(paths.classifier) as tmp:
        model.save(tmp)
    write_json(paths.classifier_metrics, {"classifier_test_accuracy": accuracy})
    logger.info("classifier test accuracy: %.4f", accuracy)
    return accuracy
