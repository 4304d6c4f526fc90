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

import json
import logging
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
    drawn_icons: int


def _json(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NamesaeError(f"{path}: unreadable ({err}); re-run the step that wrote it") from None


def _path(run_dir: Path, manifest: Any, key: str, default: str) -> Path:
    return manifest.path(key) or run_dir / default


def pick_features(features: list[dict], identity: list[dict], n: int) -> list[int]:
    """Identity features first (in name order), then features by how often they fire; dead ones never."""
    alive = {int(f["feature"]): int(f.get("fire_count") or 0) for f in features
             if isinstance(f, dict) and isinstance(f.get("feature"), int) and (f.get("fire_count") or 0) > 0}
    chosen: list[int] = []
    for rec in identity:
        for item in rec.get("identity_features") or []:
            fid = item.get("feature") if isinstance(item, dict) else item
            if isinstance(fid, int) and fid not in chosen and (not alive or fid in alive):
                chosen.append(fid)
    for fid, _ in sorted(alive.items(), key=lambda kv: (-kv[1], kv[0])):
        if fid not in chosen:
            chosen.append(fid)
    return chosen[:n]


def name_group_sets(groups: Any, n: int) -> dict[str, list[int]]:
    """The first n (name, group) feature sets of groups.json, labelled "NAME · group I"."""
    out: dict[str, list[int]] = {}
    names = groups.get("names") if isinstance(groups, dict) and isinstance(groups.get("names"), dict) else {}
    if isinstance(groups, dict) and isinstance(groups.get("groups"), list) and isinstance(groups.get("name"), str):
        names = {groups["name"]: groups}
    for name, entry in sorted(names.items()):
        for i, g in enumerate((entry or {}).get("groups") or [], 1):
            feats = [int(f) for f in g.get("features") or [] if isinstance(f, int)] if isinstance(g, dict) else []
            if feats and len(out) < n:
                out[group_label(name, i)] = feats
    return out


def group_label(name: str, index: int) -> str:
    """The label of a name's i-th group (1-based) in icons.json."""
    return f"{name} · group {index}"


def load_run_decoder(run_dir: Path, pipeline: str | None, model: str | None, space: str | None, dim: int,
                     device: str = "cpu") -> tuple[Any, str, str | None]:
    """The decoder to draw with: the given one, else the one run.json records; (decoder, pipeline, model)."""
    from namesae.decoders import check_space, load_decoder, quiet_loading, resolve_model

    recorded = read_run(run_dir).decoder or {}
    pipeline = pipeline or recorded.get("pipeline") or "kandinsky22"
    model = model or recorded.get("model")
    if model is None:
        raise NamesaeError(f"{run_dir}: no decoder recorded in run.json; pass --model (a hub id, a folder, or "
                           f"tiny:DIR for a tiny random decoder in the SAE's space)")
    quiet_loading()
    path = resolve_model(pipeline, model, space=space, dim=dim)
    decoder = load_decoder(pipeline, path, device=device)
    check_space(decoder.info, space, dim, f"the SAE of {run_dir}")
    return decoder, pipeline, model


def draw_run_pictures(run_dir: str | Path, *, pipeline: str | None = None, model: str | None = None,
                      icons: int = 256, group_icons: int = 64, rows_per_feature: int = 8, rows_per_name: int = 4,
                      recipe: Any = None, device: str = "cpu", batch: int = 32, progress: bool = True,
                      decoder: Any = None) -> RunPictures:
    """Draw (or reuse) a run's icons and row images; records them in run.json."""
    import time

    import torch

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
    features_doc = _json(_path(run_dir, manifest, "features", "features.json")) or {}
    identity_doc = _json(_path(run_dir, manifest, "identity", "identity.json")) or {}
    features = features_doc.get("features", []) if isinstance(features_doc, dict) else features_doc
    identity = identity_doc.get("names", []) if isinstance(identity_doc, dict) else identity_doc
    if not features:
        raise NamesaeError(f"{run_dir}: no features.json; run `namesae features` (or `namesae identity "
                           "--features`) first, so icons know which features fire")
    chosen = pick_features(features, identity, icons)
    sets = name_group_sets(_json(_path(run_dir, manifest, "groups", "groups.json")), group_icons)
    acts = {int(f["feature"]): f.get("max_activation") for f in features if isinstance(f.get("feature"), int)}
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
            by_id = {int(f["feature"]): f for f in features if isinstance(f.get("feature"), int)}
            for fid in chosen:
                rows.update(int(r["row"]) for r in (by_id.get(fid, {}).get("top_rows") or [])[:rows_per_feature]
                            if isinstance(r, dict) and isinstance(r.get("row"), int) and 0 <= r["row"] < len(store))
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
    drawn = sum(1 for _ in index.features)  # every indexed icon exists now
    return RunPictures(index, rows_drawn, time.perf_counter() - start, drawn)


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
