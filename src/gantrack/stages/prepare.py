"""prepare: the dataset -> data/prepared/{train,test}.npz (uint8 NHWC + labels) and meta.json."""

from __future__ import annotations

import logging
from pathlib import Path

from gantrack import data
from gantrack.config import Config
from gantrack.io.files import write_json
from gantrack.io.paths import PATHS, Paths
from gantrack.runtime import redact
from gantrack.runtime.errors import UserError

logger = logging.getLogger(__name__)

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = ("base.seed", "data")


def run(cfg: Config, paths: Paths = PATHS) -> dict:
    """Load data.dataset, keep a seeded data.limit subset of train; returns meta.json's values
    (dataset, source, shape, n_train, n_test, n_classes, class_names, sha256)."""
    d = cfg.data
    train, test = data.load_dataset(d, cfg.base.seed)
    classes = len(set(train.labels.tolist()) | set(test.labels.tolist()))
    if classes > 1 and d.limit is not None and d.limit < classes:
        raise UserError(f"data.limit: {d.limit} images cannot hold the {classes} classes of "
                        f"{d.dataset}; allowed: null (all), {classes} or more")  # fmt: skip
    train = data.subsample(train, cfg.data.limit, cfg.base.seed)
    meta = {
        "dataset": cfg.data.dataset,
        "source": redact.mask(str(Path(d.source_dir).resolve())) if d.source_dir else "default",
        "shape": list(train.images.shape[1:]),
        "n_train": len(train),
        "n_test": len(test),
        "n_classes": int(max(train.labels.max(), test.labels.max())) + 1,
        "class_names": list(train.class_names),  # by label; [] where the data names none
        "sha256": data.digest(train, test),
    }
    data.save_split(paths.train, train)
    data.save_split(paths.test, test)
    write_json(paths.meta, meta)
    logger.info("prepared %s: %d train, %d test images, %s, %d classes", d.dataset, len(train),
                len(test), "x".join(map(str, meta["shape"])), meta["n_classes"])  # fmt: skip
    return meta
