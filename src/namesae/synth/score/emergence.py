"""The emergence analysis on a synthetic world: its progression as a series, and the run scored against the
world's planted onsets and phases (`namesae synth` truth.json)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from namesae.emergence import EmergenceResult, Series, SeriesPoint
from namesae.emergence import load_series as load_series_spec
from namesae.errors import ConfigError
from namesae.synth import load_truth
from namesae.synth.score.world import truth_of

TARGETS = {"emergence_within_1": 0.90, "no_emergence_compositional": 0.95, "phase_agreement": 0.80}


def world_series(world: Path, train: dict[str, Any] | None, kind: str = "image") -> Series:
    """The progression of a synthetic world written by `namesae synth` as a series (axis samples_seen)."""
    truth = load_truth(world)
    checkpoints = truth.get("progression", {}).get("checkpoints", [])
    if not checkpoints:
        raise ConfigError(f"{world}: the world has no progression (write it with progression = true)")
    points = []
    for ck in checkpoints:
        folder = world / ck["dir"]
        points.append(SeriesPoint(label=Path(ck["dir"]).name, value=float(ck["samples_seen"]),
                                  store=folder / f"{kind}.h5", text_store=folder / "text.h5",
                                  vocab=folder / "vocab.h5"))
    prior = world / truth["stores"].get("prior_names", "prior_names.txt")
    return Series(axis="samples_seen", points=tuple(points), train=train if train is not None else {},
                  prior_names=prior if prior.is_file() else None, truth=world / "truth.json",
                  source=str(world))


def is_world(path: str | Path) -> bool:
    """Whether `path` is a synthetic world folder with a progression (truth.json and progression/)."""
    path = Path(path)
    return path.is_dir() and (path / "truth.json").is_file() and (path / "progression").is_dir()


def load_series(spec: str | Path, train: dict[str, Any] | None = None) -> Series:
    """A series from a synthetic world folder (its progression) or anything `namesae.emergence.load_series` reads."""
    if is_world(spec):
        return world_series(Path(spec), train)
    return load_series_spec(spec, train)


def truth_frequencies(series: Series) -> dict[str, float] | None:
    """The name frequencies planted in the world a series names as its `truth`, for the emergence-against-frequency
    plot; None when the series names a frequencies file of its own, or no truth."""
    if series.frequencies is not None or series.truth is None or not Path(series.truth).is_file():
        return None
    return {r["name"]: float(r["frequency"]) for r in load_truth(series.truth)["names"]
            if r.get("frequency") is not None}


def expected_phase(record: Mapping[str, Any], point: int, phase_edges: Any) -> int:
    """The planted phase of a name at checkpoint `point`: a dedicated name before its onset shows only its look,
    so it is phase 2 if its attributes are stable (resample probability <= (1 - edges[1])^3), else 1."""
    phase = int(record["phase"])
    onset = record.get("onset_index")
    if record.get("dedicated") and (onset is None or point < onset):
        return 2 if record["attribute_resample_prob"] <= (1.0 - float(phase_edges[1])) ** 3 else 1
    return phase


def _rate(hits: list[bool]) -> float | None:
    return float(np.mean(hits)) if hits else None


def score_emergence(result: EmergenceResult, truth: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """emergence_within_1 (dedicated names: detected index within +-1 of the planted onset, or both none),
    no_emergence_compositional (compositional names never emerge), phase_agreement (phase at the last point equals
    the planted phase there: `expected_phase`), with counts, per-phase agreement (rows of the confusion matrix
    are the expected phases), phase_agreement_planted (against the full-strength phase) and per point."""
    truth = truth_of(truth)
    table = result.by_name()
    records = [r for r in truth["names"] if r["name"] in table]
    missing = [r["name"] for r in truth["names"] if r["name"] not in table]
    t = len(result.labels)
    n_truth_points = len(truth.get("progression", {}).get("samples_seen", []))
    aligned = n_truth_points == t
    out: dict[str, Any] = {"n_names": len(records), "n_truth_names_missing": len(missing),
                           "n_points": t, "aligned_with_progression": aligned, "targets": dict(TARGETS)}
    dedicated = [r for r in records if r["dedicated"]]
    compositional = [r for r in records if not r["dedicated"]]
    offsets: list[int | None] = []
    within: list[bool] = []
    if aligned:
        for r in dedicated:
            got, want = table[r["name"]].emergence_index, r.get("onset_index")
            if got is None or want is None:
                within.append(got is None and want is None)
                offsets.append(None)
            else:
                within.append(abs(got - want) <= 1)
                offsets.append(got - want)
    out["emergence_within_1"] = _rate(within)
    out["emergence_exact"] = _rate([o == 0 for o in offsets]) if aligned and dedicated else None
    known = [o for o in offsets if o is not None]
    out["emergence_offset_counts"] = {str(k): known.count(k) for k in sorted(set(known))}
    out["emergence_missed"] = sum(table[r["name"]].emergence_index is None and r.get("onset_index") is not None
                                  for r in dedicated) if aligned else None
    out["n_dedicated"] = len(dedicated)
    out["no_emergence_compositional"] = _rate([table[r["name"]].emergence_index is None for r in compositional])
    out["n_compositional"] = len(compositional)
    # The planted phase is the world's at full identity strength; at the last checkpoint a dedicated name whose
    # onset lies beyond the progression has not emerged yet, so it is scored against its phase there.
    last = t - 1
    edges = truth["config"]["phase_edges"]
    final = [(expected_phase(r, last, edges) if aligned else int(r["phase"]), table[r["name"]].final_phase)
             for r in records]
    out["phase_agreement"] = _rate([a == b for a, b in final])
    out["phase_agreement_planted"] = _rate([int(r["phase"]) == table[r["name"]].final_phase for r in records])
    out["phase_agreement_by_phase"] = {str(p): _rate([a == b for a, b in final if a == p]) for p in (1, 2, 3, 4)}
    confusion = np.zeros((4, 5), dtype=int)  # planted 1-4 x detected (0 = undecided) ...
    for a, b in final:
        confusion[a - 1, b or 0] += 1
    out["phase_confusion"] = {"rows": "planted phase 1-4", "columns": "detected phase 0 (undecided), 1-4",
                              "matrix": confusion.tolist()}
    if aligned:
        per_point = []
        for i in range(t):
            hits = [expected_phase(r, i, edges) == table[r["name"]].phase[i] for r in records
                    if table[r["name"]].present[i]]
            per_point.append(_rate(hits))
        out["phase_agreement_by_point"] = per_point
    out["passed"] = {k: (out[k] is not None and out[k] >= v) for k, v in TARGETS.items()}
    return out


def write_score(score: Mapping[str, Any], path: str | Path) -> Path:
    """Write a score dict as JSON, atomically."""
    from namesae.io import atomic_write_json

    return atomic_write_json(path, dict(score))
