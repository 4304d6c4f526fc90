"""Name axes: PCA over full-name embeddings, coordinates on them, and walks along one axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from namesae.basis.vocabulary import Vocabulary
from namesae.errors import NamesaeError


@dataclass(frozen=True)
class NameAxes:
    """A PCA basis over full-name embeddings: mean, unit axes, their spread, and every name's coordinates."""

    names: tuple[str, ...]
    mean: np.ndarray  # [d]
    axes: np.ndarray  # [k, d] orthonormal
    scale: np.ndarray  # [k] standard deviation of the names' coordinates on each axis
    explained: np.ndarray  # [k] share of the total variance
    coords: np.ndarray  # [n, k]

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """Coordinates [m, k] of embeddings x [m, d] (or [d] -> [k]) on the axes."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.mean.shape[0]:
            raise NamesaeError(f"embeddings of dimension {x.shape[-1]} do not live in the axes' space "
                               f"(dimension {self.mean.shape[0]})")
        return (x - self.mean) @ self.axes.T


def fit_name_axes(embeddings: np.ndarray, names: Sequence[str], n_axes: int = 8) -> NameAxes:
    """PCA axes [n_axes, d] of name embeddings [n, d] (one row per name)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(names):
        raise NamesaeError(f"axes need one embedding per name: got {x.shape} for {len(names)} names")
    if len(x) < 3:
        raise NamesaeError(f"axes need at least 3 names, got {len(x)}")
    k = min(n_axes, len(x) - 1, x.shape[1])
    if k < 1:
        raise NamesaeError(f"n_axes must be >= 1, got {n_axes}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:k]
    # Sign convention: the heaviest loading of each axis is positive (stable across runs and platforms).
    axes *= np.sign(axes[np.arange(k), np.abs(axes).argmax(1)])[:, None]
    var = s**2 / (len(x) - 1)
    coords = (x - mean) @ axes.T
    return NameAxes(tuple(names), mean, axes, np.sqrt(var[:k]), var[:k] / var.sum(), coords)


@dataclass(frozen=True)
class WalkStep:
    """One point of an axis walk: its offset in standard deviations and the name parts nearest to it."""

    sigma: float
    nearest: dict[str, list[tuple[str, float]]]  # kind -> [(term, distance in the axes' coordinates)]


def walk_axis(axes: NameAxes, axis: int, vocab: Vocabulary, span: float = 2.0, steps: int = 9, top: int = 3,
              kinds: Sequence[str] = ("first", "last")) -> list[WalkStep]:
    """Walk from -span to +span standard deviations along one axis; nearest first names and surnames per step."""
    if not 0 <= axis < len(axes.axes):
        raise NamesaeError(f"axis {axis} is out of range; these axes are 0..{len(axes.axes) - 1}")
    if steps < 2 or top < 1:
        raise NamesaeError(f"steps must be >= 2 and top >= 1, got {steps}, {top}")
    coords = {}
    for kind in kinds:
        part = vocab.of_kind(kind)
        if len(part) == 0:
            raise NamesaeError(f"the vocabulary holds no {kind} terms to walk with")
        c = axes.coordinates(part.embeddings)
        coords[kind] = (part.terms, c - c.mean(0))  # each kind centred on its own mean
    out = []
    for s in np.linspace(-span, span, steps):
        point = np.zeros(len(axes.axes))
        point[axis] = s * axes.scale[axis]
        nearest = {}
        for kind, (terms, c) in coords.items():
            dist = np.linalg.norm(c - point, axis=1)
            order = np.argsort(dist, kind="stable")[:top]
            nearest[kind] = [(terms[i], float(dist[i])) for i in order]
        out.append(WalkStep(float(s), nearest))
    return out
