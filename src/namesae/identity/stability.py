"""Seed stability of identity verdicts: the same analysis over SAEs trained with different seeds.

Features of two SAEs are matched by decoder cosine with a Hungarian assignment (scipy's linear_sum_assignment,
maximising the total cosine). The assignment is solved over the reference SAE's identity features against the
other SAE's features that are among the `candidates` nearest of any of them (an exact assignment restricted to
plausible partners, so that 81,920-feature dictionaries stay cheap). Per name:
- seed_agreement: share of the SAEs whose verdict (dedicated or not) equals the majority verdict;
- matched_cosine: mean over the other SAEs of the decoder cosine between the reference identity feature and its
  matched feature (None when the reference SAE gives the name no identity feature);
- feature_agreement: share of the other SAEs in which the matched feature is also one of the name's identity
  features there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureMatch:
    """A Hungarian matching of some reference features to another SAE's features."""

    features: np.ndarray  # int64 [m] reference features
    matched: np.ndarray  # int64 [m] their partners in the other SAE (-1: none)
    cosine: np.ndarray  # float64 [m] decoder cosine of each pair


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def match_features(reference: np.ndarray, other: np.ndarray, features: Sequence[int], candidates: int = 8,
                   batch: int = 4096) -> FeatureMatch:
    """Match reference decoder directions [features] (rows of `reference` [d_sae_a, d]) to rows of `other`
    [d_sae_b, d] one to one, maximising the total cosine (Hungarian, over each feature's nearest candidates)."""
    from scipy.optimize import linear_sum_assignment

    feats = np.asarray(sorted({int(f) for f in features}), dtype=np.int64)
    if feats.size == 0:
        return FeatureMatch(feats, feats.copy(), np.zeros(0))
    a, b = _unit(reference[feats]), _unit(other)
    k = min(candidates, b.shape[0])
    near = np.concatenate([np.argpartition(-(a[s:s + batch] @ b.T), k - 1, axis=1)[:, :k]
                           for s in range(0, a.shape[0], batch)])
    cols = np.unique(near)
    cos = a @ b[cols].T  # [m, c]
    rows, picked = linear_sum_assignment(-cos)
    matched = np.full(feats.size, -1, dtype=np.int64)
    cosine = np.zeros(feats.size)
    matched[rows] = cols[picked]
    cosine[rows] = cos[rows, picked]
    return FeatureMatch(feats, matched, cosine)


@dataclass
class SeedStability:
    """Per-name stability of the identity verdict over SAEs of several seeds, and its summary."""

    per_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def seed_stability(verdicts: Sequence[Mapping[str, Sequence[int]]], directions: Sequence[np.ndarray],
                   candidates: int = 8) -> SeedStability:
    """Stability over SAEs: verdicts[s] maps each name to its identity features in SAE s (empty: compositional),
    directions[s] is SAE s's decoder [d_sae, d]; SAE 0 is the reference for the feature matching."""
    if len(verdicts) != len(directions) or len(verdicts) < 2:
        raise ValueError("seed stability needs the verdicts and decoders of at least two SAEs, one of each per SAE")
    names = list(verdicts[0])
    ref_feats = sorted({int(f[0]) for f in verdicts[0].values() if len(f)})
    matches = [match_features(directions[0], d, ref_feats, candidates) for d in directions[1:]]
    lookup = [dict(zip(m.features.tolist(), zip(m.matched.tolist(), m.cosine.tolist()))) for m in matches]
    per_name: dict[str, dict[str, Any]] = {}
    for name in names:
        dedicated = [bool(len(v.get(name, ()))) for v in verdicts]
        majority = sum(dedicated) * 2 >= len(dedicated)
        entry: dict[str, Any] = {"dedicated": dedicated,
                                 "seed_agreement": float(np.mean([d == majority for d in dedicated])),
                                 "matched_cosine": None, "feature_agreement": None}
        own = verdicts[0].get(name, ())
        if len(own):
            j = int(own[0])
            pairs = [lk[j] for lk in lookup]
            entry["reference_feature"] = j
            entry["matched_features"] = [int(m) for m, _ in pairs]
            entry["matched_cosine"] = float(np.mean([c for _, c in pairs]))
            entry["feature_agreement"] = float(np.mean([m in {int(f) for f in v.get(name, ())}
                                                        for (m, _), v in zip(pairs, verdicts[1:])]))
        per_name[name] = entry
    cos = [e["matched_cosine"] for e in per_name.values() if e["matched_cosine"] is not None]
    agree = [e["feature_agreement"] for e in per_name.values() if e["feature_agreement"] is not None]
    summary = {"n_saes": len(verdicts), "n_names": len(per_name),
               "mean_seed_agreement": float(np.mean([e["seed_agreement"] for e in per_name.values()]))
               if per_name else None,
               "unanimous_share": float(np.mean([len(set(e["dedicated"])) == 1 for e in per_name.values()]))
               if per_name else None,
               "mean_matched_cosine": float(np.mean(cos)) if cos else None,
               "mean_feature_agreement": float(np.mean(agree)) if agree else None}
    return SeedStability(per_name, summary)


def verdicts_of(records: Sequence[Any]) -> dict[str, tuple[int, ...]]:
    """Each record's identity features (best first) keyed by name, from IdentityRecords or their identity.json
    dicts (whose `identity_features` are the detailed entries)."""
    out: dict[str, tuple[int, ...]] = {}
    for r in records:
        if isinstance(r, Mapping):
            out[r["name"]] = tuple(int(f["feature"]) for f in r.get("identity_features") or [])
        else:
            out[r.name] = tuple(r.identity_features)
    return out
