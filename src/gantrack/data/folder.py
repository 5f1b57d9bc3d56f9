"""A folder of the user's own images as a dataset: PNG, JPEG, BMP and GIF files, flat or one
subfolder per class (the subfolder names, sorted, are the labels), each center-cropped to a
square and resized to image_size x image_size with Pillow, in grayscale (1 channel) or RGB (3).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from gantrack.data.splits import Split, hold_out
from gantrack.io import limits
from gantrack.io.files import open_regular
from gantrack.runtime.errors import UserError, one_line

logger = logging.getLogger(__name__)
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's names; no other decoder ever runs
MIN_IMAGES = 10  # fewer cannot make a train and a test split worth the name
BAD_IMAGES = ("skip", "refuse")
GRAY = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
MAX_DEPTH = 32  # folders below source_dir (classes are the first level)


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
                    tuple(map(_text, classes)))  # fmt: skip


def _text(name: str) -> str:
    """A folder's name as text any UTF-8 reader takes: bytes that are not UTF-8 (which Python
    holds as lone surrogates, refused by strict JSON parsers and UTF-8 writers) as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _list(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under root, their labels (class index, 0 without classes) and class names."""
    if not root.is_dir():
        raise UserError(f"data.source_dir: {root} is not a folder (data.dataset folder needs one)")
    files = sorted(_image_files(root))
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


def _image_files(root: Path) -> list[Path]:
    """The files with an image suffix under root, at most MAX_DEPTH folders down. A class
    folder may be a symbolic link (`cats -> /data/cats`); links to folders below one are not
    followed (a link to an ancestor would loop), and a subfolder that cannot be listed
    (lost+found, another user's) is skipped: both with a warning. Links to files are read."""
    found, folders = [], [(root, 0)]
    while folders:
        folder, depth = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    path = folder / entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if depth == MAX_DEPTH:
                            raise UserError(f"data.source_dir: {path} lies more than {MAX_DEPTH} "
                                            "folders deep; flatten it")  # fmt: skip
                        folders.append((path, depth + 1))
                    elif path.suffix.lower() in EXTENSIONS and entry.is_file():
                        found.append(path)
                    elif entry.is_symlink() and entry.is_dir():
                        if depth == 0:  # a class folder kept elsewhere: one level, no loop
                            folders.append((path, 1))
                        else:
                            logger.warning("%s: skipped, a symbolic link to a folder below a "
                                           "class folder (not followed)", path)  # fmt: skip
        except OSError as exc:
            if folder == root:
                raise UserError(f"data.source_dir: cannot list {root} ({one_line(exc)})") from None
            logger.warning("%s: skipped, it cannot be listed (%s)", folder, one_line(exc))
    return found


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """The image opened from its header (nothing decoded yet) in one of the formats EXTENSIONS
    name, whatever its suffix, from a regular file (a FIFO swapped in is refused, not waited
    on); limits.LimitError when decoding it would cost too much. Pillow's warnings (odd EXIF
    tags) stay off stderr; its decompression-bomb warning is an error."""
    with open_regular(path) as file, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(file, formats=FORMATS) as image:
            limits.check_pixels(path, image.size)
            yield image


UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
              Image.DecompressionBombError)  # fmt: skip


def _mode(path: Path) -> str | None:
    """The image's mode from its header (nothing decoded); None when unreadable."""
    try:
        with _open(path) as image:
            return image.mode
    except (*UNREADABLE, limits.LimitError):
        return None


def _read(path: Path, mode: str, size: int, bad_images: str) -> np.ndarray | None:
    """The image decoded (its first frame), transparency laid on white, center-cropped to a
    square and resized (Lanczos) to size x size, turned by its EXIF orientation, in mode; None
    when it cannot be read (or has more than limits.MAX_IMAGE_PIXELS) and bad_images is
    "skip". At most three full-size pictures at once (the largest allowed: ~0.55 GB); the
    turn is done at size x size (it commutes with the centered crop and the resize)."""
    try:
        with _open(path) as opened:
            turn = EXIF_TURNS.get(opened.getexif().get(EXIF_ORIENTATION, 1))
            alpha = opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info
            image = _converted(opened, "RGBA" if alpha else mode)
            width, height = image.size
            side = min(width, height)
            box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
            if alpha:  # before the resize: Lanczos overshoots at alpha's edges
                image, box = _on_white(image, box, mode, margin=3 * side // size + 2)
            image = image.resize((size, size), Image.Resampling.LANCZOS, box=box)
        if turn is not None:
            image = image.transpose(turn)
        return np.asarray(image, np.uint8)
    except limits.LimitError as exc:
        problem = str(exc)
    except UNREADABLE as exc:
        problem = f"{path} is not a readable image ({one_line(exc)})"
    if bad_images == "refuse":
        raise UserError(f"data.source_dir: {problem}; remove it or set data.bad_images: skip")
    return None


def _on_white(image: Image.Image, box: tuple, mode: str, margin: int) -> tuple[Image.Image, tuple]:
    """(box of an RGBA image and margin pixels around it (what Lanczos reads: its support is 3
    source pixels per output pixel) laid on white, in mode; box within that)."""
    width, height = image.size
    left, top = max(0, int(box[0]) - margin), max(0, int(box[1]) - margin)
    crop = (left, top, min(width, math.ceil(box[2]) + margin),
            min(height, math.ceil(box[3]) + margin))  # fmt: skip
    square = image if crop == (0, 0, *image.size) else image.crop(crop)
    white = Image.new(mode, square.size, 255 if mode == "L" else (255, 255, 255))
    white.paste(square, mask=square.getchannel("A"))
    return white, (box[0] - crop[0], box[1] - crop[1], box[2] - crop[0], box[3] - crop[1])


def _converted(image: Image.Image, mode: str) -> Image.Image:
    """image in mode; 16-bit grayscale scaled to 8 bits (Pillow's convert would clip it)."""
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)


EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the turn that shows the image upright (as ImageOps.exif_transpose)
EXIF_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
