"""Identity analysis per name: identity features, dedication, composing features, rigidity, attributes, z-scores.

Definitions (DESIGN.md, "The science"); precision and recall as in `namesae.features`, under the configured rule:
- rule "strongest" (default): precision and recall among feature j's strongest firings: walking down j's
  highest activations, after c of them h_c are rows of n; precision = h_c / c, recall = h_c / rows(n), at the best
  prefix c, where the name's median activation in the prefix is at least `min_gap` (1.25) times the median of
  the feature's next c firings. Rank-based, so weak fill (TopK spreads small activations over every code)
  neither dilutes it nor makes it fall as the store grows; the gap refuses features whose strongest firings
  merely lead a smooth tail;
- rule "mass_share" (DESIGN.md's original): precision = mass(j, n) / Σ_n' mass(j, n'), recall = fraction of n's
  rows with f_j > 0;
- identity feature of name n: a feature j with precision(j, n) >= tau_p and recall(j, n) >= tau_r;
- dedicated: n has at least one identity feature; dedication(n) = max_j precision(j, n) · recall(j, n);
- top_features: the features carrying most of n's activation mass (share = mass(j, n) / Σ_j' mass(j', n)),
  with their label, precision and recall; for a compositional name these are the shared features composing it;
- rigidity measures and attribute ladders over n's image rows (`rigidity.py`, `attributes.py`);
- absorption (a full name "First Last" whose part "First" or "Last" is itself a name of the store with an
  identity feature j_p): activation_ratio = mean f_{j_p} over the full name's rows / mean f_{j_p} over the
  part's own rows; fire_ratio = recall(j_p, full name) / recall(j_p, part) (plain firing, f > 0);
  absorption = 1 - min(1, activation_ratio): 1 when the part's feature stops firing on the full name. Reported
  for every such full name; the summary counts dedicated ones (where an identity feature can absorb the part);
- z_<measure> = (value - mean over prior names) / std over prior names (ddof 1), the prior being the model's
  low-bias names; None without a prior or when the prior has fewer than 2 finite values or no spread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesae.errors import ConfigError
from namesae.features import FeatureLabels, FeatureStats, factorize_names, top_k_per_group
from namesae.identity.attributes import LadderEmbeddings, attribute_batch
from namesae.identity.config import IdentityConfig
from namesae.identity.result import IdentityFeature, IdentityRecord, TopFeature
from namesae.identity.rigidity import MEASURES, pairwise_distance_sample, rigidity_batch

if TYPE_CHECKING:
    from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

SCALARS = ("dedication", "part_composition", *MEASURES)
def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def identity_records(stats: FeatureStats, config: IdentityConfig | None = None,
                     labels: FeatureLabels | None = None) -> list[IdentityRecord]:
    """Identity features, dedication and top composing features of every name in the feature statistics."""
    config = config or IdentityConfig()
    labels = labels if labels is not None else stats.labels
    n_names = len(stats.names)
    prec, rec = stats.rule_precision_recall(config.rule, config.tau_p, config.tau_r, config.min_gap)
    mass_prec = stats.pair_precision
    score = prec * rec
    best = top_k_per_group(stats.pair_name, score, 1)
    dedication = np.zeros(n_names)
    dedication[stats.pair_name[best]] = score[best]
    is_identity = (prec >= config.tau_p) & (rec >= config.tau_r)
    ident = np.flatnonzero(is_identity)
    ident = ident[np.lexsort((-score[ident], stats.pair_name[ident]))]
    top = top_k_per_group(stats.pair_name, stats.pair_mass, config.top_features)
    name_mass = stats.name_mass
    n_names_of = np.bincount(stats.pair_feature, minlength=stats.d_sae)

    def label_of(j: int) -> dict[str, Any]:
        return {} if labels is None else {"label": str(labels.label[j]), "label_margin": _finite(labels.margin[j])}

    def identity_feature(p: int) -> IdentityFeature:
        j = int(stats.pair_feature[p])
        return IdentityFeature(j, float(prec[p]), float(rec[p]), float(mass_prec[p]), **label_of(j))

    def top_feature(p: int) -> TopFeature:
        j, total = int(stats.pair_feature[p]), name_mass[stats.pair_name[p]]
        return TopFeature(j, float(stats.pair_mass[p] / total) if total > 0 else 0.0, float(prec[p]), float(rec[p]),
                          float(mass_prec[p]), int(n_names_of[j]), bool(is_identity[p]), **label_of(j))

    ident_by_name: list[list[IdentityFeature]] = [[] for _ in range(n_names)]
    for p in ident:
        ident_by_name[int(stats.pair_name[p])].append(identity_feature(int(p)))
    top_by_name: list[list[TopFeature]] = [[] for _ in range(n_names)]
    for p in top:
        top_by_name[int(stats.pair_name[p])].append(top_feature(int(p)))
    return [IdentityRecord(name=name, n_rows=int(stats.name_rows[i]), dedicated=bool(ident_by_name[i]),
                           dedication=float(dedication[i]), identity_feature_details=tuple(ident_by_name[i]),
                           top_features=tuple(top_by_name[i])) for i, name in enumerate(stats.names)]


def part_absorption(stats: FeatureStats, records: Sequence[IdentityRecord]) -> dict[str, Any]:
    """Fill each full name's `absorption` entries from its parts' identity features; returns the summary."""
    from namesae.identity.composition import split_name

    index = {n: i for i, n in enumerate(stats.names)}
    by_name = {r.name: r for r in records}
    n = max(len(stats.names), 1)
    keys = stats.pair_feature * n + stats.pair_name  # sorted

    def pair(j: int, i: int) -> tuple[float, float]:
        """(mass, count) of feature j on name i."""
        k = j * n + i
        p = int(np.searchsorted(keys, k))
        return (float(stats.pair_mass[p]), float(stats.pair_count[p])) if p < keys.size and keys[p] == k \
            else (0.0, 0.0)

    for rec in records:
        parts = split_name(rec.name)
        rec.absorption = []
        if parts is None:
            continue
        for part in (parts.first, parts.last):
            owner = by_name.get(part)
            if owner is None or not owner.identity_features or part == rec.name:
                continue
            j, i, ip = owner.identity_features[0], index[rec.name], index[part]
            mass, count = pair(j, i)
            pmass, pcount = pair(j, ip)
            own_mean = pmass / max(stats.name_rows[ip], 1)
            ratio = (mass / max(stats.name_rows[i], 1)) / own_mean if own_mean > 0 else None
            fire = (count / max(stats.name_rows[i], 1)) / (pcount / max(stats.name_rows[ip], 1)) if pcount else None
            rec.absorption.append({"part": part, "feature": j, "activation_ratio": ratio, "fire_ratio": fire,
                                   "absorption": None if ratio is None else 1.0 - min(1.0, ratio)})
    dedicated = [a["absorption"] for r in records if r.dedicated for a in r.absorption if a["absorption"] is not None]
    return {"n_dedicated_with_part_feature": len(dedicated),
            "mean_absorption_dedicated": float(np.mean(dedicated)) if dedicated else None,
            "absorbed_share_dedicated": float(np.mean([a >= 0.5 for a in dedicated])) if dedicated else None,
            "n_names_with_part_feature": sum(bool(r.absorption) for r in records)}


@dataclass(frozen=True)
class ImageMeasures:
    """Rigidity measures and attribute summaries of the names that have image rows."""

    measures: dict[str, dict[str, float | None]]  # name -> measure -> value
    attributes: dict[str, dict[str, dict[str, Any]]]  # name -> attribute -> summary
    n_image_rows: dict[str, int]
    sigma: float | None


def image_name_rows(store: EmbeddingStore) -> dict[str, np.ndarray]:
    """Store rows of kind 'image' grouped by name, names in first-appearance order."""
    rows = store.select(kind="image")
    if rows.size == 0:
        return {}
    ids, uniq = factorize_names(store.names[rows])
    order = np.argsort(ids, kind="stable")
    bounds = np.cumsum(np.bincount(ids, minlength=len(uniq)))[:-1]
    return {name: part for name, part in zip(uniq, np.split(rows[order], bounds))}


def _size_batches(name_rows: dict[str, np.ndarray], names: Sequence[str], batch_rows: int
                  ) -> Iterator[tuple[int, list[str]]]:
    """(m, names) batches of names with exactly m rows each, at most max(m, batch_rows) rows per batch."""
    by_size: dict[int, list[str]] = {}
    for name in names:
        by_size.setdefault(len(name_rows[name]), []).append(name)
    for m, group in sorted(by_size.items()):
        per_batch = max(1, batch_rows // max(m, 1))
        for start in range(0, len(group), per_batch):
            yield m, group[start:start + per_batch]


def read_rows_bounded(store: EmbeddingStore, rows: np.ndarray, max_span: int) -> np.ndarray:
    """store.read_rows(rows), read in pieces spanning fewer than max_span store rows each, so that rows scattered
    over the store (names spread evenly, interleaved names) never pull one huge contiguous block into memory."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or int(rows.max()) - int(rows.min()) < max_span:
        return store.read_rows(rows)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((rows.size, store.dim), dtype=np.float32)
    start = 0
    while start < rows.size:
        stop = int(np.searchsorted(ordered, ordered[start] + max_span, side="left"))
        out[order[start:stop]] = store.read_rows(ordered[start:stop])
        start = stop
    return out


