"""The pictures a run's report and playground show: feature and group icons, and decoded store rows.

`draw_run_pictures` reads a run folder (run.json, features.json, identity.json, groups.json, the image store),
picks what to draw and draws it with the run's decoder (namesae.steer.icons):

- icons for the identity features first, then the most often firing features, at most `icons` of them, and for
  the first `group_icons` groups of the names' feature groups;
- when the image store holds no image files of its own (a synthetic world), the top `rows_per_feature` rows of
  every iconed feature and the first `rows_per_name` image rows of every name, decoded with their own seeds.

Results go to RUN/icons/ and RUN/row_images/ and are recorded in run.json ("icons", "row_images"). Both are cached,
so a second run draws nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.runs import read_run, record_artefact, record_decoder

log = logging.getLogger(__name__)


@dataclass
class RunPictures:
    """What `draw_run_pictures` drew or reused."""

    icons: Any  # IconIndex
    row_images: Any | None  # RowImages, or None when the store has images of its own
    seconds: float


def _path(run_dir: Path, manifest: Any, key: str, default: str) -> Path:
    return manifest.path(key) or run_dir / default


def pick_features(features: Sequence[Any], identity: Sequence[Any], n: int) -> list[int]:
    """Identity features first (in name order), then features by how often they fire; dead ones never.

    features: `FeatureRecord`s (features.json); identity: `IdentityRecord`s (identity.json)."""
    alive = {f.feature: f.fire_count for f in features if f.fire_count > 0}
    chosen: list[int] = []
    for rec in identity:
        chosen.extend(f for f in rec.identity_features if f not in chosen and (not alive or f in alive))
    chosen.extend(f for f, _ in sorted(alive.items(), key=lambda kv: (-kv[1], kv[0])) if f not in chosen)
    return chosen[:n]


def name_group_sets(groupings: Mapping[str, Any], n: int) -> dict[str, list[int]]:
    """The first n (name, group) feature sets of a run's groupings (`groupings_of`), labelled "NAME · group I"."""
    out: dict[str, list[int]] = {}
    for name, grouping in sorted(groupings.items()):
        for i, g in enumerate(grouping.groups, 1):
            if g.features and len(out) < n:
                out[group_label(name, i)] = [int(f) for f in g.features]
    return out


def group_label(name: str, index: int) -> str:
    """The label of a name's i-th group (1-based) in icons.json."""
    return f"{name} · group {index}"


def load_run_decoder(run_dir: Path, pipeline: str | None, model: str | None, space: str | None, dim: int,
                     device: str = "cpu") -> tuple[Any, str, str | None]:
    """The decoder to draw with: the given one, else the one run.json records; (decoder, pipeline, model)."""
    from namesae.decoders import check_decoder_space, load_decoder, quiet_loading, resolve_model

    recorded = read_run(run_dir).decoder or {}
    pipeline = pipeline or recorded.get("pipeline") or "kandinsky22"
    model = model or recorded.get("model")
    if model is None:
        raise NamesaeError(f"{run_dir}: no decoder recorded in run.json; pass --model (a hub id, a folder, or "
                           f"tiny:DIR for a tiny random decoder in the SAE's space)")
    quiet_loading()
    path = resolve_model(pipeline, model, space=space, dim=dim)
    decoder = load_decoder(pipeline, path, device=device)
    check_decoder_space(decoder.info, space, dim, f"the SAE of {run_dir}")
    return decoder, pipeline, model


