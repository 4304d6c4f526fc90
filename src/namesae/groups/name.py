"""Groups of a name: the grouping of the name's mean code, and how stable those groups are across its rows.

Stability of a group: over the name's rows, the share of member pairs active together in a row that the row's own
grouping also puts together, each pair weighted by w_i * w_j (the members' weights in the mean code). 1: the
features always fall together; near the share expected by chance: the group only exists in the average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from namesae.errors import NamesaeError
from namesae.groups.api import BatchGroups, Grouping, Labels, group_codes
from namesae.groups.config import GroupConfig


@dataclass
class NameGroups:
    """A name's groups (of its mean code) with their stability across the name's rows."""

    name: str | None
    grouping: Grouping  # each group's `stability` is filled in
    n_rows: int
    stability: float | None  # pooled over every group's member pairs; None without co-active pairs
    row_k: list[int] = field(default_factory=list)  # number of groups of each row

    def to_dict(self, centroid: bool = False) -> dict[str, Any]:
        """JSON-ready record (the README documents the fields)."""
        return {"name": self.name, "n_rows": self.n_rows,
                "stability": None if self.stability is None else round(self.stability, 6),
                "row_k": self.row_k, **self.grouping.to_dict(centroid)}


def pair_agreement(members: np.ndarray, weights: np.ndarray, row_labels: np.ndarray) -> tuple[float, float]:
    """(weight of member pairs grouped together, weight of member pairs co-active) summed over rows.

    members: [m] feature ids; weights: [m]; row_labels: [rows, d_sae] group of each feature in each row, -1 when
    the feature is not active in that row.
    """
    lab = row_labels[:, members]  # [rows, m]
    active = lab >= 0
    pair_w = np.outer(weights, weights)
    np.fill_diagonal(pair_w, 0.0)
    both = active[:, :, None] & active[:, None, :]
    same = both & (lab[:, :, None] == lab[:, None, :])
    return float((same * pair_w).sum()) / 2, float((both * pair_w).sum()) / 2


def name_groups(codes: Any, directions: Any, config: GroupConfig | None = None, labels: Labels | None = None,
                name: str | None = None, device: str | torch.device | None = None) -> NameGroups:
    """Group a name's mean code (codes [rows, d_sae] of its rows) and measure each group's stability across the
    rows, grouping every row the same way (config.select)."""
    config = config or GroupConfig()
    codes = torch.as_tensor(codes, dtype=torch.float32)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise NamesaeError(f"name_groups: {name or 'the name'} needs codes [rows >= 1, d_sae], got "
                           f"{tuple(codes.shape)}")
    mean = group_codes(codes.mean(0, keepdim=True), directions, config, device)
    grouping = mean.grouping(0, labels=labels)
    rows = group_codes(codes, directions, config, device)
    row_labels = _row_labels(rows, codes.shape[1], config.select)
    together_all = active_all = 0.0
    for group in grouping.groups:
        together, active = pair_agreement(np.asarray(group.features), np.asarray(group.weights), row_labels)
        group.stability = together / active if active > 0 else None
        together_all, active_all = together_all + together, active_all + active
    return NameGroups(name=name, grouping=grouping, n_rows=int(codes.shape[0]),
                      stability=together_all / active_all if active_all > 0 else None,
                      row_k=rows.k_concepts.tolist() if config.select == "concepts" else rows.k_mass.tolist())


def _row_labels(rows: BatchGroups, d_sae: int, select: str) -> np.ndarray:
    """Group of every feature in every row [rows, d_sae], -1 where inactive."""
    out = np.full((len(rows), d_sae), -1, dtype=np.int64)
    feats, labs = rows.features.numpy(), rows.labels(select).numpy()
    r, j = np.nonzero(feats >= 0)
    out[r, feats[r, j]] = labs[r, j]
    return out
