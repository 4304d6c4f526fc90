"""Settings of the identity analysis (`IdentityConfig`, TOML section `[identity]`)."""

from __future__ import annotations

from dataclasses import dataclass

from namesae.errors import ConfigError

RULES = ("strongest", "mass_share")


@dataclass(frozen=True)
class IdentityConfig:
    """Settings of `namesae identity` (TOML section `[identity]`)."""

    tau_p: float = 0.8
    """Minimum precision(j, n) of an identity feature: the share of feature j's mass that falls on name n."""
    tau_r: float = 0.5
    """Minimum recall(j, n) of an identity feature: the fraction of n's rows on which j fires."""
    rule: str = "strongest"
    """How precision and recall are measured: "strongest" (among each feature's strongest firings; robust to
    TopK's weak fill and to corpus size) or "mass_share" (the share of the feature's total activation mass)."""
    min_gap: float = 1.25
    """Rule "strongest": the name's activations in the qualifying prefix must stand at least this many times
    above the feature's next firings (median over median). 1 turns the gap test off."""
    top_features: int = 8
    """Features listed per name in `top_features` (by mass share)."""
    epsilon: float = 1e-4
    """ε in log det(Σ + εI), in squared store units (keeps the log-det finite when a name has <= d rows)."""
    dse_sigma: float | None = None
    """Gaussian kernel width σ of the diffusion spectral entropy; None: the median pairwise distance between
    image rows of the same name, over up to `sigma_names` names spread evenly over the store."""
    dse_t: float = 1.0
    """Diffusion time t: the operator's eigenvalues are raised to t before the entropy is taken."""
    sigma_names: int = 1000
    """Names sampled to choose σ when dse_sigma is None."""
    ladder_scale: float = 100.0
    """Logit scale of the zero-shot attribute ladders (CLIP's is 100)."""
    template_name: str = "<template>"
    """Name of the text-store rows that hold the bare prompt template (used by part_composition)."""
    batch_rows: int = 8192
    """Image rows read and processed per batch for rigidity and attributes."""

    def __post_init__(self) -> None:
        for name in ("tau_p", "tau_r"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if self.rule not in RULES:
            raise ConfigError(f"rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if isinstance(self.min_gap, bool) or not isinstance(self.min_gap, (int, float)) or not self.min_gap >= 1:
            raise ConfigError(f"min_gap must be a number >= 1, got {self.min_gap!r}")
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be > 0, got {self.epsilon!r}")
        if self.dse_sigma is not None and not self.dse_sigma > 0:
            raise ConfigError(f"dse_sigma must be > 0 or unset (automatic), got {self.dse_sigma!r}")
        if not self.dse_t > 0:
            raise ConfigError(f"dse_t must be > 0, got {self.dse_t!r}")
        for name in ("top_features", "sigma_names", "batch_rows"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.ladder_scale > 0:
            raise ConfigError(f"ladder_scale must be > 0, got {self.ladder_scale!r}")
