"""What is measured at one point of a series, within that point's SAE: dedication and the phase measures.

Per name n at one point (an SAE and its store; definitions of precision, recall, identity feature and dedication
as in `namesae.features` / `namesae.identity`):
- dedication, dedicated, identity features, best feature j* = argmax_j precision(j, n)·recall(j, n);
- scenario_coverage: share of n's scenario prompts (distinct prompts of its rows) on whose rows its best identity
  feature fires with recall >= tau_r (None for a name with no identity feature);
- scenario_agreement: chance-corrected share of n's image rows whose closest text embedding (cosine) among the
  text rows of n's own prompts is the row's own prompt: (a - 1/k) / (1 - 1/k) for k prompts (None with k < 2 or
  without text rows of those prompts);
- cross_scenario_cos / same_scenario_cos: mean cosine between n's image rows of different prompts / of the same
  prompt; scenario_cos_ratio = cross / same (None without two rows of one prompt);
- attribute_std: mean over attribute ladders of n's std / the median std of the reference names (prior names
  when given, else every name at the point) — `namesae.identity` ladders and image measures;
- attribute_consistency: mean over attribute ladders of the share of n's image rows whose zero-shot ladder value
  (argmax cosine to the ladder prompts) is n's most common one: 1 = the same look in every generation. A more
  robust read of "coarse attributes stable" than the std (measured on synthetic worlds: it separates phases 1 and
  2 better), used by the phase rule by default;
- part_composition: `namesae.identity` name-part composition in the text store (None for single-token names).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.features import (
    FeatureAccumulator,
    FeatureConfig,
    FeatureStats,
    batch_rows_for,
    factorize_names,
    largest_name,
    top_k_per_group,
)
from namesae.identity import IdentityConfig, identity_records
from namesae.sae.codes import iter_codes

if TYPE_CHECKING:
    from namesae.sae.model import TrainedSAE
    from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass
class GroupedStats:
    """Feature statistics per (name, prompt) group and collapsed per name, from one encoding pass."""

    groups: FeatureStats  # names = group keys; pair_name indexes groups
    by_name: FeatureStats  # pair_name indexes names
    group_name: np.ndarray  # int64 [G] name index of each group
    names: list[str]  # [N]


def _group_keys(names: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Group id of each row (distinct (name, prompt), ordered by name), each group's name id, the distinct names."""
    name_ids, uniq_names = factorize_names(names)
    prompt_ids, uniq_prompts = factorize_names(prompts)
    keys = name_ids * max(len(uniq_prompts), 1) + prompt_ids
    uniq_keys, inverse = np.unique(keys, return_inverse=True)
    return inverse.astype(np.int64), (uniq_keys // max(len(uniq_prompts), 1)).astype(np.int64), uniq_names


def collapse_groups(groups: FeatureStats, group_name: np.ndarray, names: Sequence[str]) -> FeatureStats:
    """Per-name feature statistics from per-group ones: mass and firing counts summed over each name's groups."""
    n = len(names)
    keys = groups.pair_feature * n + group_name[groups.pair_name]
    uniq, inverse = np.unique(keys, return_inverse=True)
    # astype: bincount of an empty input (no feature ever fires) returns int64 even with weights.
    mass = np.bincount(inverse, weights=groups.pair_mass, minlength=uniq.size).astype(np.float64)
    count = np.bincount(inverse, weights=groups.pair_count, minlength=uniq.size).astype(np.int64)
    name_rows = np.bincount(group_name, weights=groups.name_rows, minlength=n).astype(np.int64)
    return FeatureStats(
        names=list(names), name_rows=name_rows, d_sae=groups.d_sae, n_rows=groups.n_rows,
        fire_count=groups.fire_count, act_sum=groups.act_sum, act_max=groups.act_max,
        pair_feature=uniq // n, pair_name=uniq % n, pair_mass=mass, pair_count=count,
        top_feature=groups.top_feature, top_row=groups.top_row, top_value=groups.top_value,
        sample_feature=groups.sample_feature, sample_value=groups.sample_value, row_index=groups.row_index,
        config=groups.config, rank_feature=groups.rank_feature,
        rank_name=None if groups.rank_name is None else group_name[groups.rank_name],
        rank_value=groups.rank_value)


def grouped_stats_from_codes(codes: Any, names: Sequence[str], prompts: Sequence[str]) -> GroupedStats:
    """GroupedStats of a code matrix [rows, d_sae] with each row's name and prompt (small inputs, tests)."""
    group_ids, group_name, uniq = _group_keys(np.asarray(names, dtype=object).astype(str),
                                              np.asarray(prompts, dtype=object).astype(str))
    cfg = FeatureConfig(top_rows=0, histogram_samples=0)
    acc = FeatureAccumulator(np.shape(codes)[1], int(group_name.size), cfg,
                             rank_rows=largest_name(group_name[group_ids]))
    acc.update(codes, group_ids, 0)
    groups = acc.result([str(g) for g in range(group_name.size)], np.bincount(group_ids, minlength=group_name.size))
    return GroupedStats(groups, collapse_groups(groups, group_name, uniq), group_name, uniq)


def grouped_stats(sae: TrainedSAE, store: EmbeddingStore, kind: str | None, batch_rows: int,
                  progress: bool = False) -> GroupedStats:
    """Encode a store's rows (optionally of one kind) and accumulate feature statistics per (name, prompt)."""
    rows = store.select(kind=kind) if kind else np.arange(len(store), dtype=np.int64)
    if rows.size == 0:
        raise NamesaeError(f"{store.path}: no rows" + (f" of kind '{kind}'" if kind else "") + " to measure")
    group_ids, group_name, uniq = _group_keys(store.names[rows].astype(str), store.prompts[rows].astype(str))
    cfg = FeatureConfig(top_rows=0, histogram_samples=0, batch_rows=batch_rows)
    d_sae = int(sae.d_sae)
    acc = FeatureAccumulator(d_sae, int(group_name.size), cfg, rank_rows=largest_name(group_name[group_ids]))
    for offset, _, codes in iter_codes(sae, store, rows, batch_rows_for(d_sae, cfg), progress, "encode"):
        acc.update(codes, group_ids[offset:offset + codes.shape[0]], offset)
    groups = acc.result([str(g) for g in range(group_name.size)], np.bincount(group_ids, minlength=group_name.size),
                        row_index=rows)
    return GroupedStats(groups, collapse_groups(groups, group_name, uniq), group_name, uniq)


@dataclass(frozen=True)
class NameFeatures:
    """Dedication of every name at one point and the features behind it."""

    names: list[str]
    dedicated: np.ndarray  # bool [N]
    dedication: np.ndarray  # float64 [N]
    best_feature: np.ndarray  # int64 [N], -1 for a name on which no feature fires
    best_precision: np.ndarray  # float64 [N]
    best_recall: np.ndarray  # float64 [N]
    identity_feature: np.ndarray  # int64 [N] best identity feature, -1 for none
    n_identity_features: np.ndarray  # int64 [N]
    scenario_coverage: np.ndarray  # float64 [N], nan for names without an identity feature
    n_scenarios: np.ndarray  # int64 [N] distinct prompts of each name

    def index(self) -> dict[str, int]:
        """Position of every name."""
        return {n: i for i, n in enumerate(self.names)}


def name_features(grouped: GroupedStats, tau_p: float, tau_r: float, rule: str = "strongest",
                  min_gap: float = 1.25) -> NameFeatures:
    """Dedication, best and identity features, and the identity feature's scenario coverage of every name."""
    stats = grouped.by_name
    n = len(grouped.names)
    records = identity_records(stats, IdentityConfig(tau_p=tau_p, tau_r=tau_r, rule=rule, min_gap=min_gap,
                                                      top_features=1))
    prec, rec = stats.rule_precision_recall(rule, tau_p, tau_r, min_gap)
    best = top_k_per_group(stats.pair_name, prec * rec, 1)
    best_feature = np.full(n, -1, dtype=np.int64)
    best_precision, best_recall = np.zeros(n), np.zeros(n)
    best_feature[stats.pair_name[best]] = stats.pair_feature[best]
    best_precision[stats.pair_name[best]] = prec[best]
    best_recall[stats.pair_name[best]] = rec[best]
    identity_feature = np.array([r.identity_features[0] if r.identity_features else -1 for r in records],
                                dtype=np.int64)
    coverage = scenario_coverage(grouped, identity_feature, tau_r)
    return NameFeatures(
        names=list(grouped.names), dedicated=np.array([r.dedicated for r in records], dtype=bool),
        dedication=np.array([r.dedication for r in records]), best_feature=best_feature,
        best_precision=best_precision, best_recall=best_recall, identity_feature=identity_feature,
        n_identity_features=np.array([len(r.identity_features) for r in records], dtype=np.int64),
        scenario_coverage=coverage, n_scenarios=np.bincount(grouped.group_name, minlength=n).astype(np.int64))


def scenario_coverage(grouped: GroupedStats, feature_of_name: np.ndarray, tau_r: float) -> np.ndarray:
    """Share of each name's prompts on whose rows its given feature fires with recall >= tau_r (nan: no feature)."""
    groups = grouped.groups
    n = len(grouped.names)
    wanted = feature_of_name[grouped.group_name[groups.pair_name]]
    hit = (groups.pair_feature == wanted) & (wanted >= 0) & (groups.pair_recall >= tau_r)
    covered = np.bincount(grouped.group_name[groups.pair_name[hit]], minlength=n)
    total = np.bincount(grouped.group_name, minlength=n)
    out = np.divide(covered, total, out=np.full(n, np.nan), where=total > 0)
    out[feature_of_name < 0] = np.nan
    return out


@dataclass(frozen=True)
class ScenarioMeasures:
    """Whether a name's images follow their prompt's scenario."""

    agreement: float | None
    cross_cos: float | None
    same_cos: float | None
    ratio: float | None
    n_prompts: int


def scenario_measures(x: np.ndarray, prompts: Sequence[str], text: dict[str, np.ndarray]) -> ScenarioMeasures:
    """Scenario agreement and cross/same-prompt cosines of one name's image rows x [m, d] (module docstring)."""
    prompts = np.asarray(prompts, dtype=object).astype(str)
    uniq = list(dict.fromkeys(prompts.tolist()))
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    g = unit @ unit.T
    same = prompts[:, None] == prompts[None, :]
    off = ~np.eye(len(prompts), dtype=bool)
    cross_pairs, same_pairs = g[~same], g[same & off]
    cross = float(cross_pairs.mean()) if cross_pairs.size else None
    within = float(same_pairs.mean()) if same_pairs.size else None
    ratio = cross / within if cross is not None and within is not None and within > 0 else None
    agreement = None
    known = [p for p in uniq if p in text]
    if len(known) >= 2:
        keep = np.isin(prompts, known)
        e = np.stack([text[p] for p in known])
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        pred = np.asarray(known, dtype=object)[(unit[keep] @ e.T).argmax(axis=1)]
        k = len(known)
        acc = float((pred == prompts[keep]).mean())
        agreement = (acc - 1.0 / k) / (1.0 - 1.0 / k)
    return ScenarioMeasures(agreement, cross, within, ratio, len(uniq))


def attribute_consistency(x: np.ndarray, ladders: Sequence[Any]) -> float | None:
    """Mean over ladders of the share of rows x [m, d] showing their most common ladder value (None: no ladder)."""
    if not ladders or len(x) == 0:
        return None
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    shares = []
    for lad in ladders:
        emb = np.asarray(lad.embeddings, dtype=np.float64)  # [V, d] unit rows
        values = (unit @ emb.T).argmax(axis=1)
        shares.append(np.bincount(values).max() / len(values))
    return float(np.mean(shares))


def text_by_prompt(store: EmbeddingStore) -> dict[str, np.ndarray]:
    """Mean embedding of the text rows of each distinct prompt."""
    rows = store.select(kind="text")
    if rows.size == 0:
        return {}
    ids, uniq = factorize_names(store.prompts[rows])
    sums = np.zeros((len(uniq), store.dim))
    for start in range(0, rows.size, 16384):
        np.add.at(sums, ids[start:start + 16384], store.read_rows(rows[start:start + 16384]))
    sums /= np.bincount(ids, minlength=len(uniq))[:, None]
    return {p: sums[i] for i, p in enumerate(uniq)}


def all_scenario_measures(image: EmbeddingStore, text: dict[str, np.ndarray], names: Sequence[str] | None = None,
                          ladders: Sequence[Any] = (), max_rows: int = 65536
                          ) -> tuple[dict[str, ScenarioMeasures], dict[str, float | None]]:
    """Scenario measures and attribute consistency of every name with image rows (optionally only `names`)."""
    from namesae.features import iter_name_batches
    from namesae.identity.analysis import image_name_rows

    name_rows = image_name_rows(image)
    if names is not None:
        wanted = set(names)
        name_rows = {n: r for n, r in name_rows.items() if n in wanted}
    prompts = image.prompts
    out: dict[str, ScenarioMeasures] = {}
    consistency: dict[str, float | None] = {}
    for batch in iter_name_batches(name_rows, max_rows):
        rows = np.concatenate([name_rows[n] for n in batch])
        x = image.read_rows(rows).astype(np.float64)
        pos = 0
        for name in batch:
            r = name_rows[name]
            out[name] = scenario_measures(x[pos:pos + len(r)], prompts[r], text)
            consistency[name] = attribute_consistency(x[pos:pos + len(r)], ladders)
            pos += len(r)
    return out, consistency


def relative_attribute_std(attributes: dict[str, dict[str, dict[str, Any]]], reference: Sequence[str]
                           ) -> tuple[dict[str, float | None], list[str]]:
    """Mean over ladders of each name's attribute std / the median std of the reference names, and ladders used."""
    ladders = list(dict.fromkeys(lad for per in attributes.values() for lad in per))
    scale = {}
    for lad in ladders:
        ref = np.array([attributes[n][lad]["std"] for n in reference
                        if n in attributes and lad in attributes[n] and attributes[n][lad].get("std") is not None])
        ref = ref[np.isfinite(ref)] if ref.size else ref
        if ref.size >= 2 and np.median(ref) > 0:
            scale[lad] = float(np.median(ref))
    out: dict[str, float | None] = {}
    for name, per in attributes.items():
        values = [per[lad]["std"] / scale[lad] for lad in scale
                  if lad in per and per[lad].get("std") is not None and math.isfinite(per[lad]["std"])]
        out[name] = float(np.mean(values)) if values else None
    return out, list(scale)


@dataclass
class PhaseInputs:
    """Store-side phase measures of one point (everything but the SAE's), per name; notes say what is missing."""

    scenario: dict[str, ScenarioMeasures] = field(default_factory=dict)
    attribute_std: dict[str, float | None] = field(default_factory=dict)
    attribute_consistency: dict[str, float | None] = field(default_factory=dict)
    part_composition: dict[str, float | None] = field(default_factory=dict)
    ladders: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def phase_inputs(image: EmbeddingStore | None, text: EmbeddingStore | None, ladder_sources: Sequence[EmbeddingStore],
                 names: Sequence[str], prior_names: Sequence[str], ladder_scale: float, template_name: str,
                 progress: bool = False) -> PhaseInputs:
    """Scenario measures, relative attribute std and name-part composition of `names` at one point."""
    from namesae.identity import image_measures, load_ladders, part_compositions
    from namesae.identity.pipeline import ladder_embeddings, text_means

    out = PhaseInputs()
    if image is None or image.select(kind="image").size == 0:
        out.notes.append("no image rows: scenario and attribute measures unavailable (phases undecided)")
    else:
        prompts = text_by_prompt(text) if text is not None else {}
        if not prompts:
            out.notes.append("no text store with the image prompts: scenario_agreement unavailable")
        sources = [s for s in ladder_sources if s is not None]
        ladders, missing = ladder_embeddings(load_ladders(), image, sources) if sources else ([], ["all"])
        if missing:
            out.notes.append(f"attribute ladders without prompt rows in the given stores: {missing}")
        out.scenario, out.attribute_consistency = all_scenario_measures(image, prompts, names, ladders)
        if ladders:
            cfg = IdentityConfig(ladder_scale=ladder_scale, dse_sigma=1.0)
            measured = image_measures(image, cfg, ladders, names=names, progress=progress)
            known = set(measured.attributes)
            reference = [n for n in prior_names if n in known]
            if len(reference) < 2:
                if prior_names:
                    out.notes.append(f"only {len(reference)} prior name(s) at this point: attribute_std is "
                                     "relative to every name")
                reference = list(known)
            out.attribute_std, out.ladders = relative_attribute_std(measured.attributes, reference)
        else:
            out.notes.append("no attribute ladders: attribute_std unavailable")
    if text is not None and text.select(kind="text").size:
        means = text_means(text)
        out.part_composition = part_compositions(list(names), means.get, means.get(template_name))
    else:
        out.notes.append("no text rows: part_composition unavailable")
    return out
