"""Plain per-embedding feature grouping: the readable reference the batched Gram path (`fast.py`) is tested against.

One embedding's active features: unit directions u_j [n, d] and weights w_j > 0 (activation mass, f_j * |d_j|).
For each k = 1..k_max: weighted spherical k-means started from greedy weighted k-means++ (`restarts` times, the
highest objective kept); the objective is the weighted mean cosine of features to their group's centroid,
sum_c |sum_{j in c} w_j u_j| / sum_j w_j. select='mass' keeps the largest k whose every group holds at least m_min
of the mass; select='concepts' then joins groups whose centroids have cosine >= join_cos, most similar pair first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from namesae.groups.config import RESTART_TIE, SAME_DIRECTION, SHARE_SLACK, GroupConfig, init_uniforms

# A centroid sum shorter than this has no direction (its members cancel); its cosines count as 0.
ZERO_NORM = 1e-10


@dataclass
class KPath:
    """The best k-means run for every k = 1..k_max of one embedding."""

    labels: Tensor  # int64 [k_max, n]; row k-1 is the grouping into k groups, -1 where k is infeasible
    objective: Tensor  # float64 [k_max]; weighted mean cosine to centroid, nan where infeasible
    min_share: Tensor  # float64 [k_max]; smallest group's share of the mass, 0 where infeasible
    feasible: Tensor  # bool [k_max]; k <= number of distinct directions

    def mass_valid(self, m_min: float) -> Tensor:
        """Which k satisfy the mass rule: every group holds >= m_min of the mass."""
        return self.feasible & (self.min_share >= m_min * (1 - SHARE_SLACK))


def gaps(closest: Tensor) -> Tensor:
    """1 - cosine to the nearest chosen centre, with directions closer than SAME_DIRECTION counted as covered."""
    gap = 1.0 - closest.double()
    return torch.where(gap <= SAME_DIRECTION, torch.zeros_like(gap), gap)


def sample_index(cumulative: Tensor, u: float) -> int:
    """Index drawn by inverse CDF from a cumulative sum of non-negative masses [n] with the uniform u."""
    target = torch.as_tensor(u, dtype=cumulative.dtype) * cumulative[-1]
    index = torch.searchsorted(cumulative, target.reshape(1), right=True)
    return int(index.clamp_max(cumulative.numel() - 1))


def kmeanspp_centers(units: Tensor, weights: Tensor, k: int, uniforms: Tensor) -> list[int] | None:
    """Greedy weighted k-means++ centres (feature indices), or None when fewer than k distinct directions exist."""
    w = weights.double()
    centers = [sample_index(w.cumsum(0), float(uniforms[0, 0]))]
    closest = units @ units[centers[0]]  # [n] cosine to the nearest centre so far
    for step in range(1, k):
        potential = w * gaps(closest)
        if float(potential.sum()) <= 0.0:
            return None
        cumulative = potential.cumsum(0)
        best, best_potential, best_closest = -1, float("inf"), closest
        for u in uniforms[step].tolist():
            candidate = sample_index(cumulative, u)
            trial = torch.maximum(closest, units @ units[candidate])
            trial_potential = float((w * gaps(trial)).sum())
            if trial_potential < best_potential:
                best, best_potential, best_closest = candidate, trial_potential, trial
        centers.append(best)
        closest = best_closest
    return centers


def lloyd(units: Tensor, weights: Tensor, centers: list[int], max_iter: int) -> tuple[Tensor, int]:
    """Weighted spherical k-means from the given centres: (labels [n], iterations run)."""
    k = len(centers)
    labels = (units @ units[centers].T).argmax(1)
    weighted = weights[:, None].to(units.dtype) * units
    for it in range(max_iter):
        sums = _one_hot(labels, k, units.dtype).T @ weighted
        norms = sums.norm(dim=1, keepdim=True)
        centroids = torch.where(norms > ZERO_NORM, sums / norms.clamp_min(ZERO_NORM), torch.zeros_like(sums))
        sims = units @ centroids.T
        # A group that lost all its members stays empty: it has no centroid to attract features.
        sims[:, _one_hot(labels, k, units.dtype).sum(0) == 0] = -torch.inf
        new = sims.argmax(1)
        if torch.equal(new, labels):
            return labels, it
        labels = new
    return labels, max_iter


def objective_and_shares(units: Tensor, weights: Tensor, labels: Tensor, k: int) -> tuple[float, Tensor]:
    """Weighted mean cosine to the group centroids and the mass share of each of the k groups [k]."""
    w = weights.double()
    member = _one_hot(labels, k, torch.float64)
    sums = member.T @ (w[:, None] * units.double())
    total = float(w.sum())
    return float(sums.norm(dim=1).sum()) / total, (member.T @ w) / total


def _one_hot(labels: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """Membership matrix [n, k] of labels in 0..k-1."""
    return torch.nn.functional.one_hot(labels, k).to(dtype)


def reference_path(units: Tensor, weights: Tensor, config: GroupConfig) -> KPath:
    """The best of `restarts` k-means runs for every k = 1..k_max, one k and one run at a time."""
    n = units.shape[0]
    uniforms = init_uniforms(config)
    labels = torch.full((config.k_max, n), -1, dtype=torch.int64)
    objective = torch.full((config.k_max,), torch.nan, dtype=torch.float64)
    min_share = torch.zeros(config.k_max, dtype=torch.float64)
    feasible = torch.zeros(config.k_max, dtype=torch.bool)
    for k in range(1, min(config.k_max, n) + 1):
        runs = []  # (objective, labels, shares) of each feasible restart
        for r in range(config.restarts if k > 1 else 1):
            if k == 1:
                run = torch.zeros(n, dtype=torch.int64)
            else:
                centers = kmeanspp_centers(units, weights, k, uniforms[r])
                if centers is None:
                    continue
                run, _ = lloyd(units, weights, centers, config.max_iter)
            runs.append((*objective_and_shares(units, weights, run, k), run))
        if runs:
            top = max(obj for obj, _, _ in runs)
            obj, shares, run = next(r for r in runs if r[0] >= top - RESTART_TIE)  # first of the best
            labels[k - 1], objective[k - 1], min_share[k - 1], feasible[k - 1] = run, obj, shares.min(), True
    return KPath(labels=labels, objective=objective, min_share=min_share, feasible=feasible)


def reference_join(units: Tensor, weights: Tensor, labels: Tensor, join_cos: float) -> Tensor:
    """Join the pair of groups with the most similar weighted centroids while their cosine >= join_cos."""
    w = weights.double()
    sums = {int(c): (w[labels == c, None] * units[labels == c].double()).sum(0) for c in labels.unique()}
    merged = labels.clone()
    while len(sums) > 1:
        keys = sorted(sums)
        best, pair = -torch.inf, None
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                na, nb = sums[a].norm(), sums[b].norm()
                cos = float(sums[a] @ sums[b] / (na * nb)) if na > ZERO_NORM and nb > ZERO_NORM else 0.0
                if cos > best:
                    best, pair = cos, (a, b)
        if best < join_cos:
            break
        a, b = pair
        sums[a] = sums[a] + sums.pop(b)
        merged[merged == b] = a
    return merged


@dataclass
class ReferenceGrouping:
    """One embedding's grouping by the reference implementation."""

    labels: Tensor  # int64 [n]; group of each active feature
    k: int  # number of groups returned
    k_mass: int  # k chosen by the mass rule (before any joining)
    path: KPath


def reference_grouping(units: Tensor, weights: Tensor, config: GroupConfig) -> ReferenceGrouping:
    """Group one embedding's active features (unit directions [n, d], weights [n] > 0) by `config.select`."""
    path = reference_path(units, weights, config)
    k_mass = int(torch.nonzero(path.mass_valid(config.m_min)).max()) + 1
    labels = path.labels[k_mass - 1]
    if config.select == "concepts":
        labels = reference_join(units, weights, labels, config.join_cos)
    return ReferenceGrouping(labels=labels, k=int(labels.unique().numel()), k_mass=k_mass, path=path)
