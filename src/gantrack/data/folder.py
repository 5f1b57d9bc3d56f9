"""A folder of the user's own images as a dataset: PNG, JPEG, BMP and GIF files, flat or one
subfolder per class (the subfolder names, sorted, are the labels), each center-cropped to a
square and resized to image_size x image_size with Pillow, in grayscale (1 channel) or RGB (3).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from gantrack.data.splits import Split, hold_out
from gantrack.io import limits
from gantrack.runtime.errors import UserError, one_line

logger = logging.getLogger(__name__)
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's names; no other decoder ever runs
MIN_IMAGES = 10  # fewer cannot make a train and a test split worth the name
BAD_IMAGES = ("skip", "refuse")
GRAY = ("1", "L", "LA", "I", "I;16", "F")


def read_image_folder(
    root: str | Path, size: int, channels: int | None, *, bad_images: str = "skip",
    test_fraction: float = 0.2, seed: int = 0,
) -> tuple[Split, Split]:  # fmt: skip
    """(train, test) from the images under root, split by test_fraction (stratified by class
    when there are classes), seeded. channels None: 1 when every image is grayscale, else 3.
    Unreadable files are skipped with a count in the log (bad_images "skip") or refused with
    one line naming the first (bad_images "refuse")."""
    files, labels, classes = _list(Path(root))
    if channels is None:  # from the headers: 1 when every image is grayscale
        modes = [mode for mode in map(_mode, files) if mode]
        channels = 1 if modes and all(mode in GRAY for mode in modes) else 3
    images, kept, bad = [], [], []
    for path, label in zip(files, labels, strict=True):
        picture = _read(path, "L" if channels == 1 else "RGB", size, bad_images)
        if picture is None:
            bad.append(path)
            continue
        images.append(picture)
        kept.append(label)
    if bad:
        logger.warning("%s: skipped %d unreadable file(s), the first %s", root, len(bad), bad[0])
    if len(images) < MIN_IMAGES:
        raise UserError(
            f"data.source_dir: {root} holds {len(images)} readable image(s); at least "
            f"{MIN_IMAGES} are needed ({', '.join(EXTENSIONS)})"
        )
    stacked = np.stack(images)
    if channels == 1:
        stacked = stacked[..., np.newaxis]
    described = f"{len(classes)} classes ({', '.join(classes)})" if classes else "no classes"
    logger.debug("%s: %d images, %dx%dx%d, %s, %d skipped", root, len(stacked), size, size,
                channels, described, len(bad))  # fmt: skip
    return hold_out(stacked, np.asarray(kept, np.int64), test_fraction, seed, bool(classes),
                    tuple(classes))  # fmt: skip


def _list(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under root, their labels (class index, 0 without classes) and class names."""
    if not root.is_dir():
        raise UserError(f"data.source_dir: {root} is not a folder (data.dataset folder needs one)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    top = [p for p in files if p.parent == root]
    classes = sorted({p.relative_to(root).parts[0] for p in files if p.parent != root})
    if top and classes:
        raise UserError(
            f"data.source_dir: {root} has images both at its top level ({top[0].name}) and in "
            f"subfolders ({classes[0]}/); put them all in class subfolders or all at the top"
        )
    index = {name: i for i, name in enumerate(classes)}
    labels = [index[p.relative_to(root).parts[0]] if classes else 0 for p in files]
    return files, labels, classes


def _open(path: Path) -> Image.Image:
    """The image opened from its header (nothing decoded yet) in one of the formats EXTENSIONS
    name, whatever its suffix; limits.LimitError when decoding it would cost too much."""
    image = Image.open(path, formats=FORMATS)
    try:
        limits.check_pixels(path, image.size)
    except limits.LimitError:
        image.close()
        raise
    return image


def _mode(path: Path) -> str | None:
    """The image's mode from its header (nothing decoded); None when unreadable."""
    try:
        with _open(path) as image:
            return image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, limits.LimitError):
        return None


def _read(path: Path, mode: str, size: int, bad_images: str) -> np.ndarray | None:
    """The image decoded (its first frame), turned by its EXIF orientation, transparency laid
    on white, center-cropped to a square and resized (Lanczos) to size x size in mode; None
    when it cannot be read (or has more than limits.MAX_IMAGE_PIXELS) and bad_images is
    "skip"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(path) as opened:
                image = ImageOps.exif_transpose(opened)
                if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
                    image = Image.alpha_composite(white, image.convert("RGBA"))
                image = ImageOps.fit(image.convert(mode), (size, size), Image.Resampling.LANCZOS)
                return np.asarray(image, np.uint8)
    except limits.LimitError as exc:
        problem = str(exc)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:  # fmt: skip
        problem = f"{path} is not a readable image ({one_line(exc)})"
    if bad_images == "refuse":
        raise UserError(f"data.source_dir: {problem}; remove it or set data.bad_images: skip")
    return None
