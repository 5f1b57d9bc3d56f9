"""What the MLflow UI shows first of a run: the run page opens on Overview, whose first item is
the run's description (the `mlflow.note.content` tag, rendered as markdown above the metrics
and the params). gantrack writes the latest checkpointed sample grid there, so the samples are
seen before anything else; at the end of training it is the final grid.

MLflow 3's run page shows a description's pictures at their own size and folds a description
taller than 100 px behind "Show more", so the description holds a preview that fits
(PREVIEW_BOX: the grid cut into bands of whole rows set side by side, then scaled), linked to
the full grid, logged as the plain artifact latest_grid.png (open in the run's Artifacts).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from gantrack.io import images

NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
# At the artifacts' root: samples/ is a tuning trial's own (its last grid, for optuna-dashboard).
LATEST, PREVIEW = "latest_grid.png", "latest_grid_preview.png"
# Height and width in pixels: a 100 px description less the paragraph's 13 px margin, and the
# narrowest description column of the run page's two-column layout (~640 px).
PREVIEW_BOX = (84, 600)
GAP = 8  # white pixels between bands


def show_latest(run_id: str, epoch: int, grid_png: Path) -> None:
    """grid_png (epoch's grid) as latest_grid.png, its preview and the description linking
    them. The grid's rows come from the run's `train.grid_rows` param (without it the whole
    grid is scaled into the preview)."""
    client = MlflowClient()
    run = client.get_run(run_id)
    picture = images.load_png(grid_png)
    rows = run.data.params.get("train.grid_rows", "")
    small = preview(picture, int(rows) if rows.isdigit() else None)
    with tempfile.TemporaryDirectory(prefix="gantrack-overview-") as tmp:
        for name, image in ((LATEST, picture), (PREVIEW, small)):
            images.save_png(Path(tmp) / name, image)
            client.log_artifact(run_id, str(Path(tmp) / name))
    client.set_tag(run_id, NOTE_TAG, note(run.info.experiment_id, run_id, epoch))


def note(experiment_id: str, run_id: str, epoch: int) -> str:
    """Markdown: the preview (addresses relative to the UI's root, so they work under any host
    or prefix; `epoch` keeps a browser from showing an earlier epoch's cached preview), linked
    to the full grid in the run's Artifacts tab."""
    image = f"get-artifact?path={PREVIEW}&run_uuid={run_id}&epoch={epoch}"
    full = f"#/experiments/{experiment_id}/runs/{run_id}/artifacts/{LATEST}"
    return f"[![samples after epoch {epoch}]({image})]({full})"


def preview(picture: np.ndarray, rows: int | None) -> np.ndarray:
    """picture (a grid of `rows` rows, made by images.grid) within PREVIEW_BOX: as few bands
    of whole rows as make the samples largest, side by side; scaled down to fit, or up by a
    whole factor while it fits twice."""
    base = _unscaled(picture, rows) if rows else None
    if base is None:
        return _fit(picture)
    pitch = (base.shape[0] - 1) // rows
    best = max(range(1, rows + 1), key=lambda per_band: _scale(base, rows, pitch, per_band))
    bands = [base[start * pitch : min(start + best, rows) * pitch + 1]
             for start in range(0, rows, best)]  # fmt: skip
    strip = np.full((bands[0].shape[0], sum(b.shape[1] + GAP for b in bands) - GAP,
                     base.shape[2]), 255, np.uint8)  # fmt: skip
    left = 0
    for band in bands:
        strip[: band.shape[0], left : left + band.shape[1]] = band
        left += band.shape[1] + GAP
    return _fit(strip)


def _scale(base: np.ndarray, rows: int, pitch: int, per_band: int) -> float:
    bands = math.ceil(rows / per_band)
    height, width = per_band * pitch + 1, bands * (base.shape[1] + GAP) - GAP
    return min(PREVIEW_BOX[0] / height, PREVIEW_BOX[1] / width)


def _unscaled(picture: np.ndarray, rows: int) -> np.ndarray | None:
    """The grid before images.grid enlarged it to MIN_GRID_WIDTH; None if picture is not a
    square grid of `rows` rows that images.grid made."""
    height, width = picture.shape[:2]
    for factor in range(max(1, images.MIN_GRID_WIDTH // 2), 0, -1):
        h, w = height // factor, width // factor
        if (height % factor or width % factor or (h - 1) % rows or (w - 1) % rows
                or max(1, images.MIN_GRID_WIDTH // w) != factor):  # fmt: skip
            continue
        return picture[::factor, ::factor]
    return None


def _fit(picture: np.ndarray) -> np.ndarray:
    height, width = picture.shape[:2]
    scale = min(PREVIEW_BOX[0] / height, PREVIEW_BOX[1] / width)
    if scale >= 2:
        return picture.repeat(int(scale), axis=0).repeat(int(scale), axis=1)
    if scale >= 1:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(picture.squeeze(-1) if picture.shape[2] == 1 else picture)
    resized = np.asarray(resized.resize(size, Image.Resampling.LANCZOS))
    return resized.reshape(size[1], size[0], picture.shape[2])
