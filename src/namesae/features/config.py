"""Settings of the feature statistics (`namesae features`, TOML section `[features]`)."""

from __future__ import annotations

from dataclasses import dataclass

from namesae.errors import ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of `namesae features` (TOML section `[features]`)."""

    kind: str | None = None
    """Use only rows of this kind ('text' or 'image'); None uses every row of the store."""
    batch_rows: int = 1024
    """Rows encoded per batch (lowered automatically so one dense code batch stays under `batch_bytes`)."""
    batch_bytes: int = 64 * 2**20
    """Upper bound on the bytes of one dense batch of codes [rows, d_sae] (float32)."""
    top_rows: int = 10
    """Rows kept per feature, highest activation first."""
    top_names: int = 10
    """Names kept per feature, highest mass first."""
    histogram_samples: int = 64
    """Activations kept per feature as a uniform random sample of its firing rows (for histograms); 0: none."""
    label_center: bool = False
    """Subtract the mean phrase embedding before taking cosines to decoder directions (off: the plain definition)."""
    merge_every: int = 1_000_000
    """Consolidate pending (feature, name) pairs once this many have accumulated (bounds memory)."""
    seed: int = 0
    """Seed of the histogram sample (the sample is a deterministic function of row, feature and seed)."""
    rank_rows: int = 512
    """Most strongest firings kept per feature for the rank precision and recall of the identity rule
    (`rule = "strongest"`); the lists hold min(this, 2 x the largest name's row count) entries, so the verdict is
    exact for every name with at most rank_rows / 2 rows and tau_p >= 0.5 (a larger name is measured over its
    feature's strongest `rank_rows` firings)."""

    def __post_init__(self) -> None:
        if self.kind not in (None, "text", "image"):
            raise ConfigError(f"kind must be 'text', 'image' or unset, got {self.kind!r}")
        for name in ("batch_rows", "batch_bytes", "merge_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("top_rows", "top_names", "histogram_samples", "rank_rows"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
