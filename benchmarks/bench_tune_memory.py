"""Resident memory of `gantrack tune` across trials: it must stay flat (growth < 10% after the
first trial), because each trial builds new models, optimizers and tf.functions.

Usage: python benchmarks/bench_tune_memory.py --trials 10 [--dataset fashion_mnist --limit 2000]

Runs the prepare, classifier and reference stages and then one study of --trials trials in a
temporary project (MLflow and Optuna stores included), in this process, recording the RSS
(/proc/self/status, Linux) and the live threads after each trial through an Optuna callback
(called after tuning's own, which frees what the trial built). Exits 1 when growth >= 10%.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import rss_mib  # noqa: E402

from gantrack import config  # noqa: E402
from gantrack.data import DATASETS  # noqa: E402
from gantrack.stages import classifier, prepare, reference  # noqa: E402
from gantrack.tuning import study as tuning  # noqa: E402


def small_config(dataset: str, limit: int | None, trials: int) -> config.Config:
    """Small models, 1 epoch per trial, no pruning: every trial builds and trains fully."""
    return config.from_dict({
        "data": {"dataset": dataset, "limit": limit},
        "classifier": {"epochs": 2, "filters": 8},
        "train": {"batch_size": 64, "grid_rows": 4},
        "tune": {"study_name": "memory", "n_trials": trials, "epochs": 1, "fid_samples": 500,
                 "pruner": "none"},
    })  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--dataset", default="digits", choices=tuple(DATASETS))
    parser.add_argument("--limit", type=int, default=None, help="train images (data.limit)")
    args = parser.parse_args(argv)
    cfg = small_config(args.dataset, args.limit, args.trials)
    rss: list[float] = []
    threads: list[int] = []

    def record(study, trial) -> None:
        rss.append(rss_mib())
        threads.append(threading.active_count())

    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
            os.environ.pop(name, None)
        prepare.run(cfg)
        classifier.run(cfg)
        reference.run(cfg)
        start = time.perf_counter()
        tuning.tune(cfg, callbacks=[record])
        wall = time.perf_counter() - start
    print(f"{args.dataset} (limit {args.limit}), {args.trials} trials, {wall:.0f} s")
    print("trial  RSS MiB  vs trial 0  threads")
    for number, (value, count) in enumerate(zip(rss, threads, strict=True)):
        print(f"{number:>5}  {value:7.0f}  {100 * (value / rss[0] - 1):+9.1f}%  {count:7d}")
    growth = 100 * (rss[-1] / rss[0] - 1)
    print(
        f"growth after the first trial: {growth:+.1f}% (ratio {rss[-1] / rss[0]:.3f}, "
        f"{'ok' if growth < 10 else 'TOO HIGH'})"
    )
    if growth >= 10:
        sys.exit(1)


if __name__ == "__main__":
    main()
