"""Assemble per-point measurements into per-name series: dedication curve, emergence index, change point, phases."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from namesae.emergence.config import EmergenceConfig, emergence_config_from_dict, emergence_config_to_dict
from namesae.emergence.curves import ChangePoint, PhaseDecision, change_point, decide_phase, emergence_index
from namesae.emergence.measures import GroupedStats, NameFeatures, PhaseInputs, name_features
from namesae.errors import NamesaeError
from namesae.io import check_fields, read_json, require_format


@dataclass
class PointMeasurement:
    """Everything measured at one point of the series, per name, with the point's description."""

    index: int
    label: str
    value: float
    features: NameFeatures
    decisions: dict[str, PhaseDecision]
    records: dict[str, dict[str, Any]]
    """Per name: dedication, dedicated, best/identity feature, phase measures, phase, reasons, missing."""
    info: dict[str, Any] = field(default_factory=dict)
    """store, sae, space, d_in, d_sae, n_rows, ladders, notes."""


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def measure_point(index: int, label: str, value: float, grouped: GroupedStats, inputs: PhaseInputs,
                  config: EmergenceConfig, info: Mapping[str, Any] | None = None) -> PointMeasurement:
    """Dedication and phase of every name at one point from its grouped feature statistics and phase inputs."""
    feats = name_features(grouped, config.tau_p, config.tau_r, config.rule, config.min_gap)
    decisions: dict[str, PhaseDecision] = {}
    records: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(feats.names):
        sc = inputs.scenario.get(name)
        measures = {
            "dedicated": bool(feats.dedicated[i]), "dedication": float(feats.dedication[i]),
            "scenario_coverage": _opt(feats.scenario_coverage[i]),
            "scenario_agreement": _opt(sc.agreement) if sc else None,
            "scenario_cos_ratio": _opt(sc.ratio) if sc else None,
            "cross_scenario_cos": _opt(sc.cross_cos) if sc else None,
            "same_scenario_cos": _opt(sc.same_cos) if sc else None,
            "attribute_consistency": _opt(inputs.attribute_consistency.get(name)),
            "attribute_std": _opt(inputs.attribute_std.get(name)),
            "part_composition": _opt(inputs.part_composition.get(name)),
        }
        decision = decide_phase(measures, config.phases)
        decisions[name] = decision
        records[name] = {
            **measures,
            "best_feature": int(feats.best_feature[i]) if feats.best_feature[i] >= 0 else None,
            "best_precision": float(feats.best_precision[i]), "best_recall": float(feats.best_recall[i]),
            "identity_feature": int(feats.identity_feature[i]) if feats.identity_feature[i] >= 0 else None,
            "n_identity_features": int(feats.n_identity_features[i]), "n_scenarios": int(feats.n_scenarios[i]),
            "phase": decision.phase, "reasons": decision.reasons, "missing": decision.missing,
        }
    info = dict(info or {})
    info.setdefault("notes", [])
    info["notes"] = list(info["notes"]) + list(inputs.notes)
    info["ladders"] = list(inputs.ladders)
    info["n_names"] = len(feats.names)
    info["n_dedicated"] = int(feats.dedicated.sum())
    return PointMeasurement(index, label, float(value), feats, decisions, records, info)


@dataclass
class NameSeries:
    """One name across the series."""

    name: str
    present: list[bool]
    dedication: list[float | None]
    dedicated: list[bool | None]
    phase: list[int | None]
    points: list[dict[str, Any] | None]
    """The name's record at each point (None where the point's store lacks the name)."""
    links: list[dict[str, Any] | None]
    """Family link into each point from the previous one (None at the first point or when unavailable)."""
    emergence_index: int | None
    emergence_value: float | None
    change: ChangePoint
    change_value: float | None
    frequency: float | None = None

    @property
    def final_phase(self) -> int | None:
        """Phase at the last point where the name is present."""
        present = [p for p, ok in zip(self.phase, self.present) if ok]
        return present[-1] if present else None

    def summary(self) -> dict[str, Any]:
        """The per-name scalar fields of emergence.csv."""
        c = self.change
        return {"name": self.name, "frequency": self.frequency, "emergence_index": self.emergence_index,
                "emergence_value": self.emergence_value, "change_index": c.index, "change_value": self.change_value,
                "change_jump": c.jump, "change_gain": c.gain, "final_dedication": _last(self.dedication),
                "final_phase": self.final_phase, "n_points": len(self.present),
                "n_missing": sum(not p for p in self.present),
                "n_splits": sum(bool(link and link.get("split")) for link in self.links)}


