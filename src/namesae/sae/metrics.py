"""Held-out metrics of an SAE: explained variance, MSE, mean L0, dead and dense feature fractions; metrics.json.

metrics.json, format version 1 (`save_metrics` / `SAEMetrics.save` write it, `SAEMetrics.load` reads it)::

    {"format_version": 1, "split": "heldout", "rows": 512,
     "explained_variance": 0.93, "mse": ..., "mse_per_row": ..., "relative_mse": ..., "mean_l0": 8.9,
     "dead_fraction": 0.02, "dense_fraction": 0.0, "dense_threshold": 0.1,
     "by_kind": {"image": {... the same fields ...}},                   # when the rows have kinds
     "architecture": "topk", "engine": "fast", "d_in": 64, "d_sae": 512, "step": 3000, "samples_seen": ...,
     "train_seconds": ..., "train_samples_per_second": ..., "resumed_at_step": null, "steps_this_call": 3000,
     "world_size": 1}                                                   # a finished run only (not checkpoints)

With no rows to measure, only `rows` (0) is written. NaN and infinities are written as null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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


# ---- the file format: metrics.json ---------------------------------------------------------------------------------
METRICS_FORMAT_VERSION = 1
"""Version of metrics.json that `SAEMetrics.save` / `save_metrics` write and `SAEMetrics.load` reads."""
_FIX = "re-run `namesae train` on the folder (or retrain) to rewrite it"
_CORE = {"explained_variance": "num?", "mse": "num", "mse_per_row": "num", "relative_mse": "num?", "mean_l0": "num",
         "dead_fraction": "num", "dense_fraction": "num", "dense_threshold": "num"}
_RUN = {"architecture": "str", "engine": "str", "d_in": "int", "d_sae": "int", "step": "int", "samples_seen": "int",
        "train_seconds": "num", "train_samples_per_second": "num?", "resumed_at_step": "int?",
        "steps_this_call": "int", "world_size": "int", "dead_fraction_training": "num?"}
_RUN_OPTIONAL = ("dead_fraction_training",)  # absent from files written before it was measured


@dataclass(frozen=True)
class SAEMetrics:
    """Held-out metrics of an SAE (metrics.json): reconstruction, sparsity, dead and dense features, and, for a
    finished run, how it was trained. Fields of a block that was not measured are None."""

    rows: int
    """Rows measured (0: nothing to measure; every other metric is then None)."""
    split: str | None = None
    """'heldout', or 'train' when the run held out no rows."""
    explained_variance: float | None = None
    """1 - FVU: 1 - sum ||x - x_hat||^2 / sum ||x - mean||^2 (None when the rows do not vary)."""
    mse: float | None = None
    """Mean squared error per coordinate."""
    mse_per_row: float | None = None
    relative_mse: float | None = None
    """sum ||x - x_hat||^2 / sum ||x||^2."""
    mean_l0: float | None = None
    """Mean number of active features per row."""
    dead_fraction: float | None = None
    """Share of features that never fire on the measured rows."""
    dense_fraction: float | None = None
    """Share of features firing on more than `dense_threshold` of the rows."""
    dense_threshold: float | None = None
    by_kind: dict[str, SAEMetrics] = field(default_factory=dict)
    """The same metrics per row kind (text / image)."""
    architecture: str | None = None
    engine: str | None = None
    d_in: int | None = None
    d_sae: int | None = None
    step: int | None = None
    samples_seen: int | None = None
    train_seconds: float | None = None
    train_samples_per_second: float | None = None
    resumed_at_step: int | None = None
    steps_this_call: int | None = None
    world_size: int | None = None
    dead_fraction_training: float | None = None
    """Share of features that fired on no training batch in the run's last `dead_feature_window` steps (or all
    its steps, when fewer): dead in training. `dead_fraction` counts features silent on the held-out rows, which
    overstates it when rare features (a name's identity) have few or no held-out rows."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other field of the file, kept as it was."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of metrics.json without its format_version."""
        out: dict[str, Any] = {} if self.split is None else {"split": self.split}
        out["rows"] = self.rows
        if self.rows > 0:
            out.update({k: getattr(self, k) for k in _CORE})
        if self.by_kind:
            out["by_kind"] = {k: m.to_dict() for k, m in self.by_kind.items()}
        if self.architecture is not None:
            out.update({k: getattr(self, k) for k in _RUN})
        return {**out, **self.extra}

    def save(self, path: str | Path) -> Path:
        """Write metrics.json atomically."""
        return save_metrics(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> SAEMetrics:
        """Read a metrics.json that namesae wrote; a file that does not fit is refused with one line."""
        from namesae.io import read_json

        return metrics_from_dict(read_json(path, "train the SAE with `namesae train` first", _FIX), path)


def _metrics(data: Mapping[str, Any], path: Path, where: str) -> SAEMetrics:
    """SAEMetrics from a metrics object (the file's top level or one of its `by_kind` entries)."""
    from namesae.errors import NamesaeError
    from namesae.io import check_fields

    check_fields(data, {"rows": "int", "split": "str", "by_kind": "obj"}, path, _FIX, where,
                 optional=("split", "by_kind"))
    if data["rows"] > 0:
        check_fields(data, _CORE, path, _FIX, where)
    if "architecture" in data:
        check_fields(data, _RUN, path, _FIX, where, optional=_RUN_OPTIONAL)
    by_kind = {}
    for kind, sub in data.get("by_kind", {}).items():
        if not isinstance(sub, dict):
            raise NamesaeError(f"{path}: field '{where}by_kind.{kind}' must be an object, got {sub!r:.80}; {_FIX}")
        by_kind[kind] = _metrics(sub, path, f"{where}by_kind.{kind}.")
    known = {"format_version", "rows", "split", "by_kind", *_CORE, *_RUN}
    return SAEMetrics(rows=data["rows"], split=data.get("split"), by_kind=by_kind,
                      extra={k: v for k, v in data.items() if k not in known},
                      **{k: data.get(k) for k in (*_CORE, *_RUN)})


def metrics_from_dict(data: Any, path: str | Path = "<metrics.json>") -> SAEMetrics:
    """SAEMetrics from the content of metrics.json, checked field by field (one line per problem)."""
    from namesae.io import require_format

    path = Path(path)
    require_format(data, path, "metrics", METRICS_FORMAT_VERSION, _FIX)
    return _metrics(data, path, "")


def save_metrics(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write a metrics dict (what `evaluate` and training measure) as metrics.json with its format_version,
    atomically; a dict the reader would refuse is refused here."""
    from namesae.io import atomic_write_json, json_ready

    data = json_ready({"format_version": METRICS_FORMAT_VERSION,
                       **{k: v for k, v in metrics.items() if k != "format_version"}})
    metrics_from_dict(data, path)
    return atomic_write_json(path, data)
