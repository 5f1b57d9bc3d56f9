"""`gantrack sample`: new images from a generator, outside the pipeline. The generator is a
registered model (models:/NAME@champion, models:/NAME/3), a run's (runs:/RUN_ID/generator) or a
.keras file; the images go to a PNG grid or an npz (key `images`, uint8 NHWC). --truncation T
keeps every noise entry within [-T, T]; --interpolate draws latent walks instead (a grid of one
walk per row, or with --out NAME.gif an animation walking them all)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from gantrack.config import MAX_SEED, Config
from gantrack.io import images, keras_files
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError

logger = logging.getLogger(__name__)

MAX_IMAGES = 1_000_000
# ... and at most this many pixel values in all (~134 M: 171,196 images of 28x28, 682 of
# 256x256x3), so memory stays near a gigabyte for any image size (-n 2000 of 256x256x3 took
# over 6 GB before)
MAX_VALUES = 2**27
MAX_STEPS = 1000
DEFAULT_IMAGES, DEFAULT_WALKS, DEFAULT_STEPS = 64, 8, 8
URI_SCHEMES = ("models:/", "runs:/")
SECONDS_PER_FRAME = 0.15


def run(model: str, n: int | None, out: Path, seed: int, cfg: Config, label: int | None = None,
        truncation: float | None = None, interpolate: bool = False,
        steps: int | None = None) -> np.ndarray:  # fmt: skip
    """n images from noise seeded by seed, written to out (.png: one grid; .npz; .gif: only
    walks); returns them. label: all of that class (a class-conditional generator's, 0-based as
    in the data). truncation: noise entries within [-truncation, truncation]. interpolate: n
    latent walks (one per row) of `steps` images each, row by row."""
    given = n is not None
    n, steps = _check(n, seed, truncation, interpolate, steps)
    _check_out(out, interpolate)
    generator, version = _load(model, cfg)
    from gantrack.gan import sampling  # TensorFlow: imported once the input is checked

    if label is not None:
        label = _check_label(label, sampling.num_classes(generator), model)
    n = _within_budget(n, given, steps, generator, model)
    batch = cfg.generate.batch_size
    if interpolate:
        fakes = sampling.walk(generator, n, steps, seed, batch, label, truncation)
    else:
        fakes = sampling.sample(generator, n, seed, batch, label=label, truncation=truncation)
    _write(out, fakes, n if interpolate else None)
    if version is not None:  # said once it worked: an error stays the only line on stderr
        logger.info("%s is version %s", model, version)
    return fakes


def _within_budget(n: int, given: bool, steps: int, generator, model: str) -> int:
    """n images (steps 0) or walks of `steps` images, at most MAX_VALUES pixel values: the
    default lowered to fit, a given -n that does not fit refused."""
    from gantrack.gan import sampling

    most = sampling.images_within(generator, MAX_VALUES // max(steps, 1))
    if n <= most or (not given and most):
        return min(n, most)
    size = "x".join(str(d) for d in generator.output_shape[1:])
    unit = f"walks of {steps} images" if steps else "images"
    raise UserError(f"-n: {n} {unit} of {size} from {model} are too many; at most {most} at "
                    f"this size ({MAX_VALUES} pixel values)")  # fmt: skip


def _check(n, seed, truncation, interpolate, steps) -> tuple[int, int]:
    """(n, steps) with their defaults, once every value is in range."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed: {seed} is out of range; must be in 0..{MAX_SEED}")
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise UserError(f"--truncation: {truncation} is not allowed; must be a finite number > 0 "
                        "(each noise entry is kept within [-T, T])")  # fmt: skip
    if steps is not None and not interpolate:
        raise UserError("--steps: only with --interpolate (the images along each latent walk)")
    if not interpolate:
        n = DEFAULT_IMAGES if n is None else n
        if not 0 < n <= MAX_IMAGES:
            raise UserError(f"-n: {n} is out of range; must be in 1..{MAX_IMAGES}")
        return n, 0
    steps = DEFAULT_STEPS if steps is None else steps
    if not 2 <= steps <= MAX_STEPS:
        raise UserError(f"--steps: {steps} is out of range; must be in 2..{MAX_STEPS}")
    n = DEFAULT_WALKS if n is None else n
    if not 0 < n <= MAX_IMAGES // steps:
        raise UserError(f"-n: {n} walks is out of range with --steps {steps}; must be in "
                        f"1..{MAX_IMAGES // steps} (at most {MAX_IMAGES} images)")  # fmt: skip
    return n, steps


def _check_out(out: Path, interpolate: bool) -> None:
    """out can be written, checked before any image is drawn."""
    if out.suffix not in (".png", ".npz", ".gif"):
        raise UserError(f"--out: {out} must end in .png (a grid), .npz (the images) or .gif "
                        "(with --interpolate: an animated latent walk)")  # fmt: skip
    if out.suffix == ".gif" and not interpolate:
        raise UserError(f"--out: {out}: a .gif animates latent walks; add --interpolate, or "
                        "write a .png or .npz")  # fmt: skip
    if out.is_dir():
        raise UserError(f"--out: {out} is a folder; give a file name ending in .png or .npz")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(f"--out: {out}: no folder {folder}; create it or write elsewhere")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--out: {out}: folder {folder} is not writable; write elsewhere")


def _write(out: Path, fakes: np.ndarray, walks: int | None) -> None:
    """fakes to out: an npz, a grid (one walk per row), or a GIF whose frame j shows every
    walk's j-th image (forth, then back: it loops smoothly)."""
    if out.suffix == ".npz":
        with atomic_path(out) as tmp:
            np.savez(tmp, images=fakes)
    elif out.suffix == ".gif":
        steps = len(fakes) // walks
        frames = [images.grid(fakes[j::steps]) for j in range(steps)]
        images.save_gif(out, frames + frames[-2:0:-1], seconds_per_frame=SECONDS_PER_FRAME)
    else:
        images.save_png(out, images.grid(fakes, rows=walks))


def _load(model: str, cfg: Config):
    """(generator, version): the generator behind a models:/ or runs:/ URI (in the configured
    MLflow store) or a .keras file, loaded without running code from it (gantrack.io.keras_files),
    and the registry version a models:/NAME@ALIAS named (else None)."""
    version = None
    if model.startswith(URI_SCHEMES):
        from gantrack import tracking
        from gantrack.tracking import registry

        tracking.configure(None)  # reads the store; creates nothing
        uri, version = _resolve_alias(model)
        generator = registry.load_generator(uri)
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
    return generator, version


def _resolve_alias(uri: str) -> tuple[str, str | None]:
    """(models:/NAME/VERSION, VERSION) for models:/NAME@ALIAS, the version it names now, so that
    the version said is the one loaded; other URIs, and aliases the store does not know
    (load_generator then says why), as given with None."""
    name, at, alias = uri.removeprefix("models:/").partition("@")
    if not uri.startswith("models:/") or not at or "/" in alias:
        return uri, None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        version = MlflowClient().get_model_version_by_alias(name, alias).version
    except MlflowException:
        return uri, None
    return f"models:/{name}/{version}", version


def _check_label(label: int, classes: int, model: str) -> int:
    if not classes:
        raise UserError(f"--class: {model} is not class-conditional (trained without classes)")
    if not 0 <= label < classes:
        raise UserError(f"--class: {label} is out of range; {model} has classes 0..{classes - 1}")
    return label
