"""Sample-quality metrics for generative models as pure NumPy functions (TF-GAN style).

Inputs are NumPy arrays (any real dtype; computed in float64), results are Python floats.
Feature arrays are (N, D): N samples of D features (e.g. Inception pool3, D = 2048).

- `frechet_distance`, `statistics`, `fid_from_features`: FID (Heusel et al. 2017).
- `class_fids`: FID within each class, whose mean is intra-FID (Miyato & Koyama 2018).
- `kid`: Kernel Inception Distance (Binkowski et al. 2018).
- `inception_score`: Inception Score (Salimans et al. 2016).
- `precision_recall`: improved precision and recall (Kynkaanniemi et al. 2019).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg import lapack

_LOG_EPS = 1e-12  # keeps log(0) finite in the Inception Score; p * log(p + eps) -> 0 at p = 0
_BATCH_ELEMENTS = 1 << 22  # distance-matrix block size for precision/recall (32 MiB of float64)


def _finite(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    """`x` as a finite float64 array with `ndim` dimensions, else ValueError."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _features(feats: ArrayLike, name: str, min_rows: int = 1) -> np.ndarray:
    """`feats` as a finite float64 (N, D) array with N >= min_rows, else ValueError."""
    arr = _finite(feats, name, 2)
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least {min_rows} rows and 1 column, got {arr.shape}")
    return arr


def _same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} have different feature sizes: {a.shape[1]} vs {b.shape[1]}")


def _psd_factor(sigma: np.ndarray) -> tuple[np.ndarray, bool]:
    """F (D, r) with F F^T = sigma up to round-off, and whether sigma is positive definite.

    Cholesky (LAPACK potrf) when sigma is numerically positive definite (F lower triangular,
    r = D). Otherwise pivoted Cholesky (pstrf, Higham 2009): P^T sigma P = L L^T with L (D, r),
    r the numerical rank at LAPACK's tolerance D * eps * max(diag(sigma)); F = P L.
    """
    chol, info = lapack.dpotrf(sigma, lower=1, clean=1)
    if info == 0:
        return chol, True
    piv_chol, piv, rank, _ = lapack.dpstrf(sigma, lower=1)
    factor = np.zeros((sigma.shape[0], rank))
    factor[piv - 1] = np.tril(piv_chol[:, :rank])
    return factor, False


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^{1/2}) for symmetric PSD S1, S2 (D, D), exactly (no sqrtm, no subsets).

    With S1 = F1 F1^T, S2 = F2 F2^T (`_psd_factor`), the nonzero eigenvalues of S1 S2 are those
    of the symmetric PSD M = F1^T S2 F1 = H^T H, H = F2^T F1, so the trace is sum_i sqrt(eig_i(M))
    (the nuclear norm of H). Fast path, S1 positive definite: M = L1^T S2 L1 by LAPACK sygst
    (itype 2), kept if M is numerically positive definite. Otherwise (a singular S1 or S2)
    M = the smaller Gram matrix of H, min(r1, r2) square, so that structural zero eigenvalues,
    whose round-off the sqrt would amplify, never enter M. Round-off negatives are clipped to 0.
    """
    f1, full1 = _psd_factor(sigma1)
    if full1:
        gram, _ = lapack.dsygst(sigma2, f1, itype=2, lower=1)
        eig = np.linalg.eigvalsh(gram, UPLO="L")
        if eig[0] > eig[-1] * eig.shape[0] * np.finfo(np.float64).eps:
            return float(np.sqrt(eig).sum())
    h = _psd_factor(sigma2)[0].T @ f1
    eig = np.linalg.eigvalsh(h.T @ h if h.shape[1] <= h.shape[0] else h @ h.T)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Frechet distance between Gaussians N(mu1, S1) and N(mu2, S2) (Heusel et al. 2017).

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).

    mu1, mu2: float arrays (D,); sigma1, sigma2: symmetric PSD float arrays (D, D) (symmetrised
    as (S + S^T) / 2). Rank-deficient covariances (fewer samples than features) are fine. The
    square-root trace is exact (see `_trace_sqrt_product`); over 10x faster than
    `scipy.linalg.sqrtm(S1 @ S2)` at D = 2048 (benchmarks/bench_fid.py), real, clipped at 0.
    Raises ValueError on shape mismatches or non-finite input.
    """
    m1, m2 = _finite(mu1, "mu1", 1), _finite(mu2, "mu2", 1)
    s1, s2 = _finite(sigma1, "sigma1", 2), _finite(sigma2, "sigma2", 2)
    dim = m1.shape[0]
    if dim < 1 or m2.shape != (dim,) or s1.shape != (dim, dim) or s2.shape != (dim, dim):
        got = f"mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}"
        raise ValueError(f"shape mismatch: got {got}; expected (D,), (D, D), (D,), (D, D), D >= 1")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2)
    return max(float(value), 0.0)


