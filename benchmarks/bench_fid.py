"""Time `gantrack.evaluation.metrics.frechet_distance` against the textbook
scipy.linalg.sqrtm formula.

Usage: python benchmarks/bench_fid.py --dim 2048 --repeats 3

For each D: seeded random features (N = --n rows, full-rank covariances; and N = --n-low < D
rows, rank-deficient covariances), their statistics, then both FID computations alternating
(order flipped every repeat). Prints best-of-repeats times, their ratio and the largest
relative difference between the two results over the repeats (each repeat draws new features).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy
import scipy.linalg

from gantrack.evaluation.metrics import frechet_distance, statistics


def sqrtm_fid(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)), real part (pytorch-fid style)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real)


def make_stats(n: int, dim: int, seed: int) -> tuple[tuple, tuple]:
    """Statistics of two feature sets (n, dim): N(0, I) and a correlated, shifted Gaussian."""
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n, dim))
    mixing = np.eye(dim) + rng.standard_normal((dim, dim)) / (2 * np.sqrt(dim))
    fake = rng.standard_normal((n, dim)) @ mixing + 0.1
    return statistics(real), statistics(fake)


def timed(fn, *args) -> tuple[float, float]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def bench_case(n: int, dim: int, repeats: int, seed: int) -> dict:
    """Best-of-repeats times of both methods and the max relative difference of their results."""
    best = {"ours": np.inf, "sqrtm": np.inf}
    max_rel_err = 0.0
    for rep in range(repeats):
        stats_a, stats_b = make_stats(n, dim, seed + rep)
        order = ["ours", "sqrtm"] if rep % 2 == 0 else ["sqrtm", "ours"]
        values = {}
        for name in order:
            fn = frechet_distance if name == "ours" else sqrtm_fid
            seconds, values[name] = timed(fn, *stats_a, *stats_b)
            best[name] = min(best[name], seconds)
        rel = abs(values["ours"] - values["sqrtm"]) / abs(values["sqrtm"])
        max_rel_err = max(max_rel_err, rel)
    return {"ours": best["ours"], "sqrtm": best["sqrtm"], "err": max_rel_err}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, nargs="+", default=[2048], help="feature sizes D")
    parser.add_argument("--n", type=int, default=10000, help="rows for full-rank covariances")
    parser.add_argument("--n-low", type=int, default=1000, help="rows (< D) for rank-deficient")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, {os.cpu_count()} CPUs")
    header = f"{'D':>6} {'N':>6} {'cov rank':>9} {'ours s':>8} {'sqrtm s':>8} {'ratio':>7} "
    print(header + f"{'max rel err':>12}")
    for dim in args.dim:
        for n in [args.n, args.n_low] if args.n_low < dim else [args.n]:
            res = bench_case(n, dim, args.repeats, args.seed)
            rank = "full" if n > dim else f"{n - 1}"
            print(
                f"{dim:>6} {n:>6} {rank:>9} {res['ours']:>8.3f} {res['sqrtm']:>8.3f} "
                f"{res['sqrtm'] / res['ours']:>6.1f}x {res['err']:>12.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
