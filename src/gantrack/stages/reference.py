"""reference: the test split -> data/reference/stats.npz, its features on the configured
extractor with their mean, covariance and count (what every FID compares against)."""

from __future__ import annotations

from gantrack import data
from gantrack.config import Config
from gantrack.evaluation import extractors, scoring
from gantrack.paths import PATHS, Paths


def run(cfg: Config, paths: Paths = PATHS) -> None:
    """Extract the test split's features once per extractor and save their statistics."""
    e = cfg.evaluate
    name, extract = extractors.load_extractor(e, paths.classifier)
    feats, _ = extract(data.load_split(paths.test).images, e.batch_size)
    scoring.write_reference(paths.reference, feats, name)
