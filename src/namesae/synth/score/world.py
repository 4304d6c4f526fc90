"""The world side of scoring: a truth in any of its shapes, a world in memory or on disk, and its rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.synth import World, load_truth, load_world


def truth_of(truth: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    """A world's truth.json as a mapping: given as one already, or as the file or folder `namesae synth` wrote."""
    if isinstance(truth, (str, Path)):
        return load_truth(truth)
    if not isinstance(truth, Mapping) or not isinstance(truth.get("names"), list):
        raise NamesaeError("truth: expected a synthetic world's truth.json (a mapping with a 'names' list)")
    return truth


def truth_table(truth: Any) -> dict[str, dict[str, Any]]:
    """name -> planted record, from truth.json's shape ({'names': [...]}), a {'names': {name: record}} mapping or a
    list of records with 'name'."""
    if isinstance(truth, Mapping) and isinstance(truth.get("names"), list):
        return {str(t["name"]): t for t in truth["names"]}
    if isinstance(truth, Mapping) and isinstance(truth.get("names"), Mapping):
        return {str(k): dict(v) for k, v in truth["names"].items()}
    if isinstance(truth, list):
        return {str(t["name"]): t for t in truth}
    raise NamesaeError("truth: expected {'names': [...]} or a list of records with 'name'")


def open_world(world: Any) -> tuple[Any, Path | None]:
    """A synthetic World and the folder its stores live in: a World built in memory, or a folder `namesae synth`
    wrote (returned as a World without rows, and its folder)."""
    if isinstance(world, World):
        return world, None
    return load_world(world), Path(world)


def world_rows(world: Any, root: Path | None, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings [N, d], names and prompts of the world's text or image store (in memory or under its folder)."""
    from namesae.store import EmbeddingStore

    if world.stores:
        rows = world.stores[modality]
        return rows.embeddings, np.asarray(rows.names), np.asarray(rows.prompts)
    if root is None:
        raise NamesaeError("this world holds no rows; pass the world's folder or build it with build_world")
    with EmbeddingStore.open(Path(root) / f"{modality}.h5") as store:
        return store.read(), store.names.astype(str), store.prompts.astype(str)
