"""The files the stages exchange, relative to the project root: one source for the paths that
dvc.yaml declares (tests/test_layout.py checks that they agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gantrack.runtime.errors import UserError


@dataclass(frozen=True)
class Paths:
    """Every file a stage reads or writes (as in dvc.yaml); `checkpoints` (training's resume
    state) and `train_lock` are deliberately no DVC outputs."""

    train: Path = Path("data/prepared/train.npz")
    test: Path = Path("data/prepared/test.npz")
    meta: Path = Path("data/prepared/meta.json")
    classifier_dir: Path = Path("models/classifier")  # empty when the data has no labels
    classifier: Path = Path("models/classifier/classifier.keras")
    classifier_metrics: Path = Path("metrics/classifier.json")
    reference: Path = Path("data/reference/stats.npz")
    generator: Path = Path("models/generator.keras")
    train_run: Path = Path("models/run.json")
    checkpoints: Path = Path("checkpoints")
    train_lock: Path = Path("checkpoints.lock")  # held by the one `gantrack train` running
    grids_dir: Path = Path("plots/samples")  # one fixed-noise grid PNG per sampled epoch
    losses_csv: Path = Path("plots/losses.csv")
    losses_png: Path = Path("plots/losses.png")
    samples: Path = Path("data/generated/samples.npz")  # key `images`, uint8 NHWC
    generate_run: Path = Path("data/generated/run.json")
    samples_png: Path = Path("plots/generated.png")
    progress_gif: Path = Path("plots/progress.gif")
    eval_metrics: Path = Path("metrics/eval.json")


PATHS = Paths()


def require(path: Path, stage: str) -> Path:
    """path, or a UserError saying which stage makes it."""
    if not Path(path).is_file():
        raise UserError(f"{path} is missing; run `dvc repro {stage}` first")
    return Path(path)
