"""The embedding job behind `namesae embed`: names x templates (or image files) -> rows of an embedding store.

Resumable: the job's work list is fixed by its inputs, rows already in the store are skipped (text rows by their
key (kind, name, prompt, seed), image rows by their image path), and rows are appended in chunks of `chunk_rows`,
each committed atomically by the store, so a killed job loses at most the chunk it was writing and a rerun with
the same inputs adds exactly the missing rows.

Image folders: if the folder holds `images.csv` (columns `image`, `name`, optional `prompt`, `seed`) or
`images.json` (a list of objects with those fields), it says which file shows whom; `image` is relative to the
folder. Otherwise names come from the layout: `DIR/<name>/<anything>.png` (one folder per name; a file stem that
is an integer is the seed) or `DIR/<name>__<seed>.png` / `DIR/<name>.png`. Image rows store the image path
relative to the store's folder.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesae.encoders import DTYPES, ImageEncoder, TextEncoder
from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError, StoreError
from namesae.io import csv_unescape
from namesae.names import clean_name, render
from namesae.store import DTYPES as STORE_DTYPES
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SIDECARS = ("images.csv", "images.json")


@dataclass(frozen=True)
class EmbedConfig:
    """Settings of `namesae embed` (TOML section `[embed]`)."""

    model: str
    """open_clip model name (ViT-H-14, ViT-bigG-14, ...), a tiny offline model (tiny, tiny-1280, ...),
    hf-hub:ORG/REPO or local-dir:PATH."""
    pretrained: str | None = None
    """open_clip pretrained tag (laion2b_s32b_b79k) or checkpoint file; 'seed<N>' for tiny models."""
    space_tag: str | None = None
    """Override the '<model>:<pretrained>' part of the store's space (e.g. when loading a tag's weights from a file)."""
    templates: tuple[str, ...] = ("portrait",)
    """Template kinds (portrait, scenario, style) and/or literal templates holding {name}."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:N, mps or auto."""
    dtype: str = "float32"
    """Encoder compute precision: float32, float16 or bfloat16 (embeddings are returned as float32)."""
    normalize: bool = True
    """L2-normalise each embedding (recorded as the store's `normalized` attribute)."""
    batch_size: int = 256
    """Texts or images per encoder forward pass."""
    chunk_rows: int = 4096
    """Rows per store append (a kill loses at most one chunk) and per HDF5 chunk of a new store; a multiple of
    batch_size keeps every forward pass full."""
    store_dtype: str = "float32"
    """On-disk dtype of a new store's embeddings: float32 or float16."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is required, e.g. 'ViT-H-14' or 'tiny'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is unknown; use float32, float16 or bfloat16")
        if self.store_dtype not in STORE_DTYPES:
            raise ConfigError(f"store_dtype {self.store_dtype!r} is unknown; use one of {STORE_DTYPES}")
        for field in ("batch_size", "chunk_rows"):
            if int(getattr(self, field)) < 1:
                raise ConfigError(f"{field} must be >= 1, got {getattr(self, field)!r}")
        if isinstance(self.templates, str) or not self.templates:
            raise ConfigError("templates must be a non-empty list of kinds or texts with {name}")


@dataclass(frozen=True)
class TextRow:
    """One text to embed: the name it belongs to and the exact prompt."""

    name: str
    prompt: str


@dataclass(frozen=True)
class ImageRow:
    """One image file to embed, with the name it shows, its prompt and seed (-1 if unknown)."""

    path: Path  # absolute
    name: str
    prompt: str = ""
    seed: int = -1


@dataclass(frozen=True)
class EmbedResult:
    """What an embedding job did."""

    path: Path
    written: int  # rows added by this run
    skipped: int  # rows of the work list already in the store
    summary: dict[str, Any]  # the store's summary after the run


def text_rows(names: Sequence[str], templates: Sequence[str]) -> list[TextRow]:
    """The work list: every name in every template, grouped by name; repeated (name, prompt) pairs dropped."""
    rows: list[TextRow] = []
    seen: set[tuple[str, str]] = set()
    for name in names:
        for template in templates:
            key = (name, render(template, name))
            if key not in seen:
                seen.add(key)
                rows.append(TextRow(*key))
    return rows


# ---- image folders -----------------------------------------------------------------------------------------
def _sidecar_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"image", "name"} - set(reader.fieldnames or [])
            if missing:
                raise NamesaeError(f"{path}: missing column(s) {sorted(missing)}; columns: image,name[,prompt,seed]")
            return [(f"{path}:{reader.line_num}", {k: csv_unescape(v) if isinstance(v, str) else v
                                                   for k, v in rec.items()}) for rec in reader]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise NamesaeError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise NamesaeError(f"{path}: expected a list of objects with 'image' and 'name'")
    return [(f"{path}: item {i}", rec) for i, rec in enumerate(data)]


def _from_sidecar(folder: Path, sidecar: Path) -> list[ImageRow]:
    rows = []
    for where, rec in _sidecar_records(sidecar):
        if not rec.get("image") or "name" not in rec:
            raise NamesaeError(f"{where}: needs 'image' and 'name'")
        path = (folder / str(rec["image"])).resolve()
        if not path.is_file():
            raise NamesaeError(f"{where}: image file {path} not found")
        seed = rec.get("seed")
        try:
            seed = -1 if seed in (None, "") else int(seed)
        except (TypeError, ValueError):
            raise NamesaeError(f"{where}: seed {seed!r} is not an integer") from None
        rows.append(ImageRow(path, clean_name(str(rec["name"]), where), str(rec.get("prompt") or ""), seed))
    return rows


def _from_layout(folder: Path) -> list[ImageRow]:
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        rel = path.relative_to(folder)
        if len(rel.parts) > 2:
            raise NamesaeError(f"{path}: images may sit at most one folder deep (DIR/<name>/file); or add "
                               f"{folder / 'images.csv'} with columns image,name")
        if len(rel.parts) == 2:
            name, seed_text = rel.parts[0], path.stem
        else:
            name, _, seed_text = path.stem.rpartition("__") if "__" in path.stem else (path.stem, "", "")
        seed = int(seed_text) if seed_text.lstrip("-").isdigit() else -1
        rows.append(ImageRow(path.resolve(), clean_name(name, str(path)), "", seed))
    return rows


def image_rows(folder: str | Path) -> list[ImageRow]:
    """The images of a folder with the names they show (sidecar images.csv/json, else the file layout)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NamesaeError(f"{folder}: image folder not found")
    sidecar = next((folder / s for s in SIDECARS if (folder / s).is_file()), None)
    rows = _from_sidecar(folder, sidecar) if sidecar else _from_layout(folder)
    if not rows:
        raise NamesaeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return rows


