"""reference: the test split -> data/reference/stats.npz, its features on the configured
extractor with their mean, covariance and count (what every FID compares against), and the
images' labels (labelled data: the FID within each class)."""

from __future__ import annotations

import numpy as np

from gantrack import data
from gantrack.config import Config, EvaluateConfig
from gantrack.evaluation import extractors, scoring
from gantrack.io.paths import PATHS, Paths

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = (
    "evaluate.extractor",
    "evaluate.inception_weights",
    "evaluate.inception_fid_graph",
    "evaluate.batch_size",
)


def run(cfg: Config, paths: Paths = PATHS) -> None:
    """Extract the test split's features once per extractor and save their statistics."""
    # Only the knobs in PARAMS reach the extractor: no other evaluate knob may change it.
    e = EvaluateConfig(
        extractor=cfg.evaluate.extractor,
        inception_weights=cfg.evaluate.inception_weights,
        inception_fid_graph=cfg.evaluate.inception_fid_graph,
        batch_size=cfg.evaluate.batch_size,
    )
    name, extract = extractors.load_extractor(e, paths.classifier)
    test = data.load_split(paths.test)
    feats, _ = extract(test.images, e.batch_size)
    labelled = len(np.unique(test.labels)) > 1  # unlabelled data: every label 0
    scoring.write_reference(paths.reference, feats, name, test.labels if labelled else None)
