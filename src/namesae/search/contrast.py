"""Contrast: every feature's mean difference and Cohen's d between two row sets, with bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.search.target import Codes, as_numpy


@dataclass(frozen=True)
class ContrastRow:
    """One feature's difference between row sets A and B."""

    feature: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    cohen_d: float  # diff / pooled standard deviation
    ci_low: float | None  # bootstrap CI of d (top features only)
    ci_high: float | None
    active_a: float  # fraction of A's rows where the feature fires
    active_b: float


@dataclass(frozen=True)
class Contrast:
    """Features ranked by |Cohen's d| between two row sets."""

    rows: list[ContrastRow]
    n_a: int
    n_b: int
    n_boot: int
    ci: float
    label_a: str = "A"
    label_b: str = "B"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


SD_FLOOR = 1e-6  # pooled standard deviations below this count as this (a feature constant in both sets)


@dataclass
class Moments:
    """Running per-feature sums over rows of codes: n, Σf, Σf², #(f > 0)."""

    n: int
    total: np.ndarray  # [F]
    squares: np.ndarray  # [F]
    active: np.ndarray  # [F]

    @classmethod
    def zeros(cls, d_sae: int) -> Moments:
        """Empty sums over d_sae features."""
        return cls(0, np.zeros(d_sae), np.zeros(d_sae), np.zeros(d_sae))

    def add(self, codes: np.ndarray) -> None:
        """Accumulate a block of codes [rows, F]."""
        c = np.asarray(codes, dtype=np.float64)
        self.n += len(c)
        self.total += c.sum(0)
        self.squares += (c * c).sum(0)
        self.active += (c > 0).sum(0)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased variance per feature."""
        mean = self.total / self.n
        var = np.maximum(self.squares - self.n * mean**2, 0.0) / max(self.n - 1, 1)
        return mean, var


def cohen_d(mean_a: np.ndarray, var_a: np.ndarray, n_a: int, mean_b: np.ndarray, var_b: np.ndarray, n_b: int
            ) -> np.ndarray:
    """Cohen's d per feature: (mean_a - mean_b) / pooled sd (floored at SD_FLOOR)."""
    pooled = np.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / max(n_a + n_b - 2, 1))
    return (mean_a - mean_b) / np.maximum(pooled, SD_FLOOR)


def bootstrap_d(x_a: np.ndarray, x_b: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                chunk: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI [k] of Cohen's d for codes x_a [n_a, k], x_b [n_b, k] (rows resampled per set)."""
    rng = np.random.default_rng(seed)
    n_a, n_b = len(x_a), len(x_b)
    ds = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        stats = []
        for x, n in ((x_a, n_a), (x_b, n_b)):
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)  # [b, n]
            mean = counts @ x / n
            var = np.maximum(counts @ (x * x) / n - mean**2, 0.0) * n / max(n - 1, 1)
            stats.append((mean, var))
        (ma, va), (mb, vb) = stats
        ds.append(cohen_d(ma, va, n_a, mb, vb, n_b))
    d = np.concatenate(ds)  # [n_boot, k]
    alpha = (1.0 - ci) / 2
    return np.quantile(d, alpha, axis=0), np.quantile(d, 1 - alpha, axis=0)


def _contrast_rows(ma: Moments, mb: Moments, top: int, boot: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
                   | None) -> list[ContrastRow]:
    mean_a, var_a = ma.mean_var()
    mean_b, var_b = mb.mean_var()
    d = cohen_d(mean_a, var_a, ma.n, mean_b, var_b, mb.n)
    order = np.lexsort((-np.abs(mean_a - mean_b), -np.abs(d)))[:top]
    lo, hi = boot(order) if boot is not None else (None, None)
    return [ContrastRow(int(j), float(mean_a[j]), float(mean_b[j]), float(mean_a[j] - mean_b[j]), float(d[j]),
                        None if lo is None else float(lo[i]), None if hi is None else float(hi[i]),
                        float(ma.active[j] / ma.n), float(mb.active[j] / mb.n))
            for i, j in enumerate(order)]


def _check_sets(n_a: int, n_b: int) -> None:
    if n_a < 2 or n_b < 2:
        raise NamesaeError(f"contrast needs at least 2 rows in each set, got {n_a} (A) and {n_b} (B); "
                           f"check the names / kinds / prompt filters")


def contrast_codes(codes_a: np.ndarray, codes_b: np.ndarray, top: int = 50, n_boot: int = 1000, ci: float = 0.95,
                   seed: int = 0) -> Contrast:
    """Features ranked by |Cohen's d| between codes_a [n_a, F] and codes_b [n_b, F]; bootstrap CI for the top."""
    a, b = as_numpy(codes_a, np.float64), as_numpy(codes_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise NamesaeError(f"codes of the two sets must be [rows, features] with equal features: {a.shape}, {b.shape}")
    _check_sets(len(a), len(b))
    ma, mb = Moments.zeros(a.shape[1]), Moments.zeros(b.shape[1])
    ma.add(a)
    mb.add(b)
    boot = (lambda cols: bootstrap_d(a[:, cols], b[:, cols], n_boot, ci, seed)) if n_boot > 0 else None
    return Contrast(_contrast_rows(ma, mb, top, boot), len(a), len(b), n_boot, ci)


def contrast_store(codes: Codes, store: Any, rows_a: np.ndarray, rows_b: np.ndarray, d_sae: int, top: int = 50,
                   n_boot: int = 1000, ci: float = 0.95, seed: int = 0, batch: int = 4096,
                   label_a: str = "A", label_b: str = "B") -> Contrast:
    """Contrast two row sets of a store, streamed: moments of every feature, then the top features' bootstrap."""
    rows_a, rows_b = np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)
    _check_sets(len(rows_a), len(rows_b))
    notes = []
    overlap = np.intersect1d(rows_a, rows_b).size
    if overlap:
        notes.append(f"{overlap} rows are in both sets")
    moments = []
    for rows in (rows_a, rows_b):
        m = Moments.zeros(d_sae)
        for start in range(0, len(rows), batch):
            m.add(as_numpy(codes(store.read_rows(rows[start:start + batch]))))
        moments.append(m)

    def boot(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for rows in (rows_a, rows_b):  # second pass: only the top features' codes are kept
            parts.append(np.concatenate([as_numpy(codes(store.read_rows(rows[s:s + batch])))[:, cols]
                                         for s in range(0, len(rows), batch)]).astype(np.float64))
        return bootstrap_d(parts[0], parts[1], n_boot, ci, seed)

    out = _contrast_rows(moments[0], moments[1], top, boot if n_boot > 0 else None)
    return Contrast(out, len(rows_a), len(rows_b), n_boot, ci, label_a, label_b, notes)


def select_rows(store: Any, names: Sequence[str] | None = None, kind: str | None = None,
                prompt_contains: str | None = None) -> np.ndarray:
    """Row indices of a store matching names, kind and a prompt substring (all that are given)."""
    if names:
        known = set(store.name_index())
        missing = [n for n in names if n not in known]
        if missing:
            raise NamesaeError(f"{store.path}: names {missing[:5]} have no rows in this store")
    rows = store.select(kind=kind, names=list(names) if names else None)
    if prompt_contains:
        prompts = store.prompts
        rows = np.asarray([r for r in rows if prompt_contains in str(prompts[r])], dtype=np.int64)
    return np.asarray(rows, dtype=np.int64)
