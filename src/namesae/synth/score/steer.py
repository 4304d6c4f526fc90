"""Steering scored on a synthetic world: zeroing a found identity's features, does the name move to its parts, and
how much of its planted identity direction does the edit remove."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesae.errors import NamesaeError
from namesae.steer import (
    AblationSummary,
    ZeroGroup,
    identity_ablation_scores,
    sae_functions,
    steer_embeddings,
)
from namesae.synth import compositional_prediction, load_world

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE


def score_world_ablation(sae: TrainedSAE, world: Any, identity_features: Mapping[str, Sequence[int]],
                         store: Any = None, names: Sequence[str] | None = None) -> AblationSummary:
    """On a synthetic world: zero each name's identity features in its image rows; score against its parts.

    `world` is a `namesae.synth.World`, its `Truth` or the folder `write_world` wrote; `store` an open
    `EmbeddingStore` or path (default: the world's image store, DIR/image.h5); `identity_features` maps names to
    the feature ids found for them (e.g. by `namesae identity`); `names` restricts the names scored.
    """
    from namesae.store import EmbeddingStore

    if isinstance(world, (str, Path)):
        world_dir = Path(world)
        world = load_world(world_dir)
        store = world_dir / "image.h5" if store is None else store
    if store is None:
        raise NamesaeError("score_world_ablation: pass the image store (path or EmbeddingStore) of the world")
    own = isinstance(store, (str, Path))
    opened = EmbeddingStore.open(store) if own else store
    try:
        index = opened.name_index()
        chosen = [n for n in (names if names is not None else identity_features) if len(identity_features.get(n, ()))]
        missing = [n for n in chosen if n not in index]
        if missing:
            raise NamesaeError(f"{opened.path}: name(s) {missing[:5]} have no rows in the store")
        rows = {n: opened.read_rows(index[n]) for n in chosen}
    finally:
        if own:
            opened.close()
    predictions = {n: compositional_prediction(world, n, "image") for n in chosen}
    encode, decode = sae_functions(sae)
    return identity_ablation_scores(rows, identity_features, predictions, encode, decode)


@dataclass
class IdentityEditScore:
    """Zeroing every found identity's features on a world, scored against the parts and the planted directions."""

    ablation: AblationSummary
    identity_removed: dict[str, float]  # name -> share of its planted identity component the edit removes
    moved_to_parts_ceiling: dict[str, float]  # name -> moved-to-parts share with the planted direction projected out
    closer_to_parts: float  # share of scored names whose rows move closer (cosine) to their parts' prediction

    @property
    def ceiling(self) -> float:
        """Mean of `moved_to_parts_ceiling`: what a perfect identity edit reaches in this world."""
        values = list(self.moved_to_parts_ceiling.values())
        return float(np.mean(values)) if values else float("nan")

    @property
    def mean_identity_removed(self) -> float:
        """Mean over names (NaN ignored) of `identity_removed`."""
        values = list(self.identity_removed.values())
        return float(np.nanmean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (the demo's steer/ablation.json)."""
        return {**self.ablation.to_dict(), "identity_removed": self.identity_removed,
                "moved_to_parts_ceiling": self.moved_to_parts_ceiling}


def score_identity_edits(sae: TrainedSAE, world_dir: str | Path,
                         identity_features: Mapping[str, Sequence[int]]) -> IdentityEditScore:
    """`score_world_ablation` on the world written in `world_dir`, plus the planted identity component each edit
    removes and the ceiling of moved_to_parts (the planted identity direction projected out exactly)."""
    from namesae.store import EmbeddingStore

    world_dir = Path(world_dir)
    world = load_world(world_dir)
    summary = score_world_ablation(sae, world, identity_features, store=world_dir / "image.h5")
    planted = {r.name: r.identity_direction for r in world.names}
    encode, decode = sae_functions(sae)
    removed, ceiling = {}, {}
    with EmbeddingStore.open(world_dir / "image.h5") as image:
        for name, feats in identity_features.items():
            row = planted.get(name)
            if row is None or not feats:
                continue  # a found identity the world did not plant: counted by the identity precision
            u = world.truth.directions[row] / np.linalg.norm(world.truth.directions[row])
            x = torch.from_numpy(image.read_rows(image.rows_of(name)))
            edited = steer_embeddings(x, [ZeroGroup(tuple(feats))], encode, decode).embeddings.numpy()
            before, after = float((x.numpy() @ u).mean()), float((edited @ u).mean())
            removed[name] = 1.0 - after / before if before > 0 else float("nan")
            exact = x.numpy().astype(np.float64)
            exact = exact - np.outer(exact @ u, u)
            mean = x.numpy().mean(0).astype(np.float64)
            pred = compositional_prediction(world, name, "image")
            cos_p = exact @ pred / (np.linalg.norm(exact, axis=1) * np.linalg.norm(pred))
            cos_m = exact @ mean / (np.linalg.norm(exact, axis=1) * np.linalg.norm(mean))
            ceiling[name] = float((cos_p > cos_m).mean())
    scores = {s.name: s for s in summary.scores}
    gains = [scores[n].cos_prediction_after > scores[n].cos_prediction_before for n in removed if n in scores]
    return IdentityEditScore(summary, removed, ceiling, float(np.mean(gains)) if gains else float("nan"))
