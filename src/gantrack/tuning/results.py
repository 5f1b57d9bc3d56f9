"""What a study leaves behind: files in tuning/, the parent run's artifacts, params.yaml updates.

best_params.yaml and trials.csv are for people and scripts; `apply_params` writes the winner
into params.yaml so that the next `dvc repro` trains it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState
from ruamel.yaml import YAML

from gantrack import config as config_lib
from gantrack.config import SEARCH_TARGETS, schema
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError

logger = logging.getLogger(__name__)


def write_outputs(study: optuna.Study, metric: str, out_dir: Path) -> None:
    """trials.csv always; best_params.yaml and plots once a trial completed. Each file is also
    logged to the active (parent) MLflow run, with the best value and the trial counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "trials.csv") as tmp:
        study.trials_dataframe().to_csv(tmp, index=False)
    mlflow.log_artifact(str(out_dir / "trials.csv"))
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    counts = {f"trials_{s.name.lower()}": len(study.get_trials(states=(s,))) for s in states}
    mlflow.log_metrics(counts)
    logger.info("study %r: %s", study.study_name, counts)
    if not counts["trials_complete"]:
        logger.warning("study %r: no complete trial yet, so no best params", study.study_name)
        return
    best = study.best_trial
    _write_best(out_dir / "best_params.yaml", study.study_name, best, metric)
    mlflow.log_artifact(str(out_dir / "best_params.yaml"))
    mlflow.log_metric(f"best_{metric}", best.value)
    mlflow.set_tag("optuna.best_trial", best.number)
    logger.info("best: trial %d, %s = %.4g, %s", best.number, metric, best.value, best.params)
    _write_plots(study, out_dir, counts["trials_complete"])


def _write_best(path: Path, study_name: str, best: FrozenTrial, metric: str) -> None:
    """The best trial's params under their params.yaml keys, with the value they reached."""
    doc = {"study": study_name, "trial": best.number, metric: best.value, "params": best.params}
    with atomic_path(path) as tmp:
        YAML().dump(doc, tmp)


def _write_plots(study: optuna.Study, out_dir: Path, n_complete: int) -> None:
    """Optimisation history, FID per epoch of every trial; parallel coordinates and
    importances from 2 complete trials."""
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    plots = {
        "optimization_history": vis.plot_optimization_history,
        "intermediate_values": vis.plot_intermediate_values,  # FID per epoch: shows pruning
    }
    if n_complete >= 2:
        plots["parallel_coordinate"] = vis.plot_parallel_coordinate
        plots["param_importances"] = vis.plot_param_importances
    else:
        logger.info("parallel coordinates, param importances: need 2 complete trials; not plotted")
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                figure = plot(study).figure
            except (RuntimeError, ValueError) as exc:  # e.g. importances of equal values
                logger.warning("%s: not plotted (%s)", name, exc)
                continue
        with atomic_path(out_dir / f"{name}.png") as tmp:
            figure.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(figure)
        mlflow.log_artifact(str(out_dir / f"{name}.png"), artifact_path="plots")


def apply_params(study: optuna.Study, params_path: Path) -> dict[str, Any]:
    """Write the best trial's params into params_path with a ruamel round-trip (comments, order
    and the other values kept) after checking the result loads; returns the params."""
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet; run `gantrack tune` first"
        ) from None
    unknown = sorted(set(best.params) - set(SEARCH_TARGETS.values()))
    if unknown:
        allowed = ", ".join(SEARCH_TARGETS.values())
        raise UserError(f"{unknown[0]}: not a knob gantrack tune searches; allowed: {allowed}")
    yaml = YAML()  # round-trip
    doc = yaml.load(params_path.read_text()) or {}
    for key, value in best.params.items():
        previous = schema.set_dotted(doc, key, value)
        logger.info("%s: %s: %s -> %s", params_path, key, previous, value)
    config_lib.from_dict(doc)  # never write a params file the pipeline would refuse
    with atomic_path(params_path) as tmp:
        yaml.dump(doc, tmp)
    return dict(best.params)
