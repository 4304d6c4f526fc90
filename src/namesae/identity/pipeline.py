"""The identity analysis of a store end to end, its output files, and its score against a planted truth."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.features import (
    FeatureConfig,
    FeatureStats,
    compute_feature_stats,
    factorize_names,
    labels_from_store,
    same_encoder,
)
from namesae.identity.analysis import (
    IdentityConfig,
    add_z_scores,
    identity_records,
    image_measures,
    merge_image_measures,
    part_absorption,
)
from namesae.identity.attributes import (
    Ladder,
    LadderEmbeddings,
    embed_ladders,
    ladders_from_rows,
    load_ladders,
)
from namesae.identity.composition import part_compositions
from namesae.identity.result import IdentityRecord, IdentityResult
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)


def text_means(store: EmbeddingStore, progress: bool = False) -> dict[str, np.ndarray]:
    """Mean embedding of each name's text rows (one streaming pass)."""
    from tqdm.auto import tqdm

    rows = store.select(kind="text")
    if rows.size == 0:
        return {}
    ids, uniq = factorize_names(store.names[rows])
    sums = np.zeros((len(uniq), store.dim))
    step = 16384
    for start in tqdm(range(0, rows.size, step), desc="text means", disable=not progress):
        chunk = rows[start:start + step]
        np.add.at(sums, ids[start:start + step], store.read_rows(chunk))
    sums /= np.bincount(ids, minlength=len(uniq))[:, None]
    return {name: sums[i] for i, name in enumerate(uniq)}


def ladder_embeddings(ladders: Sequence[Ladder], image_store: EmbeddingStore,
                      sources: Sequence[EmbeddingStore] = (),
                      encode_text: Callable[[list[str]], Any] | None = None) -> tuple[list[LadderEmbeddings], list[str]]:
    """Ladder prompt embeddings from a text encoder function, else from stores holding the prompts as rows."""
    if encode_text is not None:
        return embed_ladders(ladders, encode_text), []
    remaining = list(ladders)
    found: list[LadderEmbeddings] = []
    for src in sources:
        if not same_encoder(src.space, image_store.space) or src.dim != image_store.dim:
            raise SpaceMismatchError(f"{src.path}: ladder prompts embedded in {src.space!r}, not the image store's "
                                     f"encoder {image_store.space!r}; embed them with the same encoder")
        got, _ = ladders_from_rows(remaining, src.prompts, src.read_rows)
        found.extend(got)
        done = {g.ladder.name for g in got}
        remaining = [lad for lad in remaining if lad.name not in done]
    return found, [lad.name for lad in remaining]


def run_identity(
    sae: Any,
    store: EmbeddingStore,
    config: IdentityConfig | None = None,
    feature_config: FeatureConfig | None = None,
    image_store: EmbeddingStore | None = None,
    text_store: EmbeddingStore | None = None,
    vocab: EmbeddingStore | None = None,
    ladders: Sequence[Ladder] | None = None,
    ladder_store: EmbeddingStore | None = None,
    encode_text: Callable[[list[str]], Any] | None = None,
    prior_names: Sequence[str] = (),
    stats: FeatureStats | None = None,
    progress: bool = False,
) -> IdentityResult:
    """Identity analysis of every name in `store` (the SAE's store): features, rigidity, parts, attributes, z."""
    config = config or IdentityConfig()
    notes: list[str] = []
    if stats is None:
        stats = compute_feature_stats(sae, store, feature_config, progress=progress)
    if vocab is not None and stats.labels is None:
        stats.labels = labels_from_store(sae, vocab, center=(feature_config or FeatureConfig()).label_center)
    records = identity_records(stats, config)
    absorption = part_absorption(stats, records)

    image_store = image_store or store
    image = None
    if image_store.select(kind="image").size == 0:
        notes.append(f"rigidity and attributes unavailable: {image_store.path} has no image rows")
    else:
        ladder_embs: list[LadderEmbeddings] = []
        wanted = load_ladders() if ladders is None else list(ladders)
        sources = [s for s in (ladder_store, text_store, vocab) if s is not None]
        if wanted and (encode_text is not None or sources):
            ladder_embs, missing = ladder_embeddings(wanted, image_store, sources, encode_text)
            if missing:
                notes.append(f"attributes unavailable for ladder(s) {missing}: their prompts are in no given store")
        elif wanted:
            notes.append("attributes unavailable: no ladder store or text encoder given")
        image = image_measures(image_store, config, ladder_embs, names=[r.name for r in records],
                               progress=progress)
        if image.sigma is None:
            notes.append("dse unavailable: no name has two distinct image rows to set sigma")
        short = [r.name for r in records if image.n_image_rows.get(r.name, 0) < 2]
        if short:
            notes.append(f"rigidity unavailable for {len(short)} name(s) with fewer than 2 image rows")
    merge_image_measures(records, image)

    text_store = text_store or (store if store.select(kind="text").size else None)
    if text_store is None:
        notes.append("part_composition unavailable: no text rows (pass a text store)")
    else:
        means = text_means(text_store, progress)
        template = means.get(config.template_name)
        if template is None:
            notes.append(f"part_composition without a template: no text rows named {config.template_name!r}")
        comp = part_compositions([r.name for r in records], means.get, template)
        for rec in records:
            rec.part_composition = comp.get(rec.name)

    used = add_z_scores(records, prior_names)
    for note in notes:
        log.info("identity: %s", note)
    return IdentityResult(records, config, notes, image.sigma if image else None, used, absorption)