# ---- the job -----------------------------------------------------------------------------------------------
def open_target(out: Path, dim: int, space: str, normalized: bool, cfg: EmbedConfig,
                attrs: dict[str, Any]) -> EmbeddingStore:
    """Open `out` for appending, creating it if absent; an existing store must match space, dim and normalisation."""
    if not out.exists():
        return EmbeddingStore.create(out, dim, space, normalized=normalized, dtype=cfg.store_dtype,
                                     chunk_rows=cfg.chunk_rows, attrs=attrs)
    store = EmbeddingStore.open(out, mode="a")
    try:
        if store.space != space:
            raise SpaceMismatchError(f"{out}: store holds space '{store.space}' but this job writes '{space}'; "
                                     f"use another --out or the model/pretrained that wrote it")
        if store.dim != dim:
            raise StoreError(f"{out}: store has dim {store.dim} but the encoder gives {dim}; use another --out")
        if store.normalized != normalized:
            raise StoreError(f"{out}: store has normalized={store.normalized} but this job writes "
                             f"normalized={normalized}; match --normalize/--no-normalize or use another --out")
        if store.images is None:
            raise StoreError(f"{out}: store has no 'image' dataset; namesae embed appends only to stores it made")
    except BaseException:
        store.close()
        raise
    return store


def _run(store: EmbeddingStore, todo: list, encode, append, chunk_rows: int, progress: bool) -> int:
    from tqdm.auto import tqdm

    written = 0
    with tqdm(total=len(todo), unit="row", desc=store.path.name, disable=not progress) as bar:
        for start in range(0, len(todo), chunk_rows):
            part = todo[start:start + chunk_rows]
            append(encode(part), part)
            written += len(part)
            bar.update(len(part))
    return written


def embed_texts(encoder: TextEncoder, names: Sequence[str], templates: Sequence[str], out: str | Path,
                cfg: EmbedConfig, progress: bool = False, attrs: dict[str, Any] | None = None) -> EmbedResult:
    """Embed every name in every template into the store at `out` (created or resumed); returns what it did."""
    out = Path(out)
    work = text_rows(names, templates)
    meta = {**getattr(encoder, "attrs", {}), **(attrs or {})}
    with open_target(out, encoder.dim, encoder.space("text"), encoder.normalized, cfg, meta) as store:
        done = store.done_keys()
        todo = [r for r in work if ("text", r.name, r.prompt, -1) not in done]

        def append(x, part: list[TextRow]) -> None:
            store.append(x, [r.name for r in part], [r.prompt for r in part], "text")

        written = _run(store, todo, lambda part: encoder.encode_text([r.prompt for r in part]), append,
                       cfg.chunk_rows, progress)
        return EmbedResult(out, written, len(work) - len(todo), store.summary())


