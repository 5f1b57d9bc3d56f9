"""What a study leaves behind: files in tuning/, the parent run's artifacts, params.yaml updates.

report.md (gantrack.tuning.report), best_params.yaml and trials.csv are for people and scripts;
`apply_params` writes the winner into params.yaml, each changed knob commented with the study,
trial and data it was found on, so that the next `dvc repro` trains it.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState
from ruamel.yaml import YAML

from gantrack import config as config_lib
from gantrack.config import SEARCH_TARGETS, DataConfig, schema
from gantrack.io.files import atomic_path
from gantrack.runtime.errors import UserError, printable
from gantrack.tuning import report

logger = logging.getLogger(__name__)


def describe_data(d: DataConfig) -> str:
    """The data a study trains on, for people: the dataset, a folder's path, a subset's size."""
    text = f"{d.dataset} {d.source_dir}" if d.dataset == "folder" else d.dataset
    if d.limit:
        text += f" (limit {d.limit} images)"
    return "".join(c if c.isprintable() else "?" for c in text)  # one line, also in YAML


def write_outputs(study: optuna.Study, metric: str, out_dir: Path) -> None:
    """trials.csv and report.md always; best_params.yaml and plots once a trial completed. Each
    file is also logged to the active (parent) MLflow run, with the best and the baseline value
    and the trial counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "trials.csv") as tmp:
        study.trials_dataframe().map(_csv_cell).to_csv(tmp, index=False)
    mlflow.log_artifact(str(out_dir / "trials.csv"))
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    counts = {f"trials_{s.name.lower()}": len(study.get_trials(states=(s,))) for s in states}
    mlflow.log_metrics(counts)
    logger.info("study %r: %s", study.study_name, counts)
    text = report.markdown(study, metric, counts)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(text)
    mlflow.log_artifact(str(out_dir / "report.md"))
    if not counts["trials_complete"]:
        logger.warning("study %r: no complete trial yet, so no best params", study.study_name)
        return
    best = study.best_trial
    base = report.baseline_trial(study)
    _write_best(out_dir / "best_params.yaml", study, best, metric, base)
    mlflow.log_artifact(str(out_dir / "best_params.yaml"))
    mlflow.log_metric(f"best_{metric}", best.value)
    mlflow.set_tag("optuna.best_trial", best.number)
    if base is not None and base.state == TrialState.COMPLETE:
        mlflow.log_metric(f"baseline_{metric}", base.value)
        mlflow.set_tag("optuna.baseline_trial", base.number)
    for line in text.splitlines()[1:]:  # the report, on the log too (tables as `key: value`)
        if line.strip() and not line.startswith(("|---", "| param ")):
            line = line.strip("| ").replace(" | ", ": ")
            logger.info("%s", line.removeprefix("- ").removeprefix("## "))
    _write_plots(study, out_dir, counts["trials_complete"])


def _write_best(
    path: Path, study: optuna.Study, best: FrozenTrial, metric: str, base: FrozenTrial | None
) -> None:
    """The best trial's params under their params.yaml keys, with the value they reached, the
    data and the baseline trial's value (null: none, or it did not complete)."""
    done = base is not None and base.state == TrialState.COMPLETE
    doc = {"study": study.study_name, "trial": best.number, metric: best.value,
           "data": study.user_attrs.get(report.DATA_ATTR), "params": best.params,
           "baseline": {"trial": base.number, metric: base.value} if done else None}  # fmt: skip
    with atomic_path(path) as tmp:
        YAML().dump(doc, tmp)


def _write_plots(study: optuna.Study, out_dir: Path, n_complete: int) -> None:
    """Optimisation history, FID per epoch of every trial; parallel coordinates from 2
    complete trials, importances (titled with their trial count) from MIN_IMPORTANCE_TRIALS."""
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
    if n_complete >= report.MIN_IMPORTANCE_TRIALS:
        plots["param_importances"] = functools.partial(_importances, n_complete=n_complete)
    else:
        logger.info("param importances: %d complete trials, need %d; not plotted", n_complete,
                    report.MIN_IMPORTANCE_TRIALS)  # fmt: skip
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


def _importances(study: optuna.Study, n_complete: int) -> Any:
    from optuna.visualization import matplotlib as vis

    axes = vis.plot_param_importances(study, evaluator=report.evaluator())
    axes.set_title(f"Parameter importances (fANOVA, {n_complete} complete trials)", loc="left")
    return axes


