"""Feature groups of embeddings: from SAE codes or direction sets to groups with mass, centroid, coherence, label.

`group_codes(codes, directions)` groups every row of a code matrix; `group_sets(directions, weights)` groups
arbitrary active sets; both run the batched Gram path (`fast.py`) on chunks of embeddings of similar size and
return a `BatchGroups` of tensors, from which `grouping(i)` builds one embedding's `Grouping` of `FeatureGroup`s.
`name_groups` groups a name's mean code and measures how stable those groups are across the name's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from namesae.errors import NamesaeError
from namesae.groups.config import GroupConfig
from namesae.groups.fast import gram_matrices, gram_path
from namesae.groups.reference import ZERO_NORM

log = logging.getLogger(__name__)

Labels = Mapping[int, "str | tuple[str, float]"]

# Embeddings whose [n, d] unit directions are gathered at once to form their Gram matrices.
GRAM_CHUNK = 16


@dataclass
class FeatureGroup:
    """One group of an embedding's active features."""

    features: list[int]  # feature ids, heaviest first
    weights: list[float]  # activation mass w_j = f_j * |d_j| of each feature
    mass_share: float  # the group's share of the embedding's activation mass
    coherence: float  # weighted mean cosine of the members to the centroid
    centroid: np.ndarray | None  # float32 [d], unit: direction of sum_j w_j u_j (None: read from a file without)
    label: str | None = None  # the label carrying most of the group's mass, when labels are given
    label_share: float | None = None  # share of the group's mass whose feature has that label
    label_score: float | None = None  # mass-weighted mean score of those features' labels (e.g. label cosine)
    stability: float | None = None  # name groups: how often members still fall together in the name's rows

    def to_dict(self, centroid: bool = False) -> dict[str, Any]:
        """JSON-ready record (the README documents the fields); the centroid only when asked for."""
        out = {"features": self.features, "weights": [round(x, 6) for x in self.weights],
               "mass_share": round(self.mass_share, 6), "coherence": round(self.coherence, 6),
               "label": self.label, "label_share": _round(self.label_share), "label_score": _round(self.label_score),
               "stability": _round(self.stability)}
        if centroid and self.centroid is not None:
            out["centroid"] = [round(float(x), 6) for x in self.centroid]
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


@dataclass
class Grouping:
    """One embedding's feature groups, largest mass first."""

    select: str  # 'mass' or 'concepts'
    k: int  # number of groups
    k_mass: int  # k chosen by the mass rule (equals k for select='mass')
    n_active: int  # active features
    total_mass: float  # sum of the weights of the active features
    objective: float  # weighted mean cosine to centroid of the mass-rule grouping
    groups: list[FeatureGroup] = field(default_factory=list)

    def to_dict(self, centroid: bool = False) -> dict[str, Any]:
        """JSON-ready record (the README documents the fields)."""
        return {"select": self.select, "k": self.k, "k_mass": self.k_mass, "n_active": self.n_active,
                "total_mass": round(self.total_mass, 6), "objective": _round(self.objective),
                "groups": [g.to_dict(centroid) for g in self.groups]}


@dataclass
class BatchGroups:
    """Groups of many embeddings at once, as padded tensors (feature axis n_max, group axis k_max)."""

    features: Tensor  # int64 [N, n_max]; active feature ids, -1 padding
    weights: Tensor  # float32 [N, n_max]; activation mass, 0 padding
    labels_mass: Tensor  # int64 [N, n_max]; group (slot) of each feature by the mass rule, -1 padding
    labels_concepts: Tensor  # int64 [N, n_max]; group after joining similar centroids, -1 padding
    k_mass: Tensor  # int64 [N]; 0 for an embedding without active features
    k_concepts: Tensor  # int64 [N]
    objective: Tensor  # float64 [N, k_max]; best objective for every k, nan where infeasible
    min_share: Tensor  # float64 [N, k_max]; smallest group share for every k
    norms_mass: Tensor  # float64 [N, k_max]; |sum_{j in c} w_j u_j| of each mass group slot
    norms_concepts: Tensor  # float64 [N, k_max]; the same after joining
    config: GroupConfig
    directions: Tensor | Sequence[Tensor]  # a dictionary [d_sae, d], or a [n_i, d] set per embedding (list or
    # padded [N, n, d] tensor)

    def __len__(self) -> int:
        return self.features.shape[0]

    def labels(self, select: str | None = None) -> Tensor:
        """Group of each feature [N, n_max] under `select` (default: the config's)."""
        return self.labels_concepts if (select or self.config.select) == "concepts" else self.labels_mass

    def grouping(self, i: int, select: str | None = None, labels: Labels | None = None) -> Grouping:
        """Embedding i's groups as records, with top labels when `labels` maps feature id -> label (or
        (label, score))."""
        select = select or self.config.select
        keep = self.features[i] >= 0
        ids = self.features[i][keep].cpu()
        w = self.weights[i][keep].double().cpu()
        lab = self.labels(select)[i][keep].cpu()
        norms = (self.norms_concepts if select == "concepts" else self.norms_mass)[i].cpu()
        dictionary = isinstance(self.directions, Tensor) and self.directions.ndim == 2
        source = self.directions if dictionary else self.directions[i]
        units = source[ids.to(source.device)].double().cpu()
        units = units / units.norm(dim=1, keepdim=True).clamp_min(ZERO_NORM)
        total = float(w.sum())
        k_mass = int(self.k_mass[i])
        out = Grouping(select=select, k=int(lab.unique().numel()), k_mass=k_mass, n_active=int(ids.numel()),
                       total_mass=total,
                       objective=float(self.objective[i, k_mass - 1]) if k_mass else float("nan"))
        for c in lab.unique().tolist():
            members = torch.nonzero(lab == c).squeeze(1)
            members = members[torch.argsort(w[members], descending=True, stable=True)]
            mass = float(w[members].sum())
            summed = (w[members, None] * units[members]).sum(0)
            group = FeatureGroup(features=ids[members].tolist(), weights=w[members].tolist(),
                                 mass_share=mass / total, coherence=float(norms[c]) / mass,
                                 centroid=(summed / summed.norm().clamp_min(ZERO_NORM)).float().numpy())
            if labels is not None:
                _add_label(group, labels)
            out.groups.append(group)
        out.groups.sort(key=lambda g: -g.mass_share)
        return out