def draw_run_pictures(run_dir: str | Path, *, pipeline: str | None = None, model: str | None = None,
                      icons: int = 256, group_icons: int = 64, rows_per_feature: int = 8, rows_per_name: int = 4,
                      recipe: Any = None, device: str = "cpu", batch: int = 32, progress: bool = True,
                      decoder: Any = None) -> RunPictures:
    """Draw (or reuse) a run's icons and row images; records them in run.json."""
    import time

    import torch

    from namesae.features.result import FeaturesResult
    from namesae.groups.result import groupings_of
    from namesae.identity.result import IdentityResult
    from namesae.sae import load_sae
    from namesae.steer.icons import IconRecipe, render_icons, render_rows
    from namesae.store import EmbeddingStore

    start = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NamesaeError(f"{run_dir}: run directory not found; pass the --out folder of a namesae run")
    manifest = read_run(run_dir)
    sae_dir = _path(run_dir, manifest, "sae", "sae")
    if not sae_dir.is_dir():
        raise NamesaeError(f"{run_dir}: no SAE at {sae_dir}; run `namesae train` (or `namesae demo`) first")
    sae = load_sae(sae_dir, device=device)
    features_path = _path(run_dir, manifest, "features", "features.json")
    if not features_path.is_file():
        raise NamesaeError(f"{run_dir}: no features.json; run `namesae features` (or `namesae identity "
                           "--write-features`) first, so icons know which features fire")
    features = FeaturesResult.load(features_path).features
    identity_path = _path(run_dir, manifest, "identity", "identity.json")
    identity = IdentityResult.load(identity_path).records if identity_path.is_file() else []
    chosen = pick_features(features, identity, icons)
    groups_path = _path(run_dir, manifest, "groups", "groups.json")
    sets = name_group_sets(groupings_of(groups_path) if groups_path.is_file() else {}, group_icons)
    acts = {f.feature: f.max_activation for f in features}
    store_path = _path(run_dir, manifest, "image_store", "world/image.h5")
    if decoder is None:
        decoder, pipeline, model = load_run_decoder(run_dir, pipeline, model, sae.space, sae.d_in, device)
        record_decoder(run_dir, pipeline, model)
    mean, norm, rows_drawn = None, 1.0, None
    with EmbeddingStore.open(store_path) as store:
        image_rows = store.select(kind="image")
        sample = store.read_rows(image_rows[:4096] if len(image_rows) else [])
        if len(sample):
            mean = torch.from_numpy(sample.mean(0))
            norm = float((sample ** 2).sum(1).mean() ** 0.5)
        index = render_icons(sae, decoder, chosen, run_dir / "icons", recipe or IconRecipe(), acts, sets, mean,
                             norm, batch=batch, progress=progress)
        has_files = store.images is not None and any(bool(p) for p in store.images[image_rows[:64]])
        if not has_files and (rows_per_feature or rows_per_name):
            rows: set[int] = set()
            by_id = {f.feature: f for f in features}
            for fid in chosen:
                rows.update(t.row for t in by_id[fid].top_rows[:rows_per_feature] if 0 <= t.row < len(store))
            if rows_per_name:
                for name_rows in store.name_index().values():
                    kinds = store.kinds[name_rows]
                    rows.update(int(r) for r in name_rows[kinds == "image"][:rows_per_name])
            rows_drawn = render_rows(store, sorted(rows), decoder, run_dir / "row_images", batch=batch,
                                     progress=progress)
    record_artefact(run_dir / "icons" / "icons.json", "icons", run=run_dir)
    if rows_drawn is not None:
        record_artefact(run_dir / "row_images" / "row_images.json", "row_images", run=run_dir,
                        inputs={"store": store_path})
    return RunPictures(index, rows_drawn, time.perf_counter() - start)


def embed_rendered_rows(run_dir: str | Path, model: str = "tiny", device: str = "cpu") -> Path:
    """Embed a run's decoded row images with DINOv2 into RUN/row_images/dino.h5 (for the DINOv2-vs-CLIP
    rigidity plot); recorded in run.json as "dino_store"."""
    from namesae.encoders import load_dino
    from namesae.steer.icons import RowImages
    from namesae.store import EmbeddingStore

    run_dir = Path(run_dir)
    index_path = read_run(run_dir).path("row_images") or run_dir / "row_images" / "row_images.json"
    if not index_path.is_file():
        raise NamesaeError(f"{run_dir}: no row images to embed; run `namesae icons --run {run_dir}` first")
    rows = RowImages.load(index_path)
    items = sorted(rows.rows.items())
    encoder = load_dino(model, device=device)
    x = encoder.encode_images([rows.folder / e["file"] for _, e in items])
    out = rows.folder / "dino.h5"
    with EmbeddingStore.create(out, encoder.dim, encoder.space("image"), normalized=True, overwrite=True) as store:
        store.append(x, [e["name"] for _, e in items], [e["prompt"] for _, e in items], "image",
                     [int(e["seed"]) for _, e in items], [e["file"] for _, e in items])
    record_artefact(out, "dino_store", run=run_dir)
    return out