def statistics(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), sum (x - mu)(x - mu)^T / (N - 1), in float64.

    feats: float array (N, D), N >= 2.
    """
    x = _features(feats, "feats", min_rows=2)
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def fid_from_features(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """FID between two feature sets: `frechet_distance(*statistics(a), *statistics(b))`.

    feats_a: float array (Na, D); feats_b: float array (Nb, D); Na, Nb >= 2.
    When Na, Nb < D, uses the exact low-rank identity instead of D x D matrices: with centred
    Xa, Xb, S = X^T X / (N - 1), tr((Sa Sb)^{1/2}) = ||Xa Xb^T||_* / sqrt((Na - 1)(Nb - 1))
    (nuclear norm of the (Na, Nb) cross-Gram matrix, by SVD) and tr(S) = ||X||_F^2 / (N - 1).
    """
    a = _features(feats_a, "feats_a", min_rows=2)
    b = _features(feats_b, "feats_b", min_rows=2)
    _same_dim(a, b, "feats_a and feats_b")
    (na, dim), nb = a.shape, b.shape[0]
    if na >= dim or nb >= dim:
        return frechet_distance(*statistics(a), *statistics(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    xa, xb = a - mu_a, b - mu_b
    cross = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt((na - 1) * (nb - 1))
    diff = mu_a - mu_b
    traces = np.einsum("ij,ij->", xa, xa) / (na - 1) + np.einsum("ij,ij->", xb, xb) / (nb - 1)
    return max(float(diff @ diff + traces - 2.0 * cross), 0.0)


ClassFids = tuple[dict[int, tuple[float, int, int]], list[int]]  # class_fids: scored, skipped


def class_fids(real: ArrayLike, real_labels: ArrayLike, fake: ArrayLike, fake_labels: ArrayLike,
               min_samples: int = 2) -> ClassFids:  # fmt: skip
    """FID between the fake and the real features (N, D) of each class, labels (N,) int.

    Returns ({class: (fid, n_fake, n_real)}, [classes skipped]): a class with fewer than
    min_samples (>= 2) samples in either set is skipped, not scored. The mean of the scored
    classes' FIDs is intra-FID (Miyato & Koyama 2018)."""
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2 (a covariance needs two), got {min_samples}")
    r, f = _features(real, "real", min_rows=1), _features(fake, "fake", min_rows=1)
    _same_dim(r, f, "real and fake")
    rl, fl = np.asarray(real_labels), np.asarray(fake_labels)
    if rl.shape != (len(r),) or fl.shape != (len(f),):
        raise ValueError(f"labels must be (N,) beside their features, got {rl.shape}, {fl.shape}")
    scored, skipped = {}, []
    for c in np.union1d(rl, fl).tolist():
        real_c, fake_c = r[rl == c], f[fl == c]
        if min(len(real_c), len(fake_c)) < min_samples:
            skipped.append(c)
            continue
        scored[c] = (fid_from_features(fake_c, real_c), len(fake_c), len(real_c))
    return scored, skipped


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(u, v) = (u.v / D + 1)^3; x, y: float arrays (m, D), m >= 2.

    MMD^2 = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
            - 2 sum_{i,j} k(x_i, y_j) / m^2.
    """
    m, dim = x.shape
    k_xx = (x @ x.T / dim + 1.0) ** 3
    k_yy = (y @ y.T / dim + 1.0) ** 3
    k_xy = (x @ y.T / dim + 1.0) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"): (mean, std).

    Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 (see
    `_mmd2_unbiased`), on `n_subsets` pairs of subsets of size m = min(subset_size, Na, Nb),
    each drawn without replacement with np.random.default_rng(seed); mean and std over subsets.
    feats_a: float array (Na, D); feats_b: float array (Nb, D).
    """
    a = _features(feats_a, "feats_a", min_rows=2)
    b = _features(feats_b, "feats_b", min_rows=2)
    _same_dim(a, b, "feats_a and feats_b")
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets}, {subset_size}"
        )
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = _mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())