def _add_label(group: FeatureGroup, labels: Labels) -> None:
    """The label carrying most of the group's mass, its share of the mass and mean score."""
    mass: dict[str, float] = {}
    score: dict[str, float] = {}
    for fid, w in zip(group.features, group.weights):
        entry = labels.get(fid)
        if entry is None:
            continue
        name, value = (entry, None) if isinstance(entry, str) else (str(entry[0]), float(entry[1]))
        mass[name] = mass.get(name, 0.0) + w
        if value is not None:
            score[name] = score.get(name, 0.0) + w * value
    if mass:
        top = max(mass, key=lambda name: (mass[name], name))
        group.label = top
        group.label_share = mass[top] / sum(group.weights)
        group.label_score = score[top] / mass[top] if top in score else None


def join_similar(pair_dots: Tensor, alive: Tensor, join_cos: float) -> Tensor:
    """Join groups while two centroids have cosine >= join_cos, most similar pair first; returns, per slot, the
    slot it was joined into [B, K] (itself if kept). pair_dots: [B, K, K] float64, s_a . s_b of group sums."""
    B, K, _ = pair_dots.shape
    M, alive = pair_dots.clone(), alive.clone()
    into = torch.arange(K, device=M.device).expand(B, K).clone()
    upper = torch.ones(K, K, dtype=torch.bool, device=M.device).triu(1)
    rows = torch.arange(B, device=M.device)
    for _ in range(K - 1):
        norm = M.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()
        cos = torch.where(norm[:, :, None] * norm[:, None, :] > ZERO_NORM**2,
                          M / (norm[:, :, None] * norm[:, None, :]).clamp_min(ZERO_NORM**2), 0.0)
        ok = upper & alive[:, :, None] & alive[:, None, :]
        best, flat = torch.where(ok, cos, -torch.inf).view(B, K * K).max(1)
        merge = best >= join_cos
        if not bool(merge.any()):
            break
        b, i, j = rows[merge], flat[merge] // K, flat[merge] % K
        M[b, i, :] += M[b, j, :]
        M[b, :, i] += M[b, :, j]
        alive[b, j] = False
        into[b] = torch.where(into[b] == j[:, None], i[:, None], into[b])
    return into


def _pair_dots(gram: Tensor, weights: Tensor, labels: Tensor, K: int) -> Tensor:
    """s_a . s_b for every pair of group slots [B, K, K] (float64) from the Gram matrix."""
    S = torch.zeros(*labels.shape, K + 1, dtype=gram.dtype, device=gram.device)
    S.scatter_(2, (labels % (K + 1))[..., None], weights.to(gram.dtype)[..., None])
    S = S[..., :K]  # [B, n, K]
    return torch.bmm(S.transpose(1, 2), torch.bmm(gram, S)).double()


