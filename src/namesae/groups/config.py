"""Settings of feature grouping and the random numbers every implementation shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from namesae.errors import ConfigError

SELECTS = ("mass", "concepts")

# Two unit directions closer than this (1 - cosine) count as the same direction: k-means++ finds no new centre
# among them, so no grouping splits identical directions on round-off alone.
SAME_DIRECTION = 1e-5

# A cluster holds "at least m_min" of the mass when share >= m_min * (1 - SHARE_SLACK); the slack only absorbs
# float round-off at exact equality (e.g. 20 equal features split 20 ways with m_min = 0.05).
SHARE_SLACK = 1e-9


# Restarts whose objectives differ by less than this found the same grouping up to round-off: the first of them is
# kept, so implementations that round differently keep the same run.
RESTART_TIE = 1e-6


@dataclass(frozen=True)
class GroupConfig:
    """Settings of `namesae groups` (TOML section `[groups]`)."""

    select: str = "mass"
    """'mass': the largest k whose every group holds >= m_min of the activation mass (the original method);
    'concepts': that grouping, then groups whose weighted centroids have cosine >= join_cos are joined."""
    k_max: int = 20
    """Largest number of groups tried; k runs over 1..k_max."""
    m_min: float = 0.05
    """Smallest share of the embedding's activation mass every group must hold for k to be kept."""
    join_cos: float = 0.7
    """select='concepts': join two groups while their weighted centroids have cosine >= this
    (default from bench/groups_threshold_sweep.py, see bench/results/groups_threshold_sweep.json)."""
    restarts: int = 3
    """k-means++ restarts per k; the run with the highest objective (weighted mean cosine to centroid) is kept."""
    max_iter: int = 100
    """Most Lloyd iterations per run; a run stops earlier as soon as no assignment changes."""
    trials: int = 0
    """Candidates per greedy k-means++ step (0: 2 + floor(ln k_max), as scikit-learn)."""
    seed: int = 0
    """Seed of the k-means++ draws; a fixed seed gives the same groups for an embedding in any batch."""
    batch_size: int = 64
    """Embeddings grouped together in one batch (memory ~ batch_size * n_active * (n_active + restarts * k_max^2)
    floats; larger batches spread the per-operation overhead)."""

    def __post_init__(self) -> None:
        if self.select not in SELECTS:
            raise ConfigError(f"select must be one of {list(SELECTS)}, got {self.select!r}")
        for name in ("k_max", "restarts", "max_iter", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.trials, int) or self.trials < 0:
            raise ConfigError(f"trials must be an integer >= 0 (0: automatic), got {self.trials!r}")
        if not 0.0 <= float(self.m_min) <= 1.0:
            raise ConfigError(f"m_min must lie in [0, 1], got {self.m_min!r}")
        if not -1.0 <= float(self.join_cos) <= 1.0:
            raise ConfigError(f"join_cos must lie in [-1, 1], got {self.join_cos!r}")

    @property
    def n_trials(self) -> int:
        """Candidates per greedy k-means++ step."""
        return self.trials or 2 + int(math.log(self.k_max))


def init_uniforms(config: GroupConfig) -> torch.Tensor:
    """Uniform draws of k-means++ [restarts, k_max, trials] (float64), the same for every embedding."""
    gen = torch.Generator().manual_seed(int(config.seed))
    return torch.rand(config.restarts, config.k_max, config.n_trials, generator=gen, dtype=torch.float64)
