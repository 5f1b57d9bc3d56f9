"""`gantrack sample`: new images from a generator, outside the pipeline. The generator is a
registered model (models:/NAME@champion, models:/NAME/3), a run's (runs:/RUN_ID/generator) or a
.keras file; the images go to a PNG grid or an npz (key `images`, uint8 NHWC)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gantrack.config import MAX_SEED, Config
from gantrack.io import images, keras_files
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError

MAX_IMAGES = 1_000_000
URI_SCHEMES = ("models:/", "runs:/")


def run(
    model: str, n: int, out: Path, seed: int, cfg: Config, label: int | None = None
) -> np.ndarray:
    """n images from noise seeded by seed, written to out (.png: one grid; .npz); returns them.
    label: all of that class (a class-conditional generator's, 0-based as in the data)."""
    if not 0 < n <= MAX_IMAGES:
        raise UserError(f"-n: {n} is out of range; must be in 1..{MAX_IMAGES}")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed: {seed} is out of range; must be in 0..{MAX_SEED}")
    _check_out(out)
    generator = _load(model, cfg)
    from gantrack.gan import sampling  # TensorFlow: imported once the input is checked

    if label is not None:
        label = _check_label(label, sampling.num_classes(generator), model)
    fakes = sampling.sample(generator, n, seed, cfg.generate.batch_size, label=label)
    if out.suffix == ".npz":
        with atomic_path(out) as tmp:
            np.savez(tmp, images=fakes)
    else:
        images.save_png(out, images.grid(fakes))
    return fakes


def _check_out(out: Path) -> None:
    """out can be written, checked before any image is drawn."""
    if out.suffix not in (".png", ".npz"):
        raise UserError(f"--out: {out} must end in .png (a grid) or .npz (the images)")
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; give a file name ending in .png or .npz")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(f"--out: {out}: no folder {folder}; create it or write elsewhere")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out: {out}: folder {folder} is not writable; write elsewhere")


def _load(model: str, cfg: Config):
    """The generator behind a models:/ or runs:/ URI (in the configured MLflow store) or a
    .keras file, loaded without running code from it (gantrack.io.keras_files)."""
    if model.startswith(URI_SCHEMES):
        from gantrack import tracking
        from gantrack.tracking import registry

        tracking.configure(None)  # reads the store; creates nothing
        generator = registry.load_generator(model)
    else:
        if not Path(model).is_file():
            raise UserError(
                f"--model: {model}: no such file; give a .keras file, models:/NAME@ALIAS, "
                "models:/NAME/VERSION or runs:/RUN_ID/generator"
            )
        generator = keras_files.load(model, f"--model: {model}", inputs=2)
    shape = generator.output_shape
    if not isinstance(shape, tuple) or len(shape) != 4:
        raise UserError(
            f"--model: {model} is not a generator (it maps {generator.input_shape} to "
            f"{generator.output_shape}, not noise vectors to images)"
        )
    return generator


def _check_label(label: int, classes: int, model: str) -> int:
    if not classes:
        raise UserError(f"--class: {model} is not class-conditional (trained without classes)")
    if not 0 <= label < classes:
        raise UserError(f"--class: {label} is out of range; {model} has classes 0..{classes - 1}")
    return label