def _run_chunk(gram: Tensor, weights: Tensor, config: GroupConfig) -> dict[str, Tensor]:
    """Groups of one padded chunk: Gram matrices [B, n, n] of the unit directions, weights [B, n] (0: padding)."""
    path = gram_path(gram, weights, config)
    B, K = path.objective.shape
    valid_k = path.mass_valid(config.m_min)
    ks = torch.arange(1, K + 1, device=gram.device)
    k_mass = torch.where(valid_k, ks, 0).max(1).values  # [B]
    pick = (k_mass - 1).clamp_min(0)
    lab_mass = path.labels.gather(1, pick.view(B, 1, 1).expand(B, 1, weights.shape[1])).squeeze(1)
    lab_mass = torch.where(weights > 0, lab_mass, -1)
    dots = _pair_dots(gram, weights, lab_mass, K)
    slots = torch.arange(K, device=gram.device)
    alive = slots[None, :] < k_mass[:, None]
    into = join_similar(dots, alive, config.join_cos)
    lab_con = torch.where(lab_mass >= 0, into.gather(1, lab_mass.clamp_min(0)), -1)
    joined = _pair_dots(gram, weights, lab_con, K)
    k_con = (alive & (into == slots[None, :])).sum(1)
    return {"labels_mass": lab_mass, "labels_concepts": lab_con, "k_mass": k_mass, "k_concepts": k_con,
            "objective": path.objective, "min_share": path.min_share,
            "norms_mass": dots.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt(),
            "norms_concepts": joined.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()}


def _check_weights(weights: Tensor, where: str) -> None:
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise NamesaeError(f"{where}: weights must be finite and >= 0 (activation mass); got negative or nan/inf")


def group_sets(directions: Sequence[Tensor] | Tensor, weights: Sequence[Tensor] | Tensor,
               config: GroupConfig | None = None, device: str | torch.device | None = None) -> BatchGroups:
    """Group many active sets: directions[i] [n_i, d] (any length, any d), weights[i] [n_i] >= 0 (0: not
    active); or, without copies, one padded tensor of directions [N, n, d] with weights [N, n]."""
    config = config or GroupConfig()
    if isinstance(directions, Tensor) and directions.ndim == 3:
        return _group_padded_sets(directions, torch.as_tensor(weights), config, device)
    if len(directions) != len(weights):
        raise NamesaeError(f"group_sets: {len(directions)} direction sets but {len(weights)} weight vectors")
    sets, ws = [], []
    for i, (x, w) in enumerate(zip(directions, weights)):
        x, w = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(w, dtype=torch.float32)
        if x.ndim != 2 or w.shape != (x.shape[0],):
            raise NamesaeError(f"group_sets: set {i} has directions {tuple(x.shape)} and weights "
                               f"{tuple(w.shape)}; expected [n, d] and [n]")
        _check_weights(w, f"group_sets: set {i}")
        # A zero direction has no unit direction: it cannot be active.
        ws.append(torch.where(x.norm(dim=1) > 0, w, 0))
        sets.append(x)
    n_max = max((len(w) for w in ws), default=0)
    d_max = max((x.shape[1] for x in sets), default=0)  # zero-padding the dimension keeps every inner product
    features = torch.full((len(ws), n_max), -1, dtype=torch.int64)
    weight = torch.zeros(len(ws), n_max)
    for i, w in enumerate(ws):
        keep = torch.nonzero(w > 0).squeeze(1)
        features[i, :keep.numel()] = keep
        weight[i, :keep.numel()] = w[keep]
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def rows_of(rows: Tensor, ids: Tensor) -> Tensor:
        out = torch.empty(len(rows), ids.shape[1], d_max, device=dev)
        for q, r in enumerate(rows.tolist()):
            m, d = int((ids[q] >= 0).sum()), sets[r].shape[1]
            out[q, :m, :d] = sets[r].to(dev).index_select(0, ids[q, :m])
            out[q, m:], out[q, :m, d:] = 0.0, 0.0
        return out

    return _group_padded(features, weight, rows_of, config, dev, sets)


def _group_padded_sets(directions: Tensor, weights: Tensor, config: GroupConfig,
                       device: str | torch.device | None) -> BatchGroups:
    """group_sets on a padded batch [N, n, d] with weights [N, n]; contiguous runs of fully active sets are used
    in place."""
    if weights.shape != directions.shape[:2]:
        raise NamesaeError(f"group_sets: directions {tuple(directions.shape)} and weights {tuple(weights.shape)} "
                           f"do not fit; expected [N, n, d] and [N, n]")
    weights = weights.float()
    _check_weights(weights, "group_sets: weights")
    weights = torch.where(directions.norm(dim=2) > 0, weights, 0)  # a zero direction cannot be active
    active = weights > 0
    counts = active.sum(1)
    n = directions.shape[1]
    order = torch.argsort((~active).to(torch.int8), dim=1, stable=True)
    features = torch.where(torch.arange(n)[None, :] < counts[:, None], order, -1)
    weight = torch.where(features >= 0, weights.gather(1, features.clamp_min(0)), 0.0)
    dev = torch.device(device) if device is not None else directions.device

    def rows_of(rows: Tensor, ids: Tensor) -> Tensor:
        m, first = ids.shape[1], int(rows[0])
        if torch.equal(rows, torch.arange(first, first + len(rows))) and \
                bool((ids == torch.arange(m, device=ids.device)).all()):
            return directions[first:first + len(rows), :m].to(dev)
        ids = ids.to(directions.device)
        return (directions[rows[:, None], ids.clamp_min(0)] * (ids >= 0)[..., None]).to(dev)

    return _group_padded(features, weight, rows_of, config, dev, directions)


