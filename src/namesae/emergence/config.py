"""Settings of `namesae emergence`: `EmergenceConfig` (TOML `[emergence]`) and `PhaseConfig` (`[emergence.phases]`).

The phase rule (`namesae.emergence.curves.decide_phase`) is explicit and every threshold it uses is a field here:

    identity_stable = dedicated and scenario_coverage >= min_scenario_coverage
    if identity_stable:
        phase 4 (overfit)   if scenario_agreement <= overfit_agreement_max
                               and scenario_cos_ratio >= overfit_cos_ratio_min      (each when measurable)
        phase 3 (identity)  otherwise
    else:  (attribute_measure = "consistency", the default; "std" reads attribute_std <= stable_attribute_std_max)
        phase 2 (attributes stable)  if attribute_consistency >= stable_consistency_min
        phase 1 (name parts)         otherwise
A phase whose deciding measure is unavailable is left undecided (None) and the missing measure is named.

Defaults: 0.5 for coverage and agreement are the midpoints of their [0, 1] ranges; 0.95 for the cosine ratio means
"a new scenario moves the image at most 5% more than a new seed". The phase 1/2 thresholds were read off synthetic
worlds of seeds 1 and 2 (best splits: consistency 0.80 / 0.83, relative std 0.67 / 0.72); seed 0, the demo's
world, was kept out of that choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesae.config import config_from, config_from_dict
from namesae.errors import ConfigError


def _unit_interval(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class PhaseConfig:
    """Thresholds of the phase rule (TOML `[emergence.phases]`); see the module docstring for the rule."""

    min_scenario_coverage: float = 0.5
    """Identity is stable (phase 3 or 4) only if the name's best identity feature fires on at least this share of
    its scenario prompts (fires = recall >= tau_r within the prompt's rows)."""
    overfit_agreement_max: float = 0.5
    """Phase 4 needs the chance-corrected scenario agreement at or below this: (a - 1/k) / (1 - 1/k), where a is
    the share of a name's image rows whose closest text prompt (among the name's k prompts) is their own prompt.
    0 = images match their prompt's scenario no better than chance, 1 = always."""
    overfit_cos_ratio_min: float = 0.95
    """Phase 4 also needs the scenario cosine ratio at or above this: mean cosine between image rows of
    different prompts / mean cosine between rows of the same prompt (1 = changing the scenario changes the image
    no more than changing the seed). Not used when a name has no two rows of one prompt."""
    attribute_measure: str = "consistency"
    """Which measure decides phase 2 (coarse attributes stable) against phase 1: "consistency" (share of
    generations showing the name's most common zero-shot attribute value, mean over ladders) or "std" (ladder
    std relative to the reference names)."""
    stable_consistency_min: float = 0.8
    """Phase 2 needs attribute_consistency at or above this (the same look in at least 4 of 5 generations)."""
    stable_attribute_std_max: float = 0.7
    """With attribute_measure = "std": phase 2 needs the relative attribute std at or below this: the mean over
    attribute ladders of std(name) / median std(reference names), the reference being the prior names when
    given, else every name at that point (1 = as variable as the reference)."""

    def __post_init__(self) -> None:
        _unit_interval(self, "min_scenario_coverage", "overfit_agreement_max", "overfit_cos_ratio_min",
                       "stable_consistency_min")
        if self.attribute_measure not in ("consistency", "std"):
            raise ConfigError(f"attribute_measure must be 'consistency' or 'std', got {self.attribute_measure!r}")
        value = self.stable_attribute_std_max
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"stable_attribute_std_max must be a number >= 0, got {value!r}")


