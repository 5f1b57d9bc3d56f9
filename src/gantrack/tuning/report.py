"""tuning/report.md: what a study found, said plainly: the data, the trial counts, the baseline
(the params before the search) against the best trial, and the parameter importances with the
number of trials they rest on (none below MIN_IMPORTANCE_TRIALS complete trials)."""

from __future__ import annotations

import html
import re
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gantrack.runtime.errors import printable

MIN_IMPORTANCE_TRIALS = 5  # fewer complete trials give importances that are mostly noise
BASELINE_ATTR = "gantrack.baseline"  # trial user attribute (set when it is enqueued)
NO_BASELINE_ATTR = "gantrack.no_baseline"  # study user attribute: why there is none
DATA_ATTR = "gantrack.data"  # study user attribute: the data the trials trained on
EPOCHS_ATTR = "epochs"  # trial user attribute with tune.seconds: the epochs its budget gave


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's baseline trial (the current params when it was created), if it has one."""
    return next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BASELINE_ATTR)),
                None)  # fmt: skip


def evaluator() -> Any:
    """fANOVA, seeded: the same trials give the same importances."""
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def importances(study: optuna.Study, n_complete: int) -> tuple[dict[str, float] | None, str]:
    """{param: importance} from the complete trials, or None and why there are none."""
    if n_complete < MIN_IMPORTANCE_TRIALS:
        return None, (f"{n_complete} complete trial{'s' * (n_complete != 1)}; importances need "
                      f"at least {MIN_IMPORTANCE_TRIALS}")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.importance.get_param_importances(study, evaluator=evaluator()), ""
        except (RuntimeError, ValueError) as exc:  # e.g. every trial reached the same value
            return None, f"fANOVA could not rank them ({exc})"


def comparison(study: optuna.Study, metric: str) -> tuple[str, str]:
    """(the baseline's line, the best's line) of the report."""
    best, base = study.best_trial, baseline_trial(study)
    best_line = f"trial {best.number}, {metric} = {best.value:.4g}"
    if base is None:
        why = text(study.user_attrs.get(NO_BASELINE_ATTR, "the study was created without one"))
        return f"none ({why})", best_line
    base_line = f"trial {base.number} (the params before the search)"
    if base.state != TrialState.COMPLETE:
        return f"{base_line}, {base.state.name.lower()}: nothing to compare with", best_line
    base_line += f", {metric} = {base.value:.4g}"
    if best.number == base.number:
        return base_line, f"{best_line}: the baseline itself; no trial beat it"
    change = (base.value - best.value) / base.value if base.value else 0.0
    return base_line, f"{best_line}, {change:.1%} lower than the baseline's {base.value:.4g}"


def markdown(study: optuna.Study, metric: str, counts: dict[str, int]) -> str:
    """The report; `counts`: trials_complete, trials_pruned, trials_fail."""
    n_complete = counts["trials_complete"]
    lines = [
        f"# Study {study.study_name}",
        "",
        f"- Objective: {metric} (lower is better)",
        f"- Data: {text(study.user_attrs.get(DATA_ATTR, 'not recorded'))}",
        f"- Trials: {n_complete} complete, {counts['trials_pruned']} pruned, "
        f"{counts['trials_fail']} failed",
    ]
    if not n_complete:
        return "\n".join([*lines, "", "No complete trial yet: no best params, no importances.", ""])
    base_line, best_line = comparison(study, metric)
    lines += [f"- Baseline: {base_line}", f"- Best: {best_line}"]
    if (epochs := study.best_trial.user_attrs.get(EPOCHS_ATTR)) is not None:
        lines.append(f"- Equal time: the best trial trained {text(epochs)} epochs, what its speed "
                     "fitted in tune.seconds")  # fmt: skip
    lines += ["", "## Best params", ""]
    lines += [f"- {text(key)}: {text(repr(value))}" for key, value in study.best_params.items()]
    ranked, why = importances(study, n_complete)
    lines += ["", "## Parameter importances", ""]
    if ranked is None:
        lines.append(f"None: {text(why)}.")
    else:
        rows = (f"| {text(k)} | {v:.3f} |" for k, v in ranked.items())
        lines += [f"fANOVA on {n_complete} complete trials:", "", "| param | importance |",
                  "|---|---|", *rows]  # fmt: skip
    return "\n".join([*lines, ""])


# Markdown's inline markup (links, images, emphasis, code, tables, strikethrough) and its escape;
# an underscore inside a word (train.lr_g) starts no emphasis, and stays as it is
_MARKUP = re.compile(r"[\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def text(value: object, limit: int = 200) -> str:
    """A study's words (its storage may be shared: another user wrote them) as report text: one
    line, unprintable characters escaped, their first `limit` characters kept, HTML's <, > and
    & as entities, Markdown's backslash and inline markup characters backslash-escaped (their
    own backslash too, else it escapes the escape before a live bracket): no terminal escape,
    heading, markup, link, image or table cell of theirs reaches the report, which shows their
    words as they are."""
    words = printable(str(value))
    escaped = _MARKUP.sub(lambda markup: "\\" + markup[0], words[:limit])  # cut, then escaped
    line = html.escape(escaped, quote=False)
    return line if len(words) <= limit else f"{line}..."