def group_codes(codes: Any, directions: Any, config: GroupConfig | None = None,
                device: str | torch.device | None = None) -> BatchGroups:
    """Group the active features of every row of SAE codes [N, d_sae] with decoder directions [d_sae, d]
    (store units): unit directions u_j = d_j / |d_j|, weights w_j = f_j * |d_j|."""
    config = config or GroupConfig()
    codes = torch.as_tensor(codes, dtype=torch.float32)
    directions = torch.as_tensor(directions, dtype=torch.float32)
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or directions.ndim != 2 or codes.shape[1] != directions.shape[0]:
        raise NamesaeError(f"group_codes: codes {tuple(codes.shape)} and directions {tuple(directions.shape)} do "
                           f"not fit; expected [rows, d_sae] and [d_sae, d]")
    _check_weights(codes, "group_codes: codes")
    norm = directions.norm(dim=1)
    active = (codes > 0) & (norm > 0)[None, :]
    counts = active.sum(1)
    n_max = int(counts.max()) if len(codes) else 0
    # Active features first in each row, in feature order (stable sort), padded with -1.
    order = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :n_max]
    features = torch.where(torch.arange(n_max)[None, :] < counts[:, None], order, -1)
    weight = torch.where(features >= 0, codes.gather(1, features.clamp_min(0)) * norm[features.clamp_min(0)], 0.0)
    dev = torch.device(device) if device is not None else directions.device
    on_dev = directions.to(dev)

    def rows_of(rows: Tensor, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1)
        picked = on_dev.index_select(0, flat.clamp_min(0)) * (flat >= 0)[:, None]
        return picked.reshape(*ids.shape, -1)

    return _group_padded(features, weight, rows_of, config, dev, directions)


def _group_padded(features: Tensor, weights: Tensor, rows_of: Callable[[Tensor, Tensor], Tensor],
                  config: GroupConfig, dev: torch.device, directions: Tensor | Sequence[Tensor]) -> BatchGroups:
    """Run the Gram path over chunks of embeddings of similar active count; results in input order.

    rows_of(rows, ids) gives the directions [b, n, d] of features ids [b, n] (zero rows for padding -1)."""
    N, K = features.shape[0], config.k_max
    counts = (features >= 0).sum(1)
    out = {"labels_mass": torch.full_like(features, -1), "labels_concepts": torch.full_like(features, -1),
           "k_mass": torch.zeros(N, dtype=torch.int64), "k_concepts": torch.zeros(N, dtype=torch.int64),
           "objective": torch.full((N, K), torch.nan, dtype=torch.float64),
           "min_share": torch.zeros(N, K, dtype=torch.float64),
           "norms_mass": torch.zeros(N, K, dtype=torch.float64),
           "norms_concepts": torch.zeros(N, K, dtype=torch.float64)}
    order = torch.argsort(counts, descending=True, stable=True)
    for lo in range(0, N, config.batch_size):
        rows = order[lo:lo + config.batch_size]
        n = int(counts[rows].max())
        if n == 0:
            continue
        ids = features[rows, :n].to(dev)
        gram = torch.empty(len(rows), n, n, device=dev)
        for q in range(0, len(rows), GRAM_CHUNK):  # the [B, n, d] directions never exist all at once
            gram_matrices(rows_of(rows[q:q + GRAM_CHUNK], ids[q:q + GRAM_CHUNK]), out=gram[q:q + GRAM_CHUNK])
        # Cosines from inner products: divide by the lengths on the diagonal (n^2 work instead of n * d).
        diag = gram.diagonal(dim1=1, dim2=2)
        scale = torch.where(diag > 0, diag.clamp_min(ZERO_NORM**2).rsqrt(), 0.0)
        gram.mul_(scale[:, :, None]).mul_(scale[:, None, :])
        res = _run_chunk(gram, weights[rows, :n].to(dev), config)
        for key, value in res.items():
            if value.ndim == 2 and key.startswith("labels"):
                out[key][rows, :n] = value.cpu()
            else:
                out[key][rows] = value.cpu()
    return BatchGroups(features=features, weights=weights, config=config, directions=directions, **out)
