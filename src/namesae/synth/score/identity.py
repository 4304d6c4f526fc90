"""The identity analysis scored against a synthetic world's planted truth: dedicated-name detection, rigidity,
absorption of name parts and seed stability.

`truth` is truth.json's content (`namesae.synth.load_truth`), a {'names': {name: record}} mapping or a list of
records; `records` are `IdentityRecord`s or their dicts (identity.json's `names`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from namesae.identity import IdentityRecord
from namesae.io import json_ready
from namesae.synth.score.world import truth_table


def score_identity(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any,
                   rigidity_measure: str = "cos_mean", rigidity_key: str = "rigidity") -> dict[str, Any]:
    """Dedicated-name detection precision/recall/F1 and the Spearman correlation of rigidity with the truth."""
    from scipy.stats import rankdata, spearmanr

    table = truth_table(truth)
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
    return json_ready(out)


def score_absorption(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any) -> dict[str, Any]:
    """Absorption against the planted truth (`carried_parts`): does the measured part activation see which full
    names carry a dedicated part's direction, and how much of it do dedicated full names absorb.

    - absorption_carry_auc: over compositional full names with a measured part, the chance that a carried part
      has a higher activation_ratio than a part that is only shared by name (1 = the measure reads the truth);
    - absorption_coverage: share of planted (full name, dedicated part) pairs that got a measurement (the part
      was found to own an identity feature);
    - mean_absorption_carried_dedicated / _compositional: mean absorption of carried parts in dedicated and in
      compositional full names (the SAE absorbs when the first is well above the second)."""
    table = truth_table(truth)
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
    return json_ready({"n_planted_pairs": planted, "n_measured_pairs": measured,
                   "absorption_coverage": measured / planted if planted else float("nan"),
                   "absorption_carry_auc": auc,
                   "mean_absorption_carried_dedicated": float(np.mean(carried_ded)) if carried_ded else float("nan"),
                   "mean_absorption_carried_compositional": float(np.mean(carried_comp)) if carried_comp
                   else float("nan")})


def score_seed_stability(records: Sequence[IdentityRecord | Mapping[str, Any]], truth: Any) -> dict[str, Any]:
    """Seed stability against the planted truth: planted dedicated names found dedicated by every SAE, planted
    compositional names found by none, and the matched identity features' decoder cosine for planted dedicated
    names."""
    table = truth_table(truth)
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
    return json_ready({"dedicated_in_every_seed": float(np.mean(ded_all)) if ded_all else float("nan"),
                   "compositional_in_no_seed": float(np.mean(comp_none)) if comp_none else float("nan"),
                   "dedicated_matched_cosine": float(np.mean(cos)) if cos else float("nan")})
