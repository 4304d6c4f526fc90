"""What a report page shows, computed from a run's records: feature titles, picture grids, readable attributes,
the name basis, steering results. Pure functions of dicts, so each is tested without a browser."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LABEL_MARGIN = 0.05
"""A vocabulary label is shown as the feature's title only when its cosine beats the runner-up by this much."""
LABEL_COSINE = 0.3
"""... and when its cosine with the feature's decoder direction is at least this."""


@dataclass(frozen=True)
class Title:
    """A feature's title and the line that justifies it."""

    text: str
    detail: str
    kind: str  # identity | label | unlabelled | none


def identity_owners(identity: Sequence[Mapping[str, Any]]) -> dict[int, list[str]]:
    """feature id -> the names it is an identity feature of."""
    owners: dict[int, list[str]] = {}
    for rec in identity:
        for item in rec.get("identity_features") or []:
            fid = item.get("feature") if isinstance(item, Mapping) else item
            if isinstance(fid, (int, np.integer)) and not isinstance(fid, bool):
                owners.setdefault(int(fid), []).append(str(rec.get("name")))
    return owners


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) \
        else None


def feature_title(feat: Mapping[str, Any], owners: Sequence[str], margin: float = LABEL_MARGIN,
                  cosine: float = LABEL_COSINE) -> Title:
    """'identity: NAME' for an identity feature, its label when the label is clear, else 'unlabelled (nearest)'."""
    if owners:
        return Title("identity: " + ", ".join(owners), "an identity feature (precision >= tau_p, recall >= tau_r)",
                     "identity")
    label, cos, gap = feat.get("label"), _num(feat.get("label_cosine")), _num(feat.get("label_margin"))
    if not label:
        return Title("unlabelled", "no vocabulary was given to label features", "none")
    numbers = f"cosine {cos:.2f}" if cos is not None else "cosine n/a"
    numbers += f", margin {gap:.2f}" if gap is not None else ""
    if cos is not None and cos >= cosine and (gap is None or gap >= margin):
        return Title(str(label), numbers, "label")
    return Title(f"unlabelled (nearest: {label})", f"{numbers}; below the label threshold (cosine >= {cosine}, "
                 f"margin >= {margin})", "unlabelled")


def rounded(value: Any, digits: int = 3) -> str:
    """A number for people: 3 significant digits, no exponent for ordinary sizes; '—' for missing."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) >= 10000 else str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return "—"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:,.{max(digits - len(str(int(abs(v)))), 0)}f}"
        return f"{v:.2e}"
    return str(value)


def attribute_rows(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Attributes as rows a person reads: the value (mode or mean ± std) and the probabilities in percent."""
    rows = []
    for attr, value in attributes.items():
        if not isinstance(value, Mapping):
            rows.append({"attribute": attr, "value": rounded(value), "spread": "", "probabilities": []})
            continue
        probs = sorted(((k[2:], float(v)) for k, v in value.items() if k.startswith("p_") and _num(v) is not None),
                       key=lambda kv: -kv[1])
        if "mode" in value:
            shown = str(value["mode"])
            if probs:
                shown += f" ({probs[0][1] * 100:.0f}%)"
        elif "mean" in value:
            shown = rounded(_num(value.get("mean")), 3)
        else:
            shown = "—"
        std = _num(value.get("std"))
        rows.append({"attribute": attr.replace("_", " "), "value": shown,
                     "spread": "" if std is None else f"std {rounded(std, 2)}",
                     "probabilities": [(k, f"{p * 100:.0f}%") for k, p in probs if p >= 0.01]})
    return rows


def basis_entries(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A name's basis paintings: the composed prompt, its terms and how close it comes."""
    out = []
    for e in entries:
        terms = e.get("terms")
        if isinstance(terms, list):
            terms = [t.get("term", t) if isinstance(t, Mapping) else t for t in terms]
        elif isinstance(e.get("own_parts_top3"), list):
            terms = e["own_parts_top3"]
        out.append({"prompt": e.get("prompt"), "terms": [str(t) for t in terms or []],
                    "measures": [(k, e.get(k)) for k in ("cosine", "reencoded_cosine", "centered_cosine",
                                                         "reencoded_centered_cosine", "parts_recall_top3")
                                 if _num(e.get(k)) is not None]})
    return out


def edit_text(edits: Sequence[Any]) -> list[str]:
    """Each steering edit as one readable line ("zero features 12, 40")."""
    lines = []
    for e in edits:
        if not isinstance(e, Mapping):
            lines.append(str(e))
            continue
        target = (f"feature {e['feature']}" if "feature" in e else
                  "features " + ", ".join(map(str, e["features"])) if "features" in e else
                  f"group {e['group']}" if "group" in e else "all features")
        amount = next((f"{k} {e[k]}" for k in ("value", "amount", "factor", "alpha") if k in e), "")
        lines.append(" ".join(p for p in (str(e.get("op", "?")), target, amount) if p))
    return lines
