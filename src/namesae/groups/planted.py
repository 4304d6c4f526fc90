"""Planted concept data with known truth, and scores of a grouping against it (purity, adjusted Rand index, k = c).

An embedding's active features scatter around c concept directions: each feature has cosine >= min_cos to its
concept and leans towards one of a few "nuance" directions of that concept (the sub-groups the mass rule keeps
splitting off), activations are heavy-tailed (log-normal) and every concept holds a fair share of the mass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from namesae.errors import NamesaeError
from namesae.groups.config import GroupConfig


@dataclass
class PlantedConcepts:
    """One embedding's active features with their true concepts."""

    directions: Tensor  # float32 [n_features, d], unit rows
    weights: Tensor  # float32 [n_features] > 0, activation mass
    labels: Tensor  # int64 [n_features], concept of each feature
    concepts: Tensor  # float32 [c, d], unit concept directions


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def planted_concepts(c: int, n_features: int, d: int, min_cos: float = 0.85, seed: int = 0,
                     concept_cos: float = 0.3, nuances: int = 3, tail: float = 1.0) -> PlantedConcepts:
    """Active features around c concept directions (pairwise concept cosine ~ concept_cos), each with cosine
    uniform in [min_cos, 1) to its concept, log-normal(0, tail) activations, concept mass shares >= 0.5 / c."""
    if c < 1 or n_features < 2 * c or d < c + 2:
        raise NamesaeError(f"planted_concepts needs c >= 1, n_features >= 2c and d >= c + 2; "
                           f"got c={c}, n_features={n_features}, d={d}")
    if not 0.0 <= min_cos < 1.0 or not 0.0 <= concept_cos < 1.0:
        raise NamesaeError(f"min_cos and concept_cos must lie in [0, 1); got {min_cos}, {concept_cos}")
    gen = torch.Generator().manual_seed(int(seed))
    shared = _unit(torch.randn(d, generator=gen))
    concepts = _unit(concept_cos**0.5 * shared + (1 - concept_cos) ** 0.5 * _unit(torch.randn(c, d, generator=gen)))
    shares = 0.5 / c + 0.5 * _dirichlet(c, gen)
    counts = torch.full((c,), 2, dtype=torch.int64) + _apportion(shares, n_features - 2 * c)
    labels = torch.repeat_interleave(torch.arange(c), counts)
    nuance = _unit(torch.randn(c, nuances, d, generator=gen))
    pick = torch.randint(0, nuances, (n_features,), generator=gen)
    lean = nuance[labels, pick] + 0.6 * _unit(torch.randn(n_features, d, generator=gen))
    center = concepts[labels]
    ortho = _unit(lean - (lean * center).sum(1, keepdim=True) * center)
    cos = min_cos + (1 - min_cos) * torch.rand(n_features, generator=gen)
    directions = cos[:, None] * center + (1 - cos**2).sqrt()[:, None] * ortho
    weights = torch.exp(tail * torch.randn(n_features, generator=gen))
    mass = torch.zeros(c).index_add_(0, labels, weights)
    weights = weights * (shares / mass)[labels]
    return PlantedConcepts(directions=_unit(directions).float(), weights=weights.float(), labels=labels,
                           concepts=concepts.float())


def _dirichlet(c: int, gen: torch.Generator) -> Tensor:
    x = -torch.log(torch.rand(c, generator=gen).clamp_min(1e-12))  # Gamma(1) draws
    return x / x.sum()


def _apportion(shares: Tensor, total: int) -> Tensor:
    """Integer counts summing to `total`, proportional to shares (largest remainders)."""
    raw = shares / shares.sum() * total
    counts = raw.floor().long()
    extra = total - int(counts.sum())
    counts[torch.argsort(raw - counts, descending=True)[:extra]] += 1
    return counts


def adjusted_rand_index(a: Any, b: Any) -> float:
    """Adjusted Rand index between two labelings of the same items (1: identical partitions)."""
    a, b = np.asarray(a), np.asarray(b)
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.float64)
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols, n_pairs = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), len(a) * (len(a) - 1) / 2
    expected = rows * cols / n_pairs if n_pairs else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def mass_purity(groups: Any, truth: Any, weights: Any) -> float:
    """Mass-weighted purity: share of the mass that lies in its group's majority (by mass) concept."""
    groups, truth, weights = np.asarray(groups), np.asarray(truth), np.asarray(weights, dtype=np.float64)
    kept = 0.0
    for g in np.unique(groups):
        members = groups == g
        kept += np.bincount(truth[members], weights=weights[members]).max()
    return float(kept / weights.sum())


def score_groups_on_planted(n_cases: int = 200, seed: int = 0, config: GroupConfig | None = None,
                            n_features: tuple[int, int] = (60, 300), d: int = 256, min_cos: float = 0.85,
                            concept_cos: float = 0.3) -> dict:
    """Both selection modes on n_cases planted embeddings (c = 2..6): purity, ARI and k = c rates against the
    claims (purity >= 0.95 in >= 95% of cases in both modes; k = c and ARI >= 0.9 in >= 90% for 'concepts')."""
    from namesae.groups.api import group_sets

    config = config or GroupConfig()
    rng = np.random.default_rng(seed)
    cases = [planted_concepts(int(rng.integers(2, 7)), int(rng.integers(n_features[0], n_features[1] + 1)), d,
                              min_cos=min_cos, seed=int(rng.integers(2**31)), concept_cos=concept_cos)
             for _ in range(n_cases)]
    batch = group_sets([p.directions for p in cases], [p.weights for p in cases], config)
    out: dict[str, Any] = {"n_cases": n_cases, "seed": seed, "d": d, "n_features": list(n_features),
                           "min_cos": min_cos, "concept_cos": concept_cos, "join_cos": config.join_cos}
    for mode in ("mass", "concepts"):
        labels = batch.labels_mass if mode == "mass" else batch.labels_concepts
        purity, ari, k_ok = [], [], []
        for i, p in enumerate(cases):
            got = labels[i, :len(p.labels)].cpu().numpy()
            purity.append(mass_purity(got, p.labels.numpy(), p.weights.numpy()))
            ari.append(adjusted_rand_index(got, p.labels.numpy()))
            k_ok.append(len(np.unique(got)) == len(p.concepts))
        purity, ari, k_ok = np.array(purity), np.array(ari), np.array(k_ok)
        out[mode] = {"purity_ge_0.95": float((purity >= 0.95).mean()), "mean_purity": float(purity.mean()),
                     "k_eq_c": float(k_ok.mean()), "ari_ge_0.9": float((ari >= 0.9).mean()),
                     "k_eq_c_and_ari_ge_0.9": float((k_ok & (ari >= 0.9)).mean()), "mean_ari": float(ari.mean())}
    out["pass"] = bool(out["mass"]["purity_ge_0.95"] >= 0.95 and out["concepts"]["purity_ge_0.95"] >= 0.95
                       and out["concepts"]["k_eq_c_and_ari_ge_0.9"] >= 0.9)
    return out