def _read_sets(store: EmbeddingStore, name_rows: dict[str, np.ndarray], batch: Sequence[str], m: int,
               max_span: int) -> tuple[np.ndarray, torch.Tensor]:
    """The store rows of a batch of names with m rows each and their embeddings as [len(batch), m, d]."""
    rows = np.concatenate([name_rows[n] for n in batch])
    x = read_rows_bounded(store, rows, max_span)
    return rows, torch.as_tensor(x).reshape(len(batch), m, store.dim)


def choose_sigma(store: EmbeddingStore, name_rows: dict[str, np.ndarray], n_names: int,
                 batch_rows: int = 8192) -> float | None:
    """Median pairwise distance between image rows of the same name, over up to n_names names spread evenly."""
    names = [n for n, r in name_rows.items() if len(r) >= 2]
    if not names:
        return None
    pick = [names[i] for i in np.unique(np.linspace(0, len(names) - 1, min(n_names, len(names))).astype(int))]
    # Names of equal row count are read and measured together (the median does not depend on the order).
    span = 2 * max(batch_rows, store.chunk_rows)
    dists = [pairwise_distance_sample(_read_sets(store, name_rows, batch, m, span)[1])
             for m, batch in _size_batches(name_rows, pick, batch_rows)]
    values = np.concatenate(dists)
    values = values[values > 0]
    return float(np.median(values)) if values.size else None