def load_prior_names(path: str | Path) -> list[str]:
    """Prior (low-bias) names from a text file (one per line, # comments) or a JSON list of names."""
    path = Path(path)
    if not path.is_file():
        raise NamesaeError(f"{path}: prior names file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise NamesaeError(f"{path}: invalid JSON ({err})") from None
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise NamesaeError(f"{path}: expected a JSON list of names")
        return data
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _clean(value: Any) -> Any:
    """NaN/inf as None, recursively (JSON has no NaN)."""
    kind = type(value)
    if kind is dict:
        return {k: _clean(v) for k, v in value.items()}
    if kind is list:
        return [_clean(v) for v in value]
    if kind is float or isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _truth_table(truth: Any) -> dict[str, dict[str, Any]]:
    if isinstance(truth, Mapping) and isinstance(truth.get("names"), list):
        return {str(t["name"]): t for t in truth["names"]}
    if isinstance(truth, Mapping) and isinstance(truth.get("names"), Mapping):
        return {str(k): dict(v) for k, v in truth["names"].items()}
    if isinstance(truth, list):
        return {str(t["name"]): t for t in truth}
    raise NamesaeError("truth: expected {'names': [...]} or a list of records with 'name'")


def score_identity(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any,
                   rigidity_measure: str = "cos_mean", rigidity_key: str = "rigidity") -> dict[str, Any]:
    """Dedicated-name detection precision/recall/F1 and the Spearman correlation of rigidity with the truth."""
    from scipy.stats import rankdata, spearmanr

    table = _truth_table(truth)
    recs = [r.to_dict() if isinstance(r, IdentityRecord) else dict(r) for r in records]
    recs = [r for r in recs if r["name"] in table]
    pred = np.array([bool(r["dedicated"]) for r in recs])
    true = np.array([bool(table[r["name"]].get("dedicated")) for r in recs])
    tp = int((pred & true).sum())
    precision = tp / pred.sum() if pred.sum() else float("nan")
    recall = tp / true.sum() if true.sum() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    out: dict[str, Any] = {"n_names": len(recs), "n_true_dedicated": int(true.sum()),
                           "n_pred_dedicated": int(pred.sum()), "precision": precision, "recall": recall, "f1": f1}
    # Threshold-free: the chance that a dedicated name has a higher dedication than a compositional one.
    dedication = np.array([float(r.get("dedication") or 0.0) for r in recs])
    if 0 < true.sum() < true.size:
        ranks = rankdata(dedication)
        n_pos, n_neg = int(true.sum()), int((~true).sum())
        out["dedication_auc"] = float((ranks[true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        out["dedication_auc"] = float("nan")
    per_measure = {}
    for measure in ("trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse"):
        pairs = [(r.get(measure), table[r["name"]].get(rigidity_key)) for r in recs]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None and np.isfinite(a)]
        per_measure[measure] = float(spearmanr(*zip(*pairs)).statistic) if len(pairs) >= 3 else float("nan")
    out["rigidity_measure"] = rigidity_measure
    out["rigidity_spearman"] = per_measure.get(rigidity_measure, float("nan"))
    out["rigidity_spearman_by_measure"] = per_measure
    return _clean(out)


def score_absorption(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any) -> dict[str, Any]:
    """Absorption against the planted truth (`carried_parts`): does the measured part activation see which full
    names carry a dedicated part's direction, and how much of it do dedicated full names absorb.

    - absorption_carry_auc: over compositional full names with a measured part, the chance that a carried part
      has a higher activation_ratio than a part that is only shared by name (1 = the measure reads the truth);
    - absorption_coverage: share of planted (full name, dedicated part) pairs that got a measurement (the part
      was found to own an identity feature);
    - mean_absorption_carried_dedicated / _compositional: mean absorption of carried parts in dedicated and in
      compositional full names (the SAE absorbs when the first is well above the second)."""
    table = _truth_table(truth)
    recs = [r.to_dict() if isinstance(r, IdentityRecord) else dict(r) for r in records]
    planted = sum(len(t.get("part_owner") or []) for t in table.values() if t.get("kind") == "full")
    measured, carried_ded, carried_comp, pos, neg = 0, [], [], [], []
    for rec in recs:
        t = table.get(rec["name"])
        if t is None or t.get("kind") != "full":
            continue
        carried = set(t.get("carried_parts") or [])
        owners = set(t.get("part_owner") or [])
        for a in rec.get("absorption") or []:
            if a["part"] not in owners or a.get("activation_ratio") is None:
                continue
            measured += 1
            if t.get("dedicated"):
                if a["part"] in carried:
                    carried_ded.append(a["absorption"])
                continue
            (pos if a["part"] in carried else neg).append(a["activation_ratio"])
            if a["part"] in carried:
                carried_comp.append(a["absorption"])
    auc = float("nan")
    if pos and neg:
        p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
        auc = float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))
    return _clean({"n_planted_pairs": planted, "n_measured_pairs": measured,
                   "absorption_coverage": measured / planted if planted else float("nan"),
                   "absorption_carry_auc": auc,
                   "mean_absorption_carried_dedicated": float(np.mean(carried_ded)) if carried_ded else float("nan"),
                   "mean_absorption_carried_compositional": float(np.mean(carried_comp)) if carried_comp
                   else float("nan")})


def add_seed_stability(result: IdentityResult, reference: Any, others: Sequence[Any], store: EmbeddingStore,
                       feature_config: FeatureConfig | None = None, progress: bool = False) -> dict[str, Any]:
    """Identity verdicts of the same store under SAEs of other seeds, matched to the reference SAE's features;
    fills each record's `seed_stability` and the result's summary, and returns the summary."""
    from namesae.identity.stability import seed_stability, verdicts_of

    verdicts = [verdicts_of(result.records)]
    directions = [np.asarray(reference.decoder_directions())]
    for sae in others:
        stats = compute_feature_stats(sae, store, feature_config, progress=progress)
        verdicts.append(verdicts_of(identity_records(stats, result.config)))
        directions.append(np.asarray(sae.decoder_directions()))
    stability = seed_stability(verdicts, directions)
    for rec in result.records:
        rec.seed_stability = stability.per_name.get(rec.name)
    result.seed_stability = stability.summary
    return stability.summary


def score_seed_stability(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any) -> dict[str, Any]:
    """Seed stability against the planted truth: planted dedicated names found dedicated by every SAE, planted
    compositional names found by none, and the matched identity features' decoder cosine for planted dedicated
    names."""
    table = _truth_table(truth)
    recs = [r.to_dict() if isinstance(r, IdentityRecord) else dict(r) for r in records]
    ded_all, comp_none, cos = [], [], []
    for rec in recs:
        t, st = table.get(rec["name"]), rec.get("seed_stability")
        if t is None or not st:
            continue
        if t.get("dedicated"):
            ded_all.append(all(st["dedicated"]))
            if st.get("matched_cosine") is not None:
                cos.append(st["matched_cosine"])
        else:
            comp_none.append(not any(st["dedicated"]))
    return _clean({"dedicated_in_every_seed": float(np.mean(ded_all)) if ded_all else float("nan"),
                   "compositional_in_no_seed": float(np.mean(comp_none)) if comp_none else float("nan"),
                   "dedicated_matched_cosine": float(np.mean(cos)) if cos else float("nan")})
