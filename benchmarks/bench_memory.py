"""Peak memory (RSS) of a default training run, `gantrack train` as `dvc repro` runs it.

Usage: python benchmarks/bench_memory.py [--project .] [--params params.yaml] [--json out.json]

Copies the project's prepared data, classifier and reference statistics (`dvc repro
reference` first) and the given params.yaml into a temporary directory, runs `gantrack train`
there with its own MLflow store (the project is left untouched), samples the child's RSS every
0.5 s from /proc, and reports the exact peak (getrusage of the child), the RSS when the first
epoch's checkpoint appeared (growth after it would mean a leak per epoch) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INPUTS = ("data/prepared", "data/reference", "models/classifier")


def rss_mib(pid: int | str = "self") -> float | None:
    """Current resident set size of a process from /proc, in MiB (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="where `dvc repro reference` ran")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    project = Path(args.project)
    with tempfile.TemporaryDirectory(prefix="gantrack-mem-") as tmp:
        work = Path(tmp)
        for name in INPUTS:
            source, target = project / name, work / name
            if not source.exists():
                sys.exit(f"{source} is missing; run `dvc repro reference` in {project} first")
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        shutil.copy2(args.params, work / "params.yaml")
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        gantrack = Path(sys.executable).with_name("gantrack")
        start = time.perf_counter()
        child = subprocess.Popen([str(gantrack), "train"], cwd=work, env=env)
        sampled, after_epoch_1 = [], None
        while child.poll() is None:
            rss = rss_mib(child.pid)
            if rss is not None:
                sampled.append(rss)
                if after_epoch_1 is None and any(work.glob("checkpoints/ckpt-*.index")):
                    after_epoch_1 = rss
            time.sleep(0.5)
        seconds = time.perf_counter() - start
        if child.returncode:
            sys.exit(f"gantrack train failed with exit code {child.returncode}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    results = {
        "peak_rss_mib": round(peak, 1),
        "rss_after_epoch_1_mib": after_epoch_1 and round(after_epoch_1, 1),
        "max_sampled_rss_mib": round(max(sampled), 1),
        "wall_seconds": round(seconds, 1),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
