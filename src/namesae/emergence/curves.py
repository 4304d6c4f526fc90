"""Pure maths over one name's series: emergence index, change point of its dedication curve, phase rule.

- emergence index: the first point from which the name stays dedicated (dedicated there and at every later point
  where it is measured); None when it is not dedicated at the last measured point.
- change point: the least-squares two-segment step fit of the dedication curve y [T]: the split k (1 <= k < T)
  minimising SSE(y[:k]) + SSE(y[k:]) around each segment's mean; reported with the jump (mean after - mean
  before) and the gain 1 - SSE_split / SSE_total (the share of the curve's variation the step explains).
- phase: the rule of `namesae.emergence.config` (module docstring), returning the measures that decided it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from namesae.emergence.config import PhaseConfig

PHASE_MEASURES = ("dedicated", "dedication", "scenario_coverage", "scenario_agreement", "scenario_cos_ratio",
                  "cross_scenario_cos", "same_scenario_cos", "attribute_consistency", "attribute_std",
                  "part_composition")


def emergence_index(dedicated: Sequence[bool | None]) -> int | None:
    """First index from which the name stays dedicated (None entries = not measured, skipped); None if never."""
    measured = [i for i, d in enumerate(dedicated) if d is not None]
    if not measured or not dedicated[measured[-1]]:
        return None
    start = measured[-1]
    for i in reversed(measured):
        if not dedicated[i]:
            break
        start = i
    return start


@dataclass(frozen=True)
class ChangePoint:
    """The best single change point of a curve: where its second segment starts and how much the step explains."""

    index: int | None
    """First index of the second segment (None for curves shorter than 2 or without variation)."""
    before: float | None
    """Mean of the curve before the change."""
    after: float | None
    """Mean of the curve from the change on."""
    jump: float | None
    """after - before."""
    gain: float
    """1 - SSE_split / SSE_total in [0, 1]; 0 for a constant curve."""


def change_point(y: Sequence[float]) -> ChangePoint:
    """Least-squares single change point of a 1-d curve [T] (exact, O(T) with prefix sums)."""
    y = np.asarray(y, dtype=np.float64)
    t = y.size
    if t < 2:
        return ChangePoint(None, None, None, None, 0.0)
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 1e-12 * max(1.0, float((y**2).sum())):
        return ChangePoint(None, None, None, None, 0.0)
    s1, s2 = np.cumsum(y), np.cumsum(y * y)
    k = np.arange(1, t)  # segment sizes of the first part
    left = s2[k - 1] - s1[k - 1] ** 2 / k
    right = (s2[-1] - s2[k - 1]) - (s1[-1] - s1[k - 1]) ** 2 / (t - k)
    sse = left + right
    best = int(np.argmin(sse))  # ties: the earliest split
    split = best + 1
    before, after = float(y[:split].mean()), float(y[split:].mean())
    gain = float(min(1.0, max(0.0, 1.0 - sse[best] / total)))
    return ChangePoint(split, before, after, after - before, gain)


def change_point_reference(y: Sequence[float]) -> ChangePoint:
    """The same fit by trying every split and summing squared deviations directly (the plain reference)."""
    y = np.asarray(y, dtype=np.float64)
    if y.size < 2:
        return ChangePoint(None, None, None, None, 0.0)
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 1e-12 * max(1.0, float((y**2).sum())):
        return ChangePoint(None, None, None, None, 0.0)
    costs = [float(((y[:k] - y[:k].mean()) ** 2).sum() + ((y[k:] - y[k:].mean()) ** 2).sum())
             for k in range(1, y.size)]
    k = int(np.argmin(costs)) + 1
    return ChangePoint(k, float(y[:k].mean()), float(y[k:].mean()), float(y[k:].mean() - y[:k].mean()),
                       float(min(1.0, max(0.0, 1.0 - costs[k - 1] / total))))


@dataclass(frozen=True)
class PhaseDecision:
    """A name's phase at one point, the measures the rule read, and the steps that decided it."""

    phase: int | None
    """1-4, or None when a deciding measure is unavailable."""
    measures: dict[str, Any]
    """Every measure of PHASE_MEASURES (None where unavailable)."""
    reasons: list[str] = field(default_factory=list)
    """The rule's steps, e.g. ['identity stable: dedicated and scenario_coverage 1.00 >= 0.50', ...]."""
    missing: list[str] = field(default_factory=list)
    """Measures the rule needed but could not read."""


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def decide_phase(measures: Mapping[str, Any], config: PhaseConfig | None = None) -> PhaseDecision:
    """Phase 1-4 of a name from its measures at one point (the explicit rule of `namesae.emergence.config`)."""
    config = config or PhaseConfig()
    m = {k: measures.get(k) for k in PHASE_MEASURES}
    reasons: list[str] = []
    missing: list[str] = []
    dedicated = bool(m["dedicated"])
    coverage = _num(m["scenario_coverage"])
    if dedicated and coverage is None:
        missing.append("scenario_coverage")
        return PhaseDecision(None, m, ["dedicated, but the identity feature's scenario coverage is unknown"],
                             missing)
    stable = dedicated and coverage >= config.min_scenario_coverage
    if dedicated:
        sign = ">=" if stable else "<"
        reasons.append(f"identity {'stable' if stable else 'not stable'}: dedicated and scenario_coverage "
                       f"{coverage:.2f} {sign} {config.min_scenario_coverage:.2f}")
    else:
        reasons.append("no identity feature (not dedicated)")
    if stable:
        agreement, ratio = _num(m["scenario_agreement"]), _num(m["scenario_cos_ratio"])
        checks = []
        if agreement is not None:
            ok = agreement <= config.overfit_agreement_max
            checks.append(ok)
            reasons.append(f"scenario_agreement {agreement:.2f} {'<=' if ok else '>'} "
                           f"{config.overfit_agreement_max:.2f}")
        else:
            missing.append("scenario_agreement")
        if ratio is not None:
            ok = ratio >= config.overfit_cos_ratio_min
            checks.append(ok)
            reasons.append(f"scenario_cos_ratio {ratio:.3f} {'>=' if ok else '<'} {config.overfit_cos_ratio_min:.3f}")
        else:
            missing.append("scenario_cos_ratio")
        if not checks:
            return PhaseDecision(None, m, reasons + ["overfit undecidable: no scenario measure"], missing)
        phase = 4 if all(checks) else 3
        reasons.append("overfit: scenario prompts do not change the image" if phase == 4 else
                       "follows the scenario: identity stable while scenes vary")
        return PhaseDecision(phase, m, reasons, missing)
    key = "attribute_consistency" if config.attribute_measure == "consistency" else "attribute_std"
    value = _num(m[key])
    if value is None:
        missing.append(key)
        return PhaseDecision(None, m, reasons + [f"attribute stability undecidable: no {key}"], missing)
    if key == "attribute_consistency":
        stable = value >= config.stable_consistency_min
        test = f"{key} {value:.2f} {'>=' if stable else '<'} {config.stable_consistency_min:.2f}"
    else:
        stable = value <= config.stable_attribute_std_max
        test = f"{key} {value:.2f} {'<=' if stable else '>'} {config.stable_attribute_std_max:.2f}"
    reasons.append(f"{test}: " + ("coarse attributes stable" if stable else "name-part biases dominate"))
    return PhaseDecision(2 if stable else 1, m, reasons, missing)
