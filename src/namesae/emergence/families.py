"""Feature families across SAEs of one space (dictionary sizes, training steps): which feature a feature came from.

Features of different SAEs are different features; what links them is their decoder directions. For consecutive
SAEs A (earlier) and B (later) in the same space, the parent of a feature b of B is the feature a of A whose unit
decoder direction has the highest cosine with b's; the children of a are the features of B with cosine >=
`link_min_cosine` to it. A name's link at the transition A -> B reads: its feature in B (its best identity feature,
else its best feature), that feature's parent in A, the cosine between them, the name's precision and recall on
the parent in A, and the parent's other children. A **split** is a name that is not dedicated in A, is dedicated
in B, and whose identity feature descends (cosine >= link_min_cosine) from a feature of A shared with other names
(precision < tau_p): a shared feature split off the name's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from namesae.emergence.measures import NameFeatures
from namesae.features import FeatureStats


def unit_rows(directions: Any) -> torch.Tensor:
    """Decoder directions [k, d] as float32 unit rows (zero rows stay zero)."""
    d = torch.as_tensor(np.asarray(directions) if not isinstance(directions, torch.Tensor) else directions)
    return torch.nn.functional.normalize(d.float(), dim=1)


@dataclass(frozen=True)
class Parents:
    """Parent (highest-cosine earlier feature) of each of some later features."""

    feature: np.ndarray  # int64 [k] later features
    parent: np.ndarray  # int64 [k] earlier features
    cosine: np.ndarray  # float64 [k]


def parents(later: torch.Tensor, earlier: torch.Tensor, features: np.ndarray, batch: int = 4096) -> Parents:
    """Parent in `earlier` [ka, d] (unit rows) of each listed feature of `later` [kb, d] (unit rows)."""
    features = np.asarray(features, dtype=np.int64)
    best, cos = [], []
    for start in range(0, features.size, batch):
        sims = later[torch.as_tensor(features[start:start + batch])] @ earlier.T  # [b, ka]
        value, index = sims.max(dim=1)
        best.append(index.numpy())
        cos.append(value.double().numpy())
    return Parents(features, np.concatenate(best) if best else np.zeros(0, np.int64),
                   np.concatenate(cos) if cos else np.zeros(0))


def children(earlier: torch.Tensor, later: torch.Tensor, features: np.ndarray, min_cosine: float, top: int = 5
             ) -> dict[int, list[tuple[int, float]]]:
    """Up to `top` features of `later` with cosine >= min_cosine to each listed feature of `earlier`, best first."""
    out: dict[int, list[tuple[int, float]]] = {}
    features = np.unique(np.asarray(features, dtype=np.int64))
    for start in range(0, features.size, 4096):
        chunk = features[start:start + 4096]
        sims = earlier[torch.as_tensor(chunk)] @ later.T  # [c, kb]
        value, index = sims.topk(min(top, later.shape[0]), dim=1)
        for a, vals, idx in zip(chunk, value.tolist(), index.tolist()):
            out[int(a)] = [(int(j), float(v)) for v, j in zip(vals, idx) if v >= min_cosine]
    return out


def pair_lookup(stats: FeatureStats, features: np.ndarray, names: np.ndarray, rule: str = "strongest",
                tau_p: float = 0.8, tau_r: float = 0.5, min_gap: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """precision(j, n) and recall(j, n) [k] under an identity rule of the given (feature, name index) pairs (0
    where j never fires on n)."""
    n = len(stats.names)
    keys = stats.pair_feature * n + stats.pair_name
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    want = np.asarray(features, dtype=np.int64) * n + np.asarray(names, dtype=np.int64)
    if keys.size == 0:
        return np.zeros(want.size), np.zeros(want.size)
    pos = np.clip(np.searchsorted(keys, want), 0, keys.size - 1)
    found = keys[pos] == want
    all_prec, all_rec = stats.rule_precision_recall(rule, tau_p, tau_r, min_gap)
    prec, rec = all_prec[order][pos], all_rec[order][pos]
    return np.where(found, prec, 0.0), np.where(found, rec, 0.0)


def name_links(earlier_names: NameFeatures, earlier_stats: FeatureStats, earlier_dirs: torch.Tensor,
               later_names: NameFeatures, later_dirs: torch.Tensor, tau_p: float, min_cosine: float,
               rule: str = "strongest", tau_r: float = 0.5, min_gap: float = 1.25) -> dict[str, dict[str, Any]]:
    """Each shared name's family link from the earlier SAE to the later one (module docstring), keyed by name."""
    e_index = earlier_names.index()
    names = [n for n in later_names.names if n in e_index]
    li = np.array([later_names.index()[n] for n in names], dtype=np.int64)
    ei = np.array([e_index[n] for n in names], dtype=np.int64)
    feat = np.where(later_names.identity_feature[li] >= 0, later_names.identity_feature[li],
                    later_names.best_feature[li])
    has = feat >= 0
    out: dict[str, dict[str, Any]] = {}
    if not has.any():
        return {n: {"feature": None} for n in names}
    par = parents(later_dirs, earlier_dirs, feat[has])
    prec, rec = pair_lookup(earlier_stats, par.parent, ei[has], rule, tau_p, tau_r, min_gap)  # NameFeatures and stats share name order
    kids = children(earlier_dirs, later_dirs, par.parent, min_cosine)
    shared_names = np.bincount(earlier_stats.pair_feature, minlength=earlier_stats.d_sae)
    k = 0
    for name, e, l_, f, ok in zip(names, ei, li, feat, has):
        if not ok:
            out[name] = {"feature": None}
            continue
        a, cos = int(par.parent[k]), float(par.cosine[k])
        dedicated_before, dedicated_after = bool(earlier_names.dedicated[e]), bool(later_names.dedicated[l_])
        linked = cos >= min_cosine
        split = (not dedicated_before) and dedicated_after and linked and prec[k] < tau_p
        out[name] = {
            "feature": int(f), "identity": bool(later_names.identity_feature[l_] >= 0),
            "parent": a, "parent_cosine": cos, "linked": bool(linked),
            "parent_precision": float(prec[k]), "parent_recall": float(rec[k]),
            "parent_n_names": int(shared_names[a]),
            "previous_feature": int(earlier_names.best_feature[e]) if earlier_names.best_feature[e] >= 0 else None,
            "parent_is_previous_feature": bool(a == earlier_names.best_feature[e]),
            "siblings": [{"feature": j, "cosine": c} for j, c in kids.get(a, []) if j != f],
            "dedicated_before": dedicated_before, "dedicated_after": dedicated_after, "split": bool(split),
        }
        k += 1
    return out