def image_measures(store: EmbeddingStore, config: IdentityConfig, ladders: Sequence[LadderEmbeddings] = (),
                   names: Sequence[str] | None = None, progress: bool = False) -> ImageMeasures:
    """Rigidity and attributes of every name with image rows in `store` (batched by row count)."""
    from tqdm.auto import tqdm

    name_rows = image_name_rows(store)
    if names is not None:
        wanted = set(names)
        name_rows = {n: r for n, r in name_rows.items() if n in wanted}
    sigma = config.dse_sigma if config.dse_sigma is not None else choose_sigma(store, name_rows,
                                                                                config.sigma_names,
                                                                                config.batch_rows)
    for lad in ladders:
        if lad.embeddings.shape[1] != store.dim:
            raise ConfigError(f"{store.path}: ladder '{lad.ladder.name}' embeddings have dim "
                              f"{lad.embeddings.shape[1]}, the image store {store.dim}; embed them with its encoder")
    measures: dict[str, dict[str, float | None]] = {}
    attributes: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in name_rows}
    total = sum(len(r) for r in name_rows.values())
    with tqdm(total=total, desc="rigidity", unit="row", disable=not progress) as bar:
        span = 2 * max(config.batch_rows, store.chunk_rows)
        for m, batch in _size_batches(name_rows, list(name_rows), config.batch_rows):
            rows, x = _read_sets(store, name_rows, batch, m, span)
            rig = rigidity_batch(x, config.epsilon, sigma if sigma else 1.0, config.dse_t).as_dict()
            if sigma is None:
                rig["dse"] = np.full(len(batch), np.nan)
            columns = {k: v.tolist() for k, v in rig.items()}
            for i, name in enumerate(batch):
                measures[name] = {k: _finite(v[i]) for k, v in columns.items()}
            for lad in ladders:
                for name, summary in zip(batch, attribute_batch(x, lad, config.ladder_scale)):
                    attributes[name][lad.ladder.name] = summary
            bar.update(rows.size)
    return ImageMeasures(measures, attributes, {n: len(r) for n, r in name_rows.items()}, sigma)


def attribute_scalars(attributes: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The z-scored scalars of a name's attributes: <attr>_mean (numeric ladders) and <attr>_std."""
    out: dict[str, float | None] = {}
    for attr, summary in attributes.items():
        if "mean" in summary:
            out[f"{attr}_mean"] = summary["mean"]
        out[f"{attr}_std"] = summary.get("std")
    return out


def add_z_scores(records: Sequence[IdentityRecord], prior_names: Sequence[str]) -> list[str]:
    """Fill each record's z-scores against the prior names; returns the prior names actually used."""
    by_name = {r.name: r for r in records}
    known = [n for n in dict.fromkeys(prior_names) if n in by_name]
    unknown = [n for n in dict.fromkeys(prior_names) if n not in by_name]
    if unknown:
        log.warning("prior: skipping %d name(s) not in the store: %s%s", len(unknown), ", ".join(unknown[:10]),
                    " ..." if len(unknown) > 10 else "")
    if len(known) < 2:
        if prior_names:
            log.warning("prior: %d known name(s); at least 2 are needed for z-scores", len(known))
        return known

    def scalars(rec: IdentityRecord) -> dict[str, float | None]:
        values = {k: getattr(rec, k) for k in SCALARS}
        values.update(attribute_scalars(rec.attributes))
        return values

    table = {r.name: scalars(r) for r in records}
    keys = list(dict.fromkeys(k for values in table.values() for k in values))
    for key in keys:
        prior = np.array([v for n in known if (v := table[n].get(key)) is not None], dtype=float)
        prior = prior[np.isfinite(prior)]
        mean = prior.mean() if prior.size >= 2 else np.nan
        std = prior.std(ddof=1) if prior.size >= 2 else np.nan
        for rec in records:
            value = table[rec.name].get(key)
            ok = value is not None and np.isfinite(std) and std > 0
            rec.z[key] = _finite((value - mean) / std) if ok else None
    return known


def merge_image_measures(records: Sequence[IdentityRecord], image: ImageMeasures | None) -> None:
    """Copy rigidity and attributes into the records (names without image rows keep None)."""
    if image is None:
        return
    for rec in records:
        for key, value in image.measures.get(rec.name, {}).items():
            setattr(rec, key, value)
        rec.attributes = image.attributes.get(rec.name, {})
        rec.n_image_rows = image.n_image_rows.get(rec.name, 0)
