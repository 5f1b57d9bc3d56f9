"""What a command costs before it computes, side by side on this CPU: a `gantrack sample` from a
.keras file with and without the lean Keras import (compat.LeanKerasImport), and one model load
through keras_files' checks against Keras' own safe-mode load.

Usage: python benchmarks/bench_start.py [--params params.yaml] [--rounds 5] [--json out.json]

Builds the default generator (params.yaml, class-conditional on 10 classes at Fashion-MNIST's
shape) into a temporary folder. The two CLI variants take turns for --rounds rounds (the order
swapped every round), each a fresh process; the medians of wall-clock and CPU time (user +
system) are reported. The loads take turns in one process (Keras imported), --rounds * 4 each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The CLI as `gantrack` runs it, the lean import switched off: the reference.
FULL_IMPORT = (
    "import sys; from gantrack.runtime import compat; compat.lean_keras_import = lambda: None;"
    "from gantrack.cli import main; sys.argv[0] = 'gantrack'; sys.exit(main())"
)


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of cmd, a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _generator(params: Path, folder: Path) -> Path:
    import keras
    from ruamel.yaml import YAML

    from gantrack import config
    from gantrack.gan import training

    cfg = config.from_dict(YAML(typ="safe", pure=True).load(params.read_text()))
    keras.utils.set_random_seed(0)
    gan = training.build_gan(cfg.model, cfg.train, (28, 28, 1), 0, num_classes=10,
                             n_images=60000)  # fmt: skip
    path = folder / "generator.keras"
    gan.generator.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    gantrack = str(Path(sys.executable).with_name("gantrack"))
    with tempfile.TemporaryDirectory(prefix="gantrack-bench-") as tmp:
        folder = Path(tmp)
        model = _generator(Path(args.params).resolve(), folder)
        (folder / "params.yaml").write_text("data:\n  dataset: fashion_mnist\n")
        sample = ["sample", "--model", str(model), "-n", "4", "--out", "out.npz"]
        variants = {"lean": [gantrack, *sample],
                    "full": [sys.executable, "-c", FULL_IMPORT, *sample]}  # fmt: skip
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name in list(variants)[:: 1 if round_ % 2 == 0 else -1]:
                times[name].append(_timed(variants[name], folder))
                print(f"round {round_ + 1} {name}: {times[name][-1][0]:.2f} s", flush=True)
        loads = _loads(model, args.rounds * 4)
    cli = {name: {"wall_s": round(statistics.median(t[0] for t in runs), 2),
                  "cpu_s": round(statistics.median(t[1] for t in runs), 2)}
           for name, runs in times.items()}  # fmt: skip
    results = {
        "cpu": _cpu(),
        "gantrack_sample_from_a_file": cli,
        "wall_ratio_lean_to_full": round(cli["lean"]["wall_s"] / cli["full"]["wall_s"], 2),
        "load_ms": loads,
        "load_ratio_checked_to_keras": round(loads["keras_files"] / loads["keras_safe_mode"], 2),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _loads(model: Path, n: int) -> dict[str, float]:
    """Median ms of one load of model: keras_files.load (checks, private copy, safe mode)
    against keras.saving.load_model in safe mode, in turns."""
    import keras

    from gantrack.io import keras_files

    variants = {
        "keras_files": lambda: keras_files.load(model, "generator"),
        "keras_safe_mode": lambda: keras.saving.load_model(model, safe_mode=True),
    }
    for load in variants.values():
        load()  # the first load of each pays for imports and tracing
    ms: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(n):
        for name in list(variants)[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            variants[name]()
            ms[name].append((time.perf_counter() - start) * 1000)
            keras.backend.clear_session()
    return {name: round(statistics.median(v), 1) for name, v in ms.items()}


def _cpu() -> str:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    return f"{model}, {os.cpu_count()} CPUs"


if __name__ == "__main__":
    main()
