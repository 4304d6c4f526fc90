"""The fit: a target as a sparse non-negative combination of term offsets (non-negative OMP), one or many targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from namesae.errors import NamesaeError


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors [d] (0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def centered_cosine(a: np.ndarray, b: np.ndarray, reference: np.ndarray) -> float:
    """Cosine of a and b [d] with their components along the reference removed."""
    u = reference / np.linalg.norm(reference)
    return cosine(a - (a @ u) * u, b - (b @ u) * u)


@dataclass(frozen=True)
class FitStep:
    """The fit after n atoms: the support (in selection order), its NNLS weights and the fit's cosine."""

    indices: list[int]  # atom ids with a positive weight, in the greedy order
    weights: list[float]  # their weights
    reference_weight: float  # w_0
    cosine: float  # cosine of the combination to the target
    fit: np.ndarray  # [d] the combination


@dataclass(frozen=True)
class SparseFit:
    """A sparse non-negative fit: one step per added atom; the last step is the full fit."""

    steps: list[FitStep]

    @property
    def final(self) -> FitStep:
        """The fit with every chosen atom."""
        return self.steps[-1]


def _nnls(columns: np.ndarray, target: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    w, _ = nnls(columns.T.astype(np.float64), target.astype(np.float64), maxiter=50 * columns.shape[0] + 100)
    return w


def sparse_nonnegative_fit(target: np.ndarray, offsets: np.ndarray, reference: np.ndarray, k: int,
                           kinds: Sequence[str] | None = None, max_per_kind: Mapping[str, int] | None = None,
                           tol: float = 1e-6) -> SparseFit:
    """Non-negative OMP: target [d] ~ w_0 reference + Σ w_i offsets[i] [V, d], w >= 0, at most k atoms."""
    if k < 1:
        raise NamesaeError(f"k must be >= 1, got {k}")
    t = np.asarray(target, dtype=np.float64)
    a = np.asarray(offsets, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != t.shape[0] or r.shape != t.shape:
        raise NamesaeError(f"shapes disagree: target {t.shape}, atoms {a.shape}, reference {r.shape}")
    norms = np.linalg.norm(a, axis=1)
    unit = a / np.where(norms > 0, norms, 1.0)[:, None]
    allowed = norms > 0
    kinds_arr = np.asarray(kinds) if kinds is not None else None
    limits = dict(max_per_kind or {})
    chosen: list[int] = []
    w = _nnls(r[None], t)
    fit = w[0] * r
    steps = [FitStep([], [], float(w[0]), cosine(fit, t), fit)]
    while len(chosen) < k:
        scores = np.where(allowed, unit @ (t - fit), -np.inf)
        j = int(np.argmax(scores))
        if not scores[j] > tol:
            break
        chosen.append(j)
        allowed[j] = False
        if kinds_arr is not None:
            kind = kinds_arr[j]
            used = sum(kinds_arr[i] == kind for i in chosen)
            if kind in limits and used >= limits[kind]:
                allowed &= kinds_arr != kind
            if kind == "full":  # a full name takes the name slot: no separate first name or surname
                allowed &= ~np.isin(kinds_arr, ("first", "last"))
            elif kind in ("first", "last"):
                allowed &= kinds_arr != "full"
        cols = np.concatenate([r[None], a[chosen]])
        w = _nnls(cols, t)
        fit = w @ cols
        keep = [(i, float(wi)) for i, wi in zip(chosen, w[1:]) if wi > 0]
        steps.append(FitStep([i for i, _ in keep], [wi for _, wi in keep], float(w[0]), cosine(fit, t), fit))
    return SparseFit(steps)


_F32_UNIT = 2.0**-24  # unit roundoff of float32


def sparse_nonnegative_fit_batch(targets: np.ndarray, offsets: np.ndarray, reference: np.ndarray, k: int,
                                 kinds: Sequence[str] | None = None, max_per_kind: Mapping[str, int] | None = None,
                                 tol: float = 1e-6, batch: int = 512) -> list[SparseFit]:
    """`sparse_nonnegative_fit` for many targets [n, d] at once: one [batch, d] x [d, V] product per step.

    Same fits as the per-target function (same atoms chosen, same NNLS weights): the atoms are normalised once,
    each step correlates a batch of residuals with every atom in float32, and every atom whose float32 score is
    within the float32 error bound of the row's best is re-scored in float64 before the argmax, so the float64
    choice of the per-target fit is kept. Memory: the [batch, V] float32 scores (512 x 50,000: 100 MB), plus a
    [batch, V] mask when kinds are given.
    """
    if k < 1:
        raise NamesaeError(f"k must be >= 1, got {k}")
    if batch < 1:
        raise NamesaeError(f"batch must be >= 1, got {batch}")
    t_all = np.asarray(targets, dtype=np.float64)
    a = np.asarray(offsets)
    r = np.asarray(reference, dtype=np.float64)
    if t_all.ndim != 2 or a.ndim != 2 or a.shape[1] != t_all.shape[1] or r.shape != (t_all.shape[1],):
        raise NamesaeError(f"shapes disagree: targets {t_all.shape} (expected [n, d]), atoms {a.shape}, "
                           f"reference {r.shape}")
    kinds_arr = np.asarray(kinds) if kinds is not None else None
    if kinds_arr is not None and kinds_arr.shape != (len(a),):
        raise NamesaeError(f"{len(kinds_arr)} kinds for {len(a)} atoms")
    norms = np.empty(len(a))
    unit32 = np.empty(a.shape, dtype=np.float32)
    for start in range(0, len(a), 4096):  # in row blocks: no [V, d] float64 copy
        block = a[start:start + 4096].astype(np.float64)
        norms[start:start + 4096] = nb = np.linalg.norm(block, axis=1)
        unit32[start:start + 4096] = block / np.where(nb > 0, nb, 1.0)[:, None]
    d = a.shape[1]
    # |float32 score - float64 score| <= slack * |residual| (dot product of d terms, rounded inputs), with x2 margin
    slack = 2.0 * (d + 2) * _F32_UNIT / (1.0 - (d + 2) * _F32_UNIT)
    out: list[SparseFit] = []
    for start in range(0, len(t_all), batch):
        out += _fit_chunk(t_all[start:start + batch], a, r, norms, unit32, k, kinds_arr, dict(max_per_kind or {}),
                          tol, slack)
    return out


def _fit_chunk(t_all: np.ndarray, a: np.ndarray, r: np.ndarray, norms: np.ndarray, unit32: np.ndarray, k: int,
               kinds_arr: np.ndarray | None, limits: dict[str, int], tol: float, slack: float) -> list[SparseFit]:
    m = len(t_all)
    usable = norms > 0
    dead = np.flatnonzero(~usable)
    # Kind rules need a mask per target; without kinds the banned atoms are the chosen ones (and zero atoms).
    allowed = np.repeat(usable[None], m, axis=0) if kinds_arr is not None else None  # [m, V]
    masks = {kd: kinds_arr != kd for kd in np.unique(kinds_arr)} if kinds_arr is not None else {}
    no_parts = ~np.isin(kinds_arr, ("first", "last")) if kinds_arr is not None else None
    chosen: list[list[int]] = [[] for _ in range(m)]
    fits = np.empty_like(t_all)
    steps: list[list[FitStep]] = []
    for i, t in enumerate(t_all):
        w = _nnls(r[None], t)
        fits[i] = w[0] * r
        steps.append([FitStep([], [], float(w[0]), cosine(fits[i], t), fits[i].copy())])
    live = np.arange(m)
    for _ in range(k):
        if live.size == 0:
            break
        lrows = np.arange(len(live))
        resid = t_all[live] - fits[live]  # [l, d]
        s32 = resid.astype(np.float32) @ unit32.T  # [l, V]
        if allowed is not None:
            np.copyto(s32, -np.inf, where=~allowed[live])
        else:
            lens = [len(chosen[i]) for i in live]
            s32[np.repeat(lrows, lens), [c for i in live for c in chosen[i]]] = -np.inf
            s32[:, dead] = -np.inf
        top_j = s32.argmax(axis=1)
        top = s32[lrows, top_j].copy()
        thresh = np.where(np.isfinite(top), top - 2.0 * slack * np.linalg.norm(resid, axis=1), np.inf)
        thresh = thresh.astype(np.float32)
        s32[lrows, top_j] = -np.inf
        tied = np.flatnonzero(s32.max(axis=1) >= thresh)  # rows with a second near-best atom (rare)
        rows, cols = lrows, top_j
        if tied.size:
            s32[tied, top_j[tied]] = top[tied]
            r_t, c_t = np.nonzero(s32[tied] >= thresh[tied, None])
            rows = np.concatenate([np.delete(lrows, tied), tied[r_t]])
            cols = np.concatenate([np.delete(top_j, tied), c_t])
        del s32
        # Re-score the near-best atoms in float64 (as the per-target fit scores them) and take the best.
        unit_c = a[cols].astype(np.float64) / np.where(norms[cols] > 0, norms[cols], 1.0)[:, None]
        exact = np.where(np.isfinite(top[rows]), np.einsum("ij,ij->i", unit_c, resid[rows]), -np.inf)
        order = np.lexsort((cols, -exact, rows))  # per row: best float64 score first, lowest index on ties
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        best_j, best_s = np.empty(len(live), dtype=np.int64), np.empty(len(live))
        best_j[rows[first]], best_s[rows[first]] = cols[first], exact[first]
        still = []
        for i, j, score in zip(live.tolist(), best_j.tolist(), best_s.tolist()):
            if not score > tol:
                continue  # no atom correlates positively: this target is done
            chosen[i].append(j)
            if allowed is not None:
                allowed[i, j] = False
                kind = kinds_arr[j]
                used = sum(kinds_arr[c] == kind for c in chosen[i])
                if kind in limits and used >= limits[kind]:
                    allowed[i] &= masks[kind]
                if kind == "full":  # a full name takes the name slot: no separate first name or surname
                    allowed[i] &= no_parts
                elif kind in ("first", "last") and "full" in masks:
                    allowed[i] &= masks["full"]
            cols_i = np.concatenate([r[None], a[chosen[i]].astype(np.float64)])
            w = _nnls(cols_i, t_all[i])
            fits[i] = fit = w @ cols_i
            keep = [(c, float(wc)) for c, wc in zip(chosen[i], w[1:]) if wc > 0]
            steps[i].append(FitStep([c for c, _ in keep], [wc for _, wc in keep], float(w[0]),
                                    cosine(fit, t_all[i]), fit))
            if len(chosen[i]) < k:
                still.append(i)
        live = np.asarray(still, dtype=np.int64)
    return [SparseFit(s) for s in steps]
