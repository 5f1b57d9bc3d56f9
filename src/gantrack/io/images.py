"""Image conversions and picture files: [-1, 1] floats <-> uint8, sample grids, GIFs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gantrack.io.files import atomic_path

# Grids narrower than this are scaled up (nearest neighbour) so 8x8 or 28x28 samples are visible.
MIN_GRID_WIDTH = 512


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) in [0, 255] -> float32 in [-1, 1] (the generator's tanh range)."""
    return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float (N, H, W, C) in [-1, 1] -> uint8 in [0, 255]; values outside are clipped."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, rows: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one uint8 picture (rows*(H+pad)+pad, ..., C).

    rows defaults to ceil(sqrt(N)); empty cells stay black.
    """
    n, h, w, c = images.shape
    rows = rows or math.ceil(math.sqrt(n))
    cols = math.ceil(n / rows)
    out = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        out[top : top + h, left : left + w] = image
    scale = max(1, MIN_GRID_WIDTH // out.shape[1])
    return out.repeat(scale, axis=0).repeat(scale, axis=1)


def grid_path(directory: str | Path, epoch: int) -> Path:
    """Where the sample grid of an epoch goes: <directory>/<epoch>.png. Files named by step in
    one folder are what DVC's VS Code extension shows with a step slider."""
    return Path(directory) / f"{epoch}.png"


def grid_files(directory: str | Path) -> dict[int, Path]:
    """{epoch: grid PNG} in directory, by epoch."""
    found = {int(p.stem): p for p in Path(directory).glob("*.png") if p.stem.isdigit()}
    return dict(sorted(found.items()))


def _pil(picture: np.ndarray) -> Image.Image:
    return Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)


def save_png(path: str | Path, picture: np.ndarray) -> None:
    """Write a uint8 (H, W, C) picture as PNG, atomically."""
    with atomic_path(path) as tmp:
        _pil(picture).save(tmp, format="PNG")


def save_gif(path: str | Path, pictures: Sequence[np.ndarray], seconds_per_frame=0.5) -> None:
    """Write uint8 (H, W, C) pictures of one size as an endlessly looping GIF, atomically."""
    frames = [_pil(p) for p in pictures]
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=int(seconds_per_frame * 1000),
            loop=0,
        )


def load_png(path: str | Path) -> np.ndarray:
    """Read a PNG written by save_png back as uint8 (H, W, C)."""
    picture = np.asarray(Image.open(path))
    return picture[..., None] if picture.ndim == 2 else picture
