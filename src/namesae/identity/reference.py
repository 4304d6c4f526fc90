"""Plain dense numpy implementations of the identity measures, one name at a time.

They follow DESIGN.md literally (dense feature x name tables, d x d covariances, the non-symmetric diffusion
operator) and are the reference the fast paths in `namesae.features` and `namesae.identity` are tested and
benchmarked against. Not for large inputs: memory grows with rows x features and names x features.
"""

from __future__ import annotations

import numpy as np


def dense_mass_count(codes: np.ndarray, name_ids: np.ndarray, n_names: int) -> tuple[np.ndarray, np.ndarray]:
    """mass [d_sae, N] = Σ_rows f_j and count [d_sae, N] = #rows with f_j > 0, per feature and name."""
    onehot = np.zeros((codes.shape[0], n_names))
    onehot[np.arange(codes.shape[0]), name_ids] = 1.0
    return codes.T.astype(np.float64) @ onehot, (codes.T > 0).astype(np.float64) @ onehot


def dense_precision_recall(mass: np.ndarray, count: np.ndarray, name_rows: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """precision [d_sae, N] = mass / row sums, recall [d_sae, N] = count / rows of each name."""
    total = mass.sum(axis=1, keepdims=True)
    precision = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    recall = count / np.maximum(name_rows[None, :], 1)
    return precision, recall


def dense_identity(precision: np.ndarray, recall: np.ndarray, tau_p: float, tau_r: float
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """dedicated [N], dedication [N] = max_j precision·recall, identity features of each name."""
    ident = (precision >= tau_p) & (recall >= tau_r)
    dedication = (precision * recall).max(axis=0) if precision.size else np.zeros(precision.shape[1])
    return ident.any(axis=0), dedication, [np.flatnonzero(ident[:, n]) for n in range(ident.shape[1])]


def dense_rank_precision_recall(codes: np.ndarray, name_ids: np.ndarray, n_names: int, tau_p: float,
                                tau_r: float, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank precision and recall [d_sae, N] from the definition: for each feature, walk its `depth` strongest
    firing rows in runs of equal activation; after each run, c rows so far, h_c of them belong to n; keep the
    prefix with the best precision h_c / c · recall h_c / rows(n) among those meeting both thresholds, else the
    best overall. A run that reaches the depth, in a feature that fires more often, is not evaluated."""
    d_sae = codes.shape[1]
    rows_of = np.bincount(name_ids, minlength=n_names)
    prec, rec = np.zeros((d_sae, n_names)), np.zeros((d_sae, n_names))
    for j in range(d_sae):
        fired = np.flatnonzero(codes[:, j] > 0)
        fired = fired[np.lexsort((fired, -codes[fired, j]))]
        values = codes[fired, j]
        best: dict[int, tuple[bool, float, int, float, float]] = {}
        c = 0
        while c < min(depth, fired.size):
            end = c + 1
            while end < fired.size and values[end] == values[c]:
                end += 1
            if end >= depth and fired.size > depth:  # a run reaching the list's end: its end is unknown
                break
            h = np.bincount(name_ids[fired[:end]], minlength=n_names)
            for n in np.unique(name_ids[fired[c:end]]):
                p, r = h[n] / end, h[n] / max(rows_of[n], 1)
                key = (p >= tau_p and r >= tau_r, p * r, int(h[n]), p, r)
                if n not in best or key[:3] >= best[n][:3]:
                    best[n] = key
            c = end
        for n, (_, _, _, p, r) in best.items():
            prec[j, n], rec[j, n] = p, r
    return prec, rec


def rigidity_reference(x: np.ndarray, epsilon: float, sigma: float, t: float = 1.0) -> dict[str, float]:
    """trace, logdet, cos_mean/min/max and dse of one name's rows x [m, d], from their definitions."""
    x = np.asarray(x, dtype=np.float64)
    m, d = x.shape
    if m < 2:
        return {k: float("nan") for k in ("trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse")}
    cov = np.cov(x, rowvar=False).reshape(d, d)
    sign, logdet = np.linalg.slogdet(cov + epsilon * np.eye(d))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairs = cos[np.triu_indices(m, k=1)]
    return {"trace": float(np.trace(cov)), "logdet": float(logdet) if sign > 0 else float("nan"),
            "cos_mean": float(pairs.mean()), "cos_min": float(pairs.min()), "cos_max": float(pairs.max()),
            "dse": dse_reference(x, sigma, t)}


def dse_reference(x: np.ndarray, sigma: float, t: float = 1.0) -> float:
    """Diffusion spectral entropy of rows x [m, d] with the plain row-normalised diffusion operator."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * sigma**2))
    p_op = k / k.sum(axis=1, keepdims=True)
    lam = np.clip(np.linalg.eigvals(p_op).real, 0.0, None) ** t
    p = lam / lam.sum()
    p = p[p > 0]
    return float(max(0.0, -(p * np.log(p)).sum()))