@dataclass(frozen=True)
class EmergenceConfig:
    """Settings of `namesae emergence` (TOML section `[emergence]`, phase thresholds in `[emergence.phases]`)."""

    tau_p: float = 0.8
    """Minimum precision(j, n) of an identity feature (as in `namesae identity`)."""
    tau_r: float = 0.5
    """Minimum recall(j, n) of an identity feature (as in `namesae identity`)."""
    rule: str = "strongest"
    """Identity rule (as in `namesae identity`): "strongest" or "mass_share"."""
    min_gap: float = 1.25
    """Gap of the "strongest" rule (as in `namesae identity`)."""
    kind: str | None = None
    """Measure dedication on rows of this kind of each point's store ('text' or 'image'); None: every row."""
    link_min_cosine: float = 0.5
    """Across points whose SAEs share a space (dictionary sizes, training steps): a feature's parent is the
    previous SAE's feature of highest decoder cosine, called a family link when that cosine is >= this."""
    min_change_gain: float = 0.5
    """A dedication curve's change point is reported only if the two-segment step fit removes at least this
    share of the curve's squared deviation from its mean (1 - SSE_split / SSE_total)."""
    min_change_jump: float = 0.1
    """A change point is reported only if |mean after - mean before| of the dedication curve is at least this
    (a flat, noisy curve can have a step that explains much of its tiny variation)."""
    mixed_dims: bool = False
    """Allow points of different embedding dimension (e.g. models of different sizes). Dedication is measured
    within each point; family links are skipped between points that differ. Off: such a series is refused."""
    curve_names: tuple[str, ...] = ()
    """Names drawn in the dedication-curve plot; empty: up to `max_curve_names` picked across emergence indices."""
    max_curve_names: int = 12
    """Most curves drawn in one dedication-curve plot."""
    max_map_names: int = 200
    """Most names drawn in the phase map (the most dedicated first, then by name)."""
    batch_rows: int = 2048
    """Rows encoded per batch."""
    ladder_scale: float = 100.0
    """Logit scale of the zero-shot attribute ladders (as in `namesae identity`)."""
    template_name: str = "<template>"
    """Name of the text-store rows holding the bare prompt template (for name-part composition)."""
    phases: PhaseConfig = PhaseConfig()
    """Thresholds of the phase rule (`[emergence.phases]`)."""

    def __post_init__(self) -> None:
        _unit_interval(self, "tau_p", "tau_r", "link_min_cosine", "min_change_gain", "min_change_jump")
        if self.kind not in (None, "text", "image"):
            raise ConfigError(f"kind must be 'text', 'image' or unset, got {self.kind!r}")
        if self.rule not in ("strongest", "mass_share"):
            raise ConfigError(f"rule must be 'strongest' or 'mass_share', got {self.rule!r}")
        if isinstance(self.min_gap, bool) or not isinstance(self.min_gap, (int, float)) or not self.min_gap >= 1:
            raise ConfigError(f"min_gap must be a number >= 1, got {self.min_gap!r}")
        if not isinstance(self.mixed_dims, bool):
            raise ConfigError(f"mixed_dims must be true or false, got {self.mixed_dims!r}")
        if not all(isinstance(n, str) for n in self.curve_names):
            raise ConfigError(f"curve_names must be a list of names, got {list(self.curve_names)!r}")
        for name in ("max_curve_names", "max_map_names", "batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.ladder_scale > 0:
            raise ConfigError(f"ladder_scale must be > 0, got {self.ladder_scale!r}")
        if not isinstance(self.phases, PhaseConfig):
            raise ConfigError("phases must be a PhaseConfig (TOML table [emergence.phases])")


def emergence_config_from_dict(data: dict[str, Any], source: str = "<dict>") -> EmergenceConfig:
    """EmergenceConfig from a mapping whose optional `phases` table holds PhaseConfig fields."""
    return config_from_dict(EmergenceConfig, data, f"{source} [emergence]")


def load_emergence_config(path: str | Path | None) -> EmergenceConfig:
    """EmergenceConfig from the `[emergence]` section of a TOML file (defaults without a file or section)."""
    return config_from(EmergenceConfig, "emergence", path)


def emergence_config_to_dict(config: EmergenceConfig) -> dict[str, Any]:
    """The config as a JSON/TOML-ready dict, phases as a nested table."""
    import dataclasses

    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "phases"}
    out["curve_names"] = list(config.curve_names)
    out["phases"] = dataclasses.asdict(config.phases)
    return out
