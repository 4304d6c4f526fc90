"""Pictures for browsing a dictionary: feature and group icons, and store rows decoded into images.

A feature's **icon** (Daujotas 2024) previews its causal effect: the run's decoder draws the embedding that carries
the feature alone. With the recipe's base "sae" (default) that embedding is the SAE's own decode of a code where
only the feature fires, x = b_dec + a d_f, a = strength x the feature's largest activation seen (1 when unknown);
base "mean" adds a d_f to the store's mean embedding, base "zero" draws a d_f alone. x is rescaled to `norm` (the
store rows' norm; unit for normalised stores) and decoded with the recipe's seed, steps and size. A group's icon
decodes the code where each of its features fires at its own activation.

Icons are cached: each file's key hashes the exact embedding handed to the decoder, the decoder and the recipe,
so a rerun decodes nothing that is already drawn and a changed SAE, decoder or recipe draws afresh. `icons.json`
(format "namesae-icons") maps features and groups to files and records the recipe.

**Row images**: a synthetic world's image rows are planted embeddings without pictures. `render_rows` decodes
chosen rows with their own seeds into `images/rNNNNNN.png` (name, prompt and seed in the PNG text) and indexes them
in `row_images.json` (format "namesae-row-images"), so the report can show top-activating images and generations.
For a run made by `namesae generate` the store's own image files are used instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesae.errors import ConfigError
from namesae.io import atomic_write_json, confined_file, require_format

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE

log = logging.getLogger(__name__)

ICONS_FORMAT = "namesae-icons"
ROWS_FORMAT = "namesae-row-images"
FORMAT_VERSION = 1
BASES = ("sae", "mean", "zero")


@dataclass(frozen=True)
class IconRecipe:
    """How an icon is drawn (TOML section `[icons]`): base embedding, strength, seed, steps, size."""

    base: str = "sae"
    """sae: the SAE's decode of the feature alone (b_dec + a d_f); mean: the store's mean + a d_f; zero: a d_f."""
    strength: float = 1.0
    """a = strength x the feature's largest activation seen (features.json max_activation; 1 when unknown)."""
    seed: int = 0
    """Decoder seed of every icon (the same noise for all, so icons differ only by their features)."""
    steps: int | None = None
    """Denoising steps (default: the decoder's)."""
    size: int | None = None
    """Image height and width in pixels (default: the decoder's)."""

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ConfigError(f"icons: base must be one of {', '.join(BASES)}, got {self.base!r}")
        if not np.isfinite(self.strength) or self.strength <= 0:
            raise ConfigError(f"icons: strength must be > 0, got {self.strength!r}")


@dataclass
class IconIndex:
    """icons.json: where each feature's and group's icon is, and how they were drawn."""

    folder: Path
    recipe: dict[str, Any]
    decoder: dict[str, Any]
    features: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {"file", "key", "activation"}
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {"file", "key", "features"}

    def feature_file(self, feature: int) -> Path | None:
        """The icon file of a feature, or None (also when its path leads outside the icon folder)."""
        entry = self.features.get(int(feature))
        return confined_file(self.folder, entry["file"])[0] if entry else None

    def group_file(self, label: str) -> Path | None:
        """The icon file of a group, or None (also when its path leads outside the icon folder)."""
        entry = self.groups.get(label)
        return confined_file(self.folder, entry["file"])[0] if entry else None

    def save(self) -> Path:
        """Write icons.json in the icon folder."""
        return atomic_write_json(self.folder / "icons.json", {
            "format": ICONS_FORMAT, "format_version": FORMAT_VERSION, "recipe": self.recipe, "decoder": self.decoder,
            "features": {str(k): v for k, v in sorted(self.features.items())}, "groups": self.groups})

    @classmethod
    def load(cls, folder: str | Path) -> IconIndex:
        """Read icons.json of an icon folder (refused with one line when of another format)."""
        folder = Path(folder)
        path = folder / "icons.json"
        data = _read(path, ICONS_FORMAT, "namesae icons")
        feats = data.get("features") if isinstance(data.get("features"), dict) else {}
        groups = data.get("groups") if isinstance(data.get("groups"), dict) else {}
        return cls(folder, data.get("recipe") or {}, data.get("decoder") or {},
                   {int(k): v for k, v in feats.items() if isinstance(v, dict) and isinstance(v.get("file"), str)},
                   {str(k): v for k, v in groups.items() if isinstance(v, dict) and isinstance(v.get("file"), str)})