def inception_score(probs: ArrayLike, *, n_splits: int = 10) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): (mean, std) over splits.

    IS = exp(E_x KL(p(y|x) || p(y))) per split, p(y) = mean of p(y|x) over the split, and
    KL = sum_y p(y|x) (log(p(y|x) + eps) - log(p(y) + eps)), eps = 1e-12 (only against log 0).
    probs: float array (N, K), class probabilities p(y|x) per row (rows sum to 1 within 1e-3),
    cut into `n_splits` contiguous splits, 1 <= n_splits <= N.
    """
    p = _features(probs, "probs")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, rtol=0.0, atol=1e-3):
        raise ValueError("probs rows must be non-negative and sum to 1 (within 1e-3)")
    if not 1 <= n_splits <= p.shape[0]:
        raise ValueError(f"n_splits must be in [1, N={p.shape[0]}], got {n_splits}")
    scores = np.empty(n_splits)
    for i, part in enumerate(np.array_split(p, n_splits)):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + _LOG_EPS) - np.log(marginal + _LOG_EPS))).sum(axis=1)
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std())


def _blocks(n_rows: int, n_cols: int) -> Iterator[slice]:
    """Row slices covering n_rows, each with about _BATCH_ELEMENTS / n_cols rows."""
    step = max(1, _BATCH_ELEMENTS // max(n_cols, 1))
    return (slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step))


def _sq_dists(x: np.ndarray, y: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, m) from x (n, D) to y (m, D); x_sq, y_sq: row norms^2."""
    return np.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T), 0.0)


def _kth_nn_sq_radii(x: np.ndarray, x_sq: np.ndarray, k: int) -> np.ndarray:
    """Squared distance (N,) from each row of x (N, D) to its k-th nearest other row."""
    radii = np.empty(x.shape[0])
    for rows in _blocks(x.shape[0], x.shape[0]):
        d2 = _sq_dists(x[rows], x, x_sq[rows], x_sq)
        d2[np.arange(d2.shape[0]), np.arange(rows.start, rows.stop)] = np.inf  # not itself
        radii[rows] = np.partition(d2, k - 1, axis=1)[:, k - 1]
    return radii


def _coverage(points: np.ndarray, centres: np.ndarray, k: int) -> float:
    """Fraction of points (n, D) inside the k-NN manifold of centres (m, D)."""
    p_sq, c_sq = np.einsum("ij,ij->i", points, points), np.einsum("ij,ij->i", centres, centres)
    radii = _kth_nn_sq_radii(centres, c_sq, k)
    inside = np.empty(points.shape[0], dtype=bool)
    for rows in _blocks(points.shape[0], centres.shape[0]):
        d2 = _sq_dists(points[rows], centres, p_sq[rows], c_sq)
        inside[rows] = (d2 <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(
    feats_real: ArrayLike, feats_fake: ArrayLike, *, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): (precision, recall).

    The manifold of a set is the union of balls B(x, ||x - NN_k(x)||) over its points, NN_k(x)
    the k-th nearest neighbour of x in the same set (x excluded). precision = fraction of fake
    points inside the real manifold; recall = fraction of real points inside the fake manifold.
    feats_real: float array (Nr, D); feats_fake: float array (Nf, D); 1 <= k < Nr, Nf.
    Distances are computed in row blocks of about 2^22 entries (32 MiB), never all at once.
    """
    real = _features(feats_real, "feats_real")
    fake = _features(feats_fake, "feats_fake")
    _same_dim(real, fake, "feats_real and feats_fake")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        sizes = f"Nr={real.shape[0]}, Nf={fake.shape[0]}"
        raise ValueError(f"k must be in [1, min(Nr, Nf) - 1], got k={k} with {sizes}")
    return _coverage(fake, real, k), _coverage(real, fake, k)
