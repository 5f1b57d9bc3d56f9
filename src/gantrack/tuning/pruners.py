"""tune.pruner -> the Optuna pruner for the tune section: the registry `config` validates
`tune.pruner` against (Optuna is imported only when a pruner is built).

A trial reports its FIDs at the epoch, or with tune.seconds at the second of its budget each
stands for (tuning.budget), so the pruners' steps and resources count in that unit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    from gantrack.config import TuneConfig


def _median(t: TuneConfig) -> Any:
    import optuna

    warmup = t.prune_warmup_seconds if t.seconds else t.prune_warmup_epochs
    return optuna.pruners.MedianPruner(n_startup_trials=t.prune_startup_trials,
                                       n_warmup_steps=warmup)  # fmt: skip


def _hyperband(t: TuneConfig) -> Any:
    import optuna

    if t.seconds:
        every, budget = t.fid_every_seconds, t.seconds
    else:
        every, budget = t.fid_every, t.epochs
    return optuna.pruners.HyperbandPruner(min_resource=min(every, budget), max_resource=budget)


def _none(t: TuneConfig) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[TuneConfig], Any]] = {
    "median": _median,
    "hyperband": _hyperband,
    "none": _none,
}