def embed_images(encoder: ImageEncoder, rows: Sequence[ImageRow], out: str | Path, cfg: EmbedConfig,
                 progress: bool = False, attrs: dict[str, Any] | None = None) -> EmbedResult:
    """Embed image files into the store at `out` (created or resumed), paths stored relative to its folder."""
    out = Path(out)
    base = out.resolve().parent
    meta = {**getattr(encoder, "attrs", {}), **(attrs or {})}
    rel = {r.path: Path(os.path.relpath(r.path, base)).as_posix() for r in rows}
    unique: dict[Path, ImageRow] = {}
    for r in rows:
        if unique.setdefault(r.path, r) is not r:
            log.warning("%s: listed twice; embedding it once, as %r", r.path, unique[r.path].name)
    with open_target(out, encoder.dim, encoder.space("image"), encoder.normalized, cfg, meta) as store:
        done = set(store.images.tolist())
        todo = [r for r in unique.values() if rel[r.path] not in done]

        def append(x, part: list[ImageRow]) -> None:
            store.append(x, [r.name for r in part], [r.prompt for r in part], "image",
                         seeds=[r.seed for r in part], images=[rel[r.path] for r in part])

        written = _run(store, todo, lambda part: encoder.encode_images([r.path for r in part]), append,
                       cfg.chunk_rows, progress)
        return EmbedResult(out, written, len(unique) - len(todo), store.summary())


MODEL_MISSING = ("--model is required (e.g. --model ViT-H-14 --pretrained laion2b_s32b_b79k, or --model tiny "
                 "offline), or set model in the [embed] section of --config")


def check_one_kind(images: Path | None, names: Path | None, builtin: str | None, rows: bool) -> None:
    """Refuse a mix of image inputs (--images, --dataset) with each other or with text inputs (one store, one
    space)."""
    if names is not None or builtin is not None or (images is not None and rows):
        raise NamesaeError("--images/--dataset embed image rows and --names/--builtin text rows; a store holds "
                           "one space, so run embed twice with different --out")


def run_embed(out: str | Path, config: Path | None = None, options: dict[str, Any] | None = None,
              names: Path | None = None, builtin: str | None = None, top: int | None = None,
              decade: int | None = None, sex: str | None = None, category: str | None = None,
              images: Path | None = None, progress: bool = False,
              rows: Sequence[ImageRow] | None = None) -> EmbedResult:
    """`namesae embed` without the command line: EmbedConfig from the [embed] section of `config` with the
    command-line `options` over it, every input checked before the encoder loads, then text rows (names from
    `names` and/or a built-in list, in the config's templates), the image rows of folder `images` or the given
    image `rows` (e.g. a local Hugging Face dataset's, `namesae.datasets_io.dataset_rows`) embedded."""
    from namesae.config import config_from
    from namesae.names import builtin_names, load_names, resolve_templates

    cfg = config_from(EmbedConfig, "embed", config, options or {}, missing=MODEL_MISSING)
    # Check every input before loading a model (seconds to minutes).
    if images is not None or rows is not None:
        check_one_kind(images, names, builtin, rows is not None)
        if rows is None:
            rows = image_rows(images)
    else:
        if names is None and builtin is None:
            raise NamesaeError("nothing to embed: give --names FILE, --builtin first|surnames|famous, --images DIR "
                               "or --dataset DIR")
        name_list = load_names(names) if names is not None else []
        if builtin is not None:
            extra = builtin_names(builtin, top=top, decade=decade, sex=sex, category=category)
            name_list = list(dict.fromkeys(name_list + extra))
        prompts = resolve_templates(cfg.templates)

    from namesae.encoders import load_encoder

    encoder = load_encoder(cfg.model, cfg.pretrained, device=cfg.device, dtype=cfg.dtype, normalize=cfg.normalize,
                           batch_size=cfg.batch_size, space_tag=cfg.space_tag)
    if rows is not None:
        return embed_images(encoder, rows, out, cfg, progress=progress)
    return embed_texts(encoder, name_list, prompts, out, cfg, progress=progress)
