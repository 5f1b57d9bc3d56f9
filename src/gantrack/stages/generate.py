"""generate: the generator -> data/generated/samples.npz (key `images`, uint8 NHWC; of a
class-conditional generator also `labels`, the class each image was drawn for), a grid of
the first samples (of a class-conditional generator instead: a row of each class, drawn for
it), and the progress GIF of the training grids; logged to the pipeline's run."""

from __future__ import annotations

import mlflow
import numpy as np

from gantrack import tracking
from gantrack.config import Config, flat_params
from gantrack.gan import sampling
from gantrack.io import images, keras_files
from gantrack.io.files import atomic_path
from gantrack.io.paths import PATHS, Paths, require

# The params this stage reads: dvc.yaml lists them (a test checks), the CLI rechecks them.
PARAMS = ("generate", "train.grid_rows", "tracking.experiment")


def run(cfg: Config, paths: Paths = PATHS) -> np.ndarray:
    """Sample generate.n_samples images from noise seeded by generate.seed; returns them."""
    path = require(paths.generator, "train")
    tracking.configure(cfg.tracking.experiment)  # an unusable store fails before any work
    generator = keras_files.load(path, str(path), inputs=2)
    gen = cfg.generate
    fakes, labels = sampling.sample_labelled(generator, gen.n_samples, gen.seed, gen.batch_size)
    drawn_for = {} if labels is None else {"labels": labels}  # the class each was drawn for
    if classes := sampling.num_classes(generator):
        rows = sampling.sample_classes(generator, cfg.train.grid_rows, gen.seed, gen.batch_size)
        picture = images.grid(rows, rows=classes)
    else:
        picture = images.grid(fakes[: cfg.train.grid_rows**2])
    with tracking.continue_run(paths.train_run, flat_params(cfg, "generate")) as run_:
        with atomic_path(paths.samples) as tmp:
            np.savez(tmp, images=fakes, **drawn_for)
        images.save_png(paths.samples_png, picture)
        frames = [images.load_png(p) for p in images.grid_files(paths.grids_dir).values()]
        if frames:
            images.save_gif(paths.progress_gif, frames)
            mlflow.log_artifact(str(paths.progress_gif))
        mlflow.log_artifact(str(paths.samples_png))
    tracking.write_run_file(paths.generate_run, run_.info.run_id)
    return fakes
