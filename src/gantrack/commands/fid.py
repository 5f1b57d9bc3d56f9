"""`gantrack fid A B`: every metric of B's images against A's, outside the pipeline."""

from __future__ import annotations

from pathlib import Path

from gantrack.config import Config
from gantrack.evaluation import scoring
from gantrack.io.paths import PATHS, Paths
from gantrack.runtime.errors import UserError


def run(path_a: Path, path_b: Path, cfg: Config, paths: Paths = PATHS) -> dict:
    """Metrics of B's images against A's (each a samples .npz or a prepared split, key
    `images`) on the configured extractor (the classifier from paths.classifier)."""
    real, fake = scoring.load_samples(path_a), scoring.load_samples(path_b)
    if real.shape[1:] != fake.shape[1:]:
        raise UserError(
            f"images differ in shape: {path_a} {real.shape[1:]}, {path_b} {fake.shape[1:]}"
        )
    e = cfg.evaluate
    scoring.check_counts(e, (path_a, len(real)), (path_b, len(fake)))
    from gantrack.evaluation import extractors  # TensorFlow: once the files are known good

    name, extract = extractors.load_extractor(e, paths.classifier, shape=real.shape[1:])
    real_feats, _ = extract(real, e.batch_size)
    fake_feats, fake_probs = extract(fake, e.batch_size)
    return scoring.score(name, real_feats, fake_feats, fake_probs, e)
