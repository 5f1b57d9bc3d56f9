"""tune.pruner -> the Optuna pruner for the tune section: the registry `config` validates
`tune.pruner` against (Optuna is imported only when a pruner is built)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    from gantrack.config import TuneConfig


def _median(t: TuneConfig) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=t.prune_startup_trials, n_warmup_steps=t.prune_warmup_epochs
    )


def _hyperband(t: TuneConfig) -> Any:
    import optuna

    return optuna.pruners.HyperbandPruner(
        min_resource=min(t.fid_every, t.epochs), max_resource=t.epochs
    )


def _none(t: TuneConfig) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[TuneConfig], Any]] = {
    "median": _median,
    "hyperband": _hyperband,
    "none": _none,
}
