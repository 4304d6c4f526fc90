"""Held-out metrics of an SAE: explained variance, MSE, mean L0, dead and dense feature fractions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DENSE_THRESHOLD = 0.1
"""A feature firing on more than this share of held-out rows counts as dense."""


@dataclass
class MetricsAccumulator:
    """Streaming sums over (x, x_hat, codes) batches; `result()` gives the metrics (float64 sums)."""

    d_sae: int
    rows: int = 0
    sse: float = 0.0  # sum ||x - x_hat||^2
    sum_sq: float = 0.0  # sum ||x||^2
    sum_x: Any = None  # [d] sum of rows
    active: float = 0.0  # sum of per-row active counts
    fires: Any = None  # [d_sae] rows on which each feature fired
    by_kind: dict[str, MetricsAccumulator] = field(default_factory=dict)

    def update(self, x: Any, x_hat: Any, codes: Any, kinds: np.ndarray | None = None) -> None:
        """Add a batch: x, x_hat torch [b, d] (store units), codes torch [b, d_sae], optional kinds [b]."""
        import torch

        x64, xh64 = x.double(), x_hat.double()
        on = codes != 0
        self.rows += x.shape[0]
        self.sse += float((x64 - xh64).pow(2).sum())
        self.sum_sq += float(x64.pow(2).sum())
        col = x64.sum(0).cpu().numpy()
        self.sum_x = col if self.sum_x is None else self.sum_x + col
        self.active += float(on.sum())
        f = on.sum(0).cpu().numpy().astype(np.int64)
        self.fires = f if self.fires is None else self.fires + f
        if kinds is not None:
            for kind in np.unique(kinds):
                sel = torch.as_tensor(np.flatnonzero(kinds == kind), device=x.device)
                acc = self.by_kind.setdefault(str(kind), MetricsAccumulator(self.d_sae))
                acc.update(x[sel], x_hat[sel], codes[sel])

    def result(self) -> dict[str, Any]:
        """Metrics as a JSON-ready dict (stable field names)."""
        if self.rows == 0:
            return {"rows": 0}
        total = self.sum_sq - float(np.dot(self.sum_x, self.sum_x)) / self.rows  # sum ||x - mean||^2
        d = self.sum_x.size
        freq = self.fires / self.rows
        out = {
            "rows": self.rows,
            "explained_variance": 1.0 - self.sse / total if total > 0 else None,
            "mse": self.sse / (self.rows * d),
            "mse_per_row": self.sse / self.rows,
            "relative_mse": self.sse / self.sum_sq if self.sum_sq > 0 else None,
            "mean_l0": self.active / self.rows,
            "dead_fraction": float((self.fires == 0).mean()),
            "dense_fraction": float((freq > DENSE_THRESHOLD).mean()),
            "dense_threshold": DENSE_THRESHOLD,
        }
        if self.by_kind:
            out["by_kind"] = {k: acc.result() for k, acc in sorted(self.by_kind.items())}
        return out


def evaluate(encode: Any, decode: Any, batches: Iterable[tuple[Any, np.ndarray | None]], d_sae: int) -> dict:
    """Metrics of an SAE (encode / decode callables on torch batches) over (x, kinds) batches."""
    import torch

    acc = MetricsAccumulator(d_sae)
    with torch.no_grad():
        for x, kinds in batches:
            codes = encode(x)
            acc.update(x, decode(codes), codes, kinds)
    return acc.result()