def _read(path: Path, fmt: str, command: str) -> dict[str, Any]:
    from namesae.errors import NamesaeError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NamesaeError(f"{path}: unreadable ({err}); re-run `{command}`") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise NamesaeError(f"{path}: field 'format' is not {fmt!r}; re-run `{command}`")
    require_format(data, path, fmt, FORMAT_VERSION, f"re-run `{command}`")
    return data


def _key(x: torch.Tensor, seed: int, decoder: Mapping[str, Any], recipe: Mapping[str, Any]) -> str:
    h = hashlib.sha256(np.ascontiguousarray(x.detach().float().cpu().numpy()).tobytes())
    h.update(json.dumps({"seed": seed, "decoder": decoder, "recipe": recipe}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def decoder_identity(decoder: Any) -> dict[str, Any]:
    """What identifies a decoder's output: its pipeline, model and settings."""
    from namesae.decoders import info_dict

    return json.loads(json.dumps(info_dict(decoder.info, decoder.settings), default=str))


def _with_settings(decoder: Any, recipe: IconRecipe) -> Any:
    """The decoder with the recipe's steps and size (a copy of its settings; the decoder object is reused)."""
    import dataclasses

    changes = {k: v for k, v in (("steps", recipe.steps), ("height", recipe.size), ("width", recipe.size))
               if v is not None}
    if changes:
        decoder.settings = dataclasses.replace(decoder.settings, **changes)
    return decoder


def icon_embeddings(sae: TrainedSAE, codes: torch.Tensor, recipe: IconRecipe, mean: torch.Tensor | None,
                    norm: float | None) -> torch.Tensor:
    """Embeddings [n, d] that carry the given codes [n, d_sae] on the recipe's base, rescaled to `norm`."""
    directions = codes @ sae.decoder_directions()
    if recipe.base == "sae":
        x = sae.decode(codes).float().cpu()
    elif recipe.base == "mean":
        if mean is None:
            raise ConfigError("icons: base 'mean' needs the store's mean embedding")
        x = mean[None].float() + directions
    else:
        x = directions
    if norm is not None:
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * float(norm)
    return x


def _decode_missing(decoder: Any, jobs: list[tuple[str, torch.Tensor, Path, dict[str, Any]]], seed: int,
                    batch: int, progress: bool, what: str) -> int:
    """Decode the jobs whose file is absent, in batches; returns how many were drawn."""
    from tqdm.auto import tqdm

    from namesae.decoders import write_png

    todo = [j for j in jobs if not j[2].is_file()]
    bar = tqdm(total=len(todo), desc=what, unit="img", disable=not progress or not todo)
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        x = torch.stack([j[1] for j in part])
        seeds = [int(j[3].get("seed", seed)) for j in part]
        images = decoder.decode(x, seeds)
        for (_, _, path, meta), image in zip(part, images):
            write_png(path, image, meta)
        bar.update(len(part))
    bar.close()
    return len(todo)


def render_icons(sae: TrainedSAE, decoder: Any, features: Sequence[int], out_dir: str | Path,
                 recipe: IconRecipe | None = None, activations: Mapping[int, float] | None = None,
                 groups: Mapping[str, Sequence[int]] | None = None, mean: torch.Tensor | None = None,
                 norm: float | None = 1.0, batch: int = 32, progress: bool = True) -> IconIndex:
    """Draw (or reuse from the cache) an icon per feature and per group into out_dir; returns icons.json."""
    recipe = recipe or IconRecipe()
    out = Path(out_dir)
    decoder = _with_settings(decoder, recipe)
    dec_id, rec = decoder_identity(decoder), asdict(recipe)
    acts = {int(k): float(v) for k, v in (activations or {}).items() if v is not None and np.isfinite(v) and v > 0}
    index = IconIndex(out, rec, dec_id)
    jobs: list[tuple[str, torch.Tensor, Path, dict[str, Any]]] = []

    def code(members: Sequence[int]) -> torch.Tensor:
        c = torch.zeros(sae.d_sae)
        for f in members:
            c[int(f)] = recipe.strength * acts.get(int(f), 1.0)
        return c

    features = [int(f) for f in features]
    bad = [f for f in features if not 0 <= f < sae.d_sae]
    if bad:
        raise ConfigError(f"icons: feature ids {bad[:5]} are outside 0..{sae.d_sae - 1}")
    labels = list((groups or {}).items())
    codes = [code([f]) for f in features] + [code(m) for _, m in labels]
    if not codes:
        index.save()
        return index
    x = icon_embeddings(sae, torch.stack(codes), recipe, mean, norm)
    for i, f in enumerate(features):
        key = _key(x[i], recipe.seed, dec_id, rec)
        name = f"f{f:06d}-{key[:10]}.png"
        index.features[f] = {"file": name, "key": key, "activation": acts.get(f)}
        jobs.append((key, x[i], out / name, {"namesae": "icon", "feature": f, "recipe": rec, "seed": recipe.seed}))
    for j, (label, members) in enumerate(labels):
        key = _key(x[len(features) + j], recipe.seed, dec_id, rec)
        slug = hashlib.sha1(label.encode()).hexdigest()[:8]
        name = f"g{slug}-{key[:10]}.png"
        index.groups[label] = {"file": name, "key": key, "features": [int(m) for m in members]}
        jobs.append((key, x[len(features) + j], out / name,
                     {"namesae": "group icon", "group": label, "features": [int(m) for m in members],
                      "recipe": rec, "seed": recipe.seed}))
    drawn = _decode_missing(decoder, jobs, recipe.seed, batch, progress, "icons")
    log.info("icons: %d drawn, %d reused from the cache in %s", drawn, len(jobs) - drawn, out)
    index.save()
    return index


@dataclass
class RowImages:
    """row_images.json: images decoded from store rows, by row."""

    folder: Path
    store: str
    decoder: dict[str, Any]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # row -> {"file", "seed", "name", "prompt"}

    def file(self, row: int) -> Path | None:
        """The image file of a row, or None (also when its path leads outside the folder)."""
        entry = self.rows.get(int(row))
        return confined_file(self.folder, entry["file"])[0] if entry else None

    def save(self) -> Path:
        """Write row_images.json in the folder."""
        return atomic_write_json(self.folder / "row_images.json", {
            "format": ROWS_FORMAT, "format_version": FORMAT_VERSION, "store": self.store, "decoder": self.decoder,
            "rows": {str(k): v for k, v in sorted(self.rows.items())}})

    @classmethod
    def load(cls, path: str | Path) -> RowImages:
        """Read row_images.json (the file or its folder)."""
        path = Path(path)
        path = path / "row_images.json" if path.is_dir() else path
        data = _read(path, ROWS_FORMAT, "namesae render")
        rows = data.get("rows") if isinstance(data.get("rows"), dict) else {}
        return cls(path.parent, str(data.get("store", "")), data.get("decoder") or {},
                   {int(k): v for k, v in rows.items() if isinstance(v, dict) and isinstance(v.get("file"), str)})


def render_rows(store: Any, rows: Sequence[int], decoder: Any, out_dir: str | Path, batch: int = 32,
                progress: bool = True) -> RowImages:
    """Decode store rows with their own seeds into out_dir/images (cached by content); returns the index."""
    out = Path(out_dir)
    dec_id = decoder_identity(decoder)
    previous = RowImages.load(out) if (out / "row_images.json").is_file() else None
    index = RowImages(out, str(store.path), dec_id, dict(previous.rows) if previous else {})
    rows = sorted({int(r) for r in rows})
    if not rows:
        index.save()
        return index
    x = torch.from_numpy(store.read_rows(rows)).float()
    names, prompts, seeds = store.names, store.prompts, store.seeds
    jobs = []
    for i, r in enumerate(rows):
        seed = int(seeds[r]) if seeds is not None and int(seeds[r]) >= 0 else r
        key = _key(x[i], seed, dec_id, {})
        name = f"images/r{r:06d}-{key[:8]}.png"
        meta = {"namesae": "row image", "row": r, "name": str(names[r]), "prompt": str(prompts[r]), "seed": seed}
        index.rows[r] = {"file": name, "seed": seed, "name": str(names[r]), "prompt": str(prompts[r])}
        jobs.append((key, x[i], out / name, meta))
    drawn = _decode_missing(decoder, jobs, 0, batch, progress, "row images")
    log.info("render: %d rows drawn, %d reused in %s", drawn, len(jobs) - drawn, out)
    index.save()
    return index
