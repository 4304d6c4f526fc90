"""The notebook API behind `import namesae as ns`: one call per step of the pipeline, each a thin wrapper over the
library function the matching CLI command calls, returning the typed result that owns the step's file format.

Stores may be given as paths (opened for the call) or as open `EmbeddingStore`s; settings as a config dataclass,
as keyword overrides of its fields, or both (`ns.identity(store, sae, tau_p=0.7)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from namesae.features import FeatureConfig
    from namesae.features.result import FeaturesResult
    from namesae.groups import GroupConfig, GroupsResult
    from namesae.identity import IdentityConfig, IdentityResult
    from namesae.sae import TrainConfig, TrainedSAE
    from namesae.steer import Edit, SteerResult
    from namesae.store import EmbeddingStore
    from namesae.synth import SynthConfig
    from namesae.synth.io import WorldPaths

    StoreLike = str | Path | EmbeddingStore

C = TypeVar("C")


def _settings(cls: type[C], config: C | None, overrides: Mapping[str, Any]) -> C:
    """`config` (default: the class's defaults) with the given fields replaced (validated by the class)."""
    base = config if config is not None else cls()
    return dataclasses.replace(base, **overrides) if overrides else base  # type: ignore[type-var]


@contextmanager
def _opened(store: StoreLike | None) -> Iterator[EmbeddingStore | None]:
    """An open store for the call: a path is opened (and closed after), an open store is passed through."""
    from namesae.store import EmbeddingStore

    if store is None or isinstance(store, EmbeddingStore):
        yield store
    else:
        with EmbeddingStore.open(store) as opened:
            yield opened


def open_store(path: str | Path, mode: str = "r") -> EmbeddingStore:
    """Open an embedding store (HDF5) for reading ("r") or appending ("a"); use it as a context manager."""
    from namesae.store import EmbeddingStore

    return EmbeddingStore.open(path, mode)


def load_sae(path: str | Path, device: str = "cpu") -> TrainedSAE:
    """Open an SAE folder written by `train` (or any SAELens folder), checksums verified."""
    from namesae.sae import load_sae as load

    return load(path, device=device)


def synth(out: str | Path, config: SynthConfig | None = None, **fields: Any) -> WorldPaths:
    """Build the synthetic name world (planted truth) and write its stores and truth.json under `out`."""
    from namesae.synth import SynthConfig, build_world, write_world

    return write_world(build_world(_settings(SynthConfig, config, fields)), out)


def train(store: StoreLike, out: str | Path | None = None, config: TrainConfig | None = None,
          progress: bool = False, **fields: Any) -> TrainedSAE:
    """Train an SAE on a store's rows (into `out` when given: resumable, SAELens format, metrics.json)."""
    from namesae.sae import TrainConfig, train_sae

    return train_sae(store, _settings(TrainConfig, config, fields), out, progress=progress)


def features(store: StoreLike, sae: TrainedSAE, config: FeatureConfig | None = None, vocab: StoreLike | None = None,
             progress: bool = False, **fields: Any) -> FeaturesResult:
    """Per-feature statistics of the SAE over the store, labelled from a vocabulary store when given."""
    from namesae.features import FeatureConfig, compute_feature_stats, labels_from_store
    from namesae.features.result import FeaturesResult

    cfg = _settings(FeatureConfig, config, fields)
    with _opened(store) as s, _opened(vocab) as v:
        stats = compute_feature_stats(sae, s, cfg, progress=progress)
        if v is not None:
            stats.labels = labels_from_store(sae, v, center=cfg.label_center)
        return FeaturesResult.from_stats(stats, s, {"sae": _where(sae), "store": str(s.path),
                                                    "vocab": str(v.path) if v is not None else None})


def identity(store: StoreLike, sae: TrainedSAE, config: IdentityConfig | None = None, *,
             text_store: StoreLike | None = None, image_store: StoreLike | None = None,
             vocab: StoreLike | None = None, prior_names: Sequence[str] | str | Path = (),
             feature_config: FeatureConfig | None = None, progress: bool = False, **fields: Any) -> IdentityResult:
    """Dedicated vs compositional names of the store: identity features, name parts, rigidity, attributes, z.

    `prior_names` are the low-bias names (or a file of them) the z-scores are measured against."""
    from namesae.identity import IdentityConfig, load_prior_names, run_identity

    prior = load_prior_names(prior_names) if isinstance(prior_names, (str, Path)) else list(prior_names)
    with _opened(store) as s, _opened(text_store) as t, _opened(image_store) as i, _opened(vocab) as v:
        result = run_identity(sae, s, _settings(IdentityConfig, config, fields), feature_config, image_store=i,
                              text_store=t, vocab=v, prior_names=prior, progress=progress)
        result.meta = {"sae": _where(sae), "store": str(s.path)}
    return result


def groups(store: StoreLike, sae: TrainedSAE, names: str | Sequence[str] | None = None,
           config: GroupConfig | None = None, labels: FeaturesResult | Mapping[int, Any] | None = None,
           kind: str | None = None, device: str | None = None, **fields: Any) -> GroupsResult:
    """Feature groups of each name's mean code (default: every name of the store), with their stability."""
    from namesae.errors import NamesaeError
    from namesae.features.result import FeaturesResult
    from namesae.groups import GroupConfig, GroupsResult, name_groups
    from namesae.sae import check_space, encode

    cfg = _settings(GroupConfig, config, fields)
    label_map = labels.labels() if isinstance(labels, FeaturesResult) else labels
    directions = sae.decoder_directions()
    out = {}
    with _opened(store) as s:
        check_space(sae, s)
        for name in [names] if isinstance(names, str) else names if names is not None else s.unique_names():
            rows = s.select(kind=kind, names=[name])
            if rows.size == 0:
                raise NamesaeError(f"{s.path}: no rows of name {name!r}" + (f" of kind {kind!r}" if kind else ""))
            out[name] = name_groups(encode(sae, s.read_rows(rows)), directions, cfg, label_map, name=name,
                                    device=device)
        return GroupsResult(out, cfg, {"sae": _where(sae), "store": str(s.path)})


def steer(sae: TrainedSAE, x: torch.Tensor | np.ndarray, edits: Edit | Sequence[Edit] | str | Path,
          keep_norm: bool = False, store: StoreLike | None = None) -> SteerResult:
    """Edit the SAE codes of embeddings x [n, d] and decode with the reconstruction error kept (x' = x exactly for
    an empty edit). `edits`: Edit objects, or a JSON / TOML edit file or inline JSON; `store` resolves transfer
    references to rows and names."""
    from namesae.steer import Edit, load_edits, resolve_edits, sae_functions
    from namesae.steer import steer as steer_codes
    from namesae.steer.images import reference_embeddings

    if isinstance(edits, (str, Path)):
        edits = load_edits(edits)
    elif isinstance(edits, Edit):
        edits = [edits]
    if store is not None:
        with _opened(store) as s:
            edits = resolve_edits(edits, sae_functions(sae)[0], reference_embeddings(s, None, None, s.normalized))
    return steer_codes(sae, x, list(edits), keep_norm)


def _where(sae: TrainedSAE) -> str | None:
    """The SAE's folder as written into result files (None for an SAE that was never saved)."""
    path = getattr(sae, "path", None)
    return None if path is None else str(path)