def _csv_cell(value: Any) -> Any:
    """A trials.csv cell: a string a spreadsheet would run as a formula (=, +, -, @, a tab or a
    carriage return first: a shared storage's attribute) quoted with a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def apply_params(study: optuna.Study, params_path: Path) -> dict[str, Any]:
    """Write the best trial's params into params_path with a ruamel round-trip (comments, order
    and the other values kept) after checking the result loads; returns the params. Each knob
    written gets a comment naming the data, study and trial it was found on. The study's
    storage may be shared, so nothing in it is trusted: the trial must set exactly the knobs
    params_path's tune.space searches, each inside its bounds, and its words reach the file
    only as one escaped comment line."""
    try:
        best = study.best_trial
    except ValueError:
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet; run `gantrack tune` first"
        ) from None
    params_path = params_path.resolve()  # a symbolic link: its target is written, the link kept
    yaml = YAML()  # round-trip
    yaml.representer.add_representer(type(None), _null)
    doc = yaml.load(params_path.read_text()) or {}
    _check_trial(best, config_lib.from_dict(doc).tune)
    changes = {key: schema.set_dotted(doc, key, value) for key, value in best.params.items()}
    cfg = config_lib.from_dict(doc)  # never write a params file the pipeline would refuse
    data = study.user_attrs.get(report.DATA_ATTR) or describe_data(cfg.data)
    base = report.baseline_trial(study)
    unbeaten = ", the baseline: no trial beat it" if base and base.number == best.number else ""
    note = printable(f"found by `gantrack tune` on {str(data)[:200]} (study "
                     f"{study.study_name}, trial {best.number}{unbeaten})")  # fmt: skip
    for key in best.params:
        _comment(doc, key, note)
    text = io.StringIO()
    yaml.dump(doc, text)
    if config_lib.from_dict(YAML(typ="safe", pure=True).load(text.getvalue()) or {}) != cfg:
        raise UserError(f"study {study.study_name!r}: its words would change params.yaml beyond "
                        "the knobs it found; not applied")  # fmt: skip
    # read-only to its owner or marked read-only (even for root): replacing it would not be
    if not os.access(params_path, os.W_OK) or not params_path.stat().st_mode & 0o222:
        raise UserError(f"{params_path} is read-only; make it writable to apply the study")
    with atomic_path(params_path) as tmp:
        tmp.write_text(text.getvalue())
    for key, previous in changes.items():
        logger.info("%s: %s: %s -> %s", params_path, key, previous, best.params[key])
    return dict(best.params)


def _check_trial(best: FrozenTrial, tune: config_lib.TuneConfig) -> None:
    """The trial sets exactly the knobs tune.space searches, each value inside its bounds."""
    space = {key: getattr(tune.space, name) for name, key in SEARCH_TARGETS.items()
             if getattr(tune.space, name) is not None}  # fmt: skip
    unknown = sorted(set(best.params) - set(space))
    if unknown:
        allowed = ", ".join(space)
        raise UserError(f"{unknown[0]}: not a knob this tune.space searches (allowed: "
                        f"{allowed}); not applied")  # fmt: skip
    missing = sorted(set(space) - set(best.params))
    if missing:
        raise UserError(f"trial {best.number} does not set {missing[0]}, which tune.space "
                        "searches; not applied")  # fmt: skip
    for key, value in best.params.items():
        bounds = space[key]
        kind = int if isinstance(bounds, config_lib.IntRange) else int | float
        inside = (value in bounds if isinstance(bounds, tuple)
                  else isinstance(value, kind) and not isinstance(value, bool)
                  and bounds.low <= value <= bounds.high)  # fmt: skip
        if not inside:
            raise UserError(f"trial {best.number}: {key} {value!r} lies outside tune.space "
                            f"({bounds}); not applied")  # fmt: skip


def _null(representer: Any, _: None) -> Any:
    """null as `null`, as params.yaml spells it (ruamel's default writes nothing)."""
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


COMMENT_COLUMN = 28  # where params.yaml's comments start


def _comment(doc: Any, key: str, text: str) -> None:
    """`text` as the first line of the comment after the knob `key`: in place of an earlier
    `found by gantrack tune` line, else above the comment's explanation (kept)."""
    *sections, name = key.split(".")
    node = doc
    for section in sections:
        node = node[section]
    if not hasattr(node, "ca"):  # a section the file did not have (a plain dict)
        return
    token = (node.ca.items.get(name) or [None] * 4)[2]
    if token is None:
        node.yaml_add_eol_comment(text, name, column=COMMENT_COLUMN)
        return
    first, _, rest = token.value.partition("\n")
    if first.lstrip("# ").startswith("found by `gantrack tune`"):
        token.value = f"# {text}\n{rest}"
    else:
        token.value = f"# {text}\n{' ' * token.column}{first}\n{rest}"