def _last(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return present[-1] if present else None


SUMMARY_FIELDS = ("name", "frequency", "emergence_index", "emergence_value", "change_index", "change_value",
                  "change_jump", "change_gain", "final_dedication", "final_phase", "n_points", "n_missing",
                  "n_splits")


@dataclass
class EmergenceResult:
    """Per-name dedication curves, emergence, change points and phases over an ordered series."""

    axis: str
    labels: list[str]
    values: list[float]
    points: list[dict[str, Any]]
    """Description of each point: label, value, store, sae, space, d_in, d_sae, n_names, n_dedicated, notes."""
    names: list[NameSeries]
    config: EmergenceConfig
    links_available: list[bool]
    """Per transition i -> i+1: whether family links were computed (same space and dimension)."""
    notes: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, NameSeries]:
        """Name series keyed by name."""
        return {n.name: n for n in self.names}

    def phase_matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Phases [names, points] as int (0 = undecided or name missing at that point)."""
        table = self.by_name()
        rows = [table[n] for n in names] if names is not None else self.names
        return np.array([[p or 0 for p in row.phase] for row in rows], dtype=np.int64).reshape(len(rows),
                                                                                             len(self.labels))

    def counts(self) -> dict[str, Any]:
        """How many names emerged at each point (`emerged_at`, by label), never emerged (`never`), and are in
        each phase at the last point (`final_phases`, "1".."4")."""
        emerged = {label: 0 for label in self.labels}
        for n in self.names:
            if n.emergence_index is not None:
                emerged[self.labels[n.emergence_index]] += 1
        return {"emerged_at": emerged, "never": sum(n.emergence_index is None for n in self.names),
                "final_phases": {str(p): sum(n.final_phase == p for n in self.names) for p in (1, 2, 3, 4)}}

    def dedication_matrix(self) -> np.ndarray:
        """Dedication [names, points] as float (NaN where the name is missing)."""
        return np.array([[np.nan if d is None else d for d in row.dedication] for row in self.names],
                        dtype=np.float64).reshape(len(self.names), len(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of emergence.json."""
        return {
            "axis": self.axis, "labels": self.labels, "values": self.values, "points": self.points,
            "links_available": self.links_available, "config": emergence_config_to_dict(self.config),
            "notes": self.notes, "summary_fields": list(SUMMARY_FIELDS),
            "names": [{**n.summary(), "change_before": n.change.before, "change_after": n.change.after,
                       "dedication": n.dedication, "dedicated": n.dedicated, "phase": n.phase,
                       "present": n.present, "points": n.points, "links": n.links} for n in self.names],
        }

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None,
             score: Mapping[str, Any] | None = None) -> Path:
        """Write emergence.json atomically: format_version, the `meta` fields, the result and `score` if given."""
        return save_emergence(self, path, meta, score)

    @classmethod
    def load(cls, path: str | Path) -> EmergenceResult:
        """Read an emergence.json that `save` wrote; a file that does not fit is refused with one line."""
        return load_emergence(path)


def assemble(points: Sequence[PointMeasurement], links: Sequence[Mapping[str, dict[str, Any]] | None], axis: str,
             config: EmergenceConfig, frequencies: Mapping[str, float] | None = None,
             notes: Sequence[str] = ()) -> EmergenceResult:
    """Per-name series from per-point measurements; links[i] maps names to their link into point i (or None)."""
    t = len(points)
    if len(links) != t:
        raise ValueError(f"need one links entry per point ({t}), got {len(links)}")
    values = [p.value for p in points]
    all_names = list(dict.fromkeys(n for p in points for n in p.features.names))
    notes = list(notes)
    counts = [sum(n in p.records for p in points) for n in all_names]
    partial = [n for n, c in zip(all_names, counts) if c < t]
    if partial:
        notes.append(f"{len(partial)} name(s) missing from some points (measured where present): "
                     + ", ".join(partial[:10]) + (" ..." if len(partial) > 10 else ""))
    series = []
    for name in all_names:
        recs = [p.records.get(name) for p in points]
        present = [r is not None for r in recs]
        dedication = [r["dedication"] if r else None for r in recs]
        dedicated = [r["dedicated"] if r else None for r in recs]
        idx = emergence_index(dedicated)
        kept = [i for i, ok in enumerate(present) if ok]
        cp = change_point([dedication[i] for i in kept])
        if cp.index is not None and cp.gain >= config.min_change_gain and abs(cp.jump) >= config.min_change_jump:
            cp = ChangePoint(kept[cp.index], cp.before, cp.after, cp.jump, cp.gain)
        else:
            cp = ChangePoint(None, cp.before, cp.after, cp.jump, cp.gain)
        series.append(NameSeries(
            name=name, present=present, dedication=dedication, dedicated=dedicated,
            phase=[r["phase"] if r else None for r in recs], points=recs,
            links=[(links[i] or {}).get(name) if links[i] is not None else None for i in range(t)],
            emergence_index=idx, emergence_value=values[idx] if idx is not None else None, change=cp,
            change_value=values[cp.index] if cp.index is not None else None,
            frequency=(frequencies or {}).get(name)))
    info = [{"index": p.index, "label": p.label, "value": p.value, **p.info} for p in points]
    return EmergenceResult(axis, [p.label for p in points], values, info, series, config,
                           [links[i] is not None for i in range(1, t)], notes)


