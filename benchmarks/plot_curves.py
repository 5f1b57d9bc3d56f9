"""The FID curves of a quality benchmark's candidates, one line each, as a PNG.

Usage: python benchmarks/plot_curves.py RESULTS.json OUT.png [--title TEXT] [--label NAME=TEXT ...]

RESULTS.json is what `bench_quality.py --json` wrote (its runs' `curve`: the FID of
--curve-samples samples after every turn); the x axis is epochs, the y axis that FID (the
results' `curve_metric`), on a log scale; --label renames a candidate in the legend (the
default is `gantrack`). Candidates without a curve are left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="FID while training")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=TEXT")
    args = parser.parse_args()
    labels = dict(item.split("=", 1) for item in args.label)
    results = json.loads(args.results.read_text())
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for name, run in results["runs"].items():
        curve = run.get("curve") or []
        if curve:
            final = f"final {run['fid_classifier']:.2f} on {results['samples']}"
            label = f"{labels.get(name, name)} ({final})"
            ax.plot([p["epochs"] for p in curve], [p["fid"] for p in curve], marker=".",
                    label=label)  # fmt: skip
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set(xlabel="epoch", ylabel=results.get("curve_metric", "FID"), title=args.title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