# ---- the file format: emergence.json ------------------------------------------------------------------------------
EMERGENCE_FORMAT_VERSION = 1
"""Version of emergence.json that `save` writes and `load` reads (1: the fields of `EmergenceResult.to_dict`)."""
_FIX = "re-run `namesae emergence` (or `namesae demo`) to rewrite it"


def save_emergence(result: EmergenceResult, path: str | Path, meta: Mapping[str, Any] | None = None,
                   score: Mapping[str, Any] | None = None) -> Path:
    """Write `result` as emergence.json (NaN as null), atomically; see `EmergenceResult.save`."""
    from namesae.io import atomic_write_json

    payload = {"format_version": EMERGENCE_FORMAT_VERSION, **(dict(meta) if meta else {}), **result.to_dict()}
    if score is not None:
        payload["score"] = dict(score)
    return atomic_write_json(path, payload)


_PHASE = {"phase?": ("a phase 0-4 or null", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                                                 and 0 <= v <= 4))}
_TOP = {"axis": "str", "labels": "[str]", "values": "[num]", "points": "[obj]", "links_available": "[bool]",
        "config": "obj", "names": "[obj]"}
_NAME = {"name": "str", "present": "[bool]T", "dedication": "[num?]T", "dedicated": "[bool?]T", "phase": "[phase?]T",
         "points": "[obj?]T", "links": "[obj?]T", "emergence_index": "int?", "emergence_value": "num?",
         "change_index": "int?", "change_before": "num?", "change_after": "num?", "change_jump": "num?",
         "change_gain": "num?", "change_value": "num?", "frequency": "num?"}


def _check(data: Mapping[str, Any], spec: Mapping[str, str], where: str, path: Path, t: int | None) -> None:
    """Refuse the first field of `data` that is missing or not of its kind in `spec`, naming file and field; a
    kind ending in T is a list with one entry per point of the series."""
    check_fields(data, {k: v.rstrip("T") for k, v in spec.items()}, path, _FIX, where, kinds=_PHASE)
    for key, kind in spec.items():
        if kind.endswith("T") and t is not None and len(data[key]) != t:
            raise NamesaeError(f"{path}: field '{where}{key}' has {len(data[key])} entries but the series has {t} "
                               f"points; {_FIX}")


def emergence_from_dict(data: Any, path: str | Path = "<emergence.json>") -> EmergenceResult:
    """An EmergenceResult from the content of emergence.json, checked field by field (one line per problem)."""
    path = Path(path)
    require_format(data, path, "emergence", EMERGENCE_FORMAT_VERSION, _FIX)
    _check(data, _TOP, "", path, None)
    t = len(data["labels"])
    if len(data["values"]) != t or len(data["points"]) != t:
        raise NamesaeError(f"{path}: fields 'labels', 'values' and 'points' must have one entry per point, got "
                           f"{t}, {len(data['values'])} and {len(data['points'])}; {_FIX}")
    if len(data["links_available"]) != max(t - 1, 0):
        raise NamesaeError(f"{path}: field 'links_available' must have {max(t - 1, 0)} entries (one per "
                           f"transition), got {len(data['links_available'])}; {_FIX}")
    try:
        config = emergence_config_from_dict(data["config"], f"{path}: field 'config'")
    except NamesaeError as err:
        raise NamesaeError(f"{err}; {_FIX}") from None
    names = []
    for i, rec in enumerate(data["names"]):
        _check(rec, _NAME, f"names[{i}].", path, t)
        change = ChangePoint(rec["change_index"], rec["change_before"], rec["change_after"], rec["change_jump"],
                             float(rec["change_gain"] or 0.0))
        names.append(NameSeries(
            name=rec["name"], present=list(rec["present"]), dedication=list(rec["dedication"]),
            dedicated=list(rec["dedicated"]), phase=list(rec["phase"]), points=list(rec["points"]),
            links=list(rec["links"]), emergence_index=rec["emergence_index"],
            emergence_value=rec["emergence_value"], change=change, change_value=rec["change_value"],
            frequency=rec["frequency"]))
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise NamesaeError(f"{path}: field 'notes' must be a list of strings, got {notes!r:.80}; {_FIX}")
    return EmergenceResult(data["axis"], list(data["labels"]), [float(v) for v in data["values"]],
                           list(data["points"]), names, config, list(data["links_available"]), list(notes))


def load_emergence(path: str | Path) -> EmergenceResult:
    """Read emergence.json (written by `EmergenceResult.save`); one clear line (file, field, fix) when it cannot
    be read, is of another format_version, or a field is missing or of the wrong kind."""
    data = read_json(path, "run `namesae emergence` (or `namesae demo`) first", _FIX)
    return emergence_from_dict(data, path)
