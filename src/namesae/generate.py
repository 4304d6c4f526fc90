"""Images per name at scale: names x templates x seeds through a decoder, their CLIP image embeddings in a store.

Layout of `run_generate(..., out=DIR)` / `namesae generate --out DIR`:

    DIR/images/<name-slug>/<prompt-hash>_s<seed>.png   one image per (name, prompt, seed); PNG text metadata holds
                                                       name, prompt, seed and the decoder with its settings
    DIR/shards/rank<r>.h5                              each process's rows (image paths relative to shards/)
    DIR/image.h5                                       the merged store (DESIGN.md format): kind "image", the seed,
                                                       the image path relative to DIR; rows in work-list order
    DIR/images.csv                                     image,name,prompt,seed (so `namesae embed --images DIR` can
                                                       re-embed the images with another encoder)
    DIR/generate.json                                  what ran: config, decoder, encoder, counts

The work list is every name x template x seed index j (seed = seed_offset + j), grouped into units (name, prompt).
Rank r of W processes takes units r, r+W, ... (a deterministic slice), writes only its own shard, and rank 0
merges every shard once all are done (`torchrun` / `accelerate launch` set RANK and WORLD_SIZE; a gloo process
group provides the barrier). The merged rows do not depend on the number of processes.

Resume: a restarted run skips keys (kind, name, prompt, seed) already in its shard or in the merged store, embeds
images already on disk without redrawing them (PNGs are written atomically, so one on disk is whole), and draws
the rest, in the same batches as an uninterrupted run (a batch that a kill left partly on disk is drawn whole and
only its missing PNGs written: pixels depend on the batch); merging keeps one row per key. A killed run thus never
loses nor duplicates a row, and ends with the images and rows of a run that was never killed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from namesae.decoders.spaces import DrawSettings
from namesae.errors import ConfigError, SpaceMismatchError, StoreError
from namesae.io import atomic_file, atomic_write_csv, atomic_write_json
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

STORE_FILE = "image.h5"
SHARDS = "shards"


@dataclass(frozen=True)
class GenerateConfig(DrawSettings):
    """Settings of an image-generation run (the [generate] section of a TOML config); the image size and
    denoising fields (height, width, steps, guidance_scale, prior_steps, prior_guidance_scale) are `DrawSettings`'s.
    """

    pipeline: str = "kandinsky22"
    """Decoder kind: kandinsky22 or sd21-unclip."""
    model: str | None = None
    """Hub id or folder of the decoder pipeline; `tiny:DIR` builds a tiny random one in DIR. Default: the real
    model's hub id."""
    prior: str | None = None
    """Kandinsky 2.2 prior (hub id or folder); default: the hub prior, or DIR/prior of a namesae folder."""
    n: int = 9
    """Images per name and template (seed indices 0..n-1)."""
    templates: tuple[str, ...] = ("portrait",)
    """Prompt templates: shipped kinds (portrait, scenario, style) or texts holding {name}."""
    seed_offset: int = 0
    """Seed of image j is seed_offset + j, the same for every name and template (paired comparisons)."""
    batch_size: int = 8
    """Images per pipeline call (always of one prompt)."""
    encoder: str | None = None
    """open_clip model embedding the images for the store; default: the one of the decoder's space."""
    pretrained: str | None = None
    """open_clip pretrained tag of `encoder` (default: that of the decoder's space)."""
    device: str = "cpu"
    """cpu, cuda (each rank takes cuda:LOCAL_RANK), cuda:N, mps or auto."""
    dtype: str = "float32"
    """Precision of the decoder and encoder: float32, float16, bfloat16."""
    normalize: bool = True
    """L2-normalise the image embeddings in the store."""
    store_dtype: str = "float32"
    """On-disk dtype of the store's embeddings."""

    def __post_init__(self) -> None:
        from namesae.decoders import PIPELINES

        if self.pipeline not in PIPELINES:
            raise ConfigError(f"pipeline must be one of {PIPELINES}, got {self.pipeline!r}")
        for key in ("n", "batch_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if not isinstance(self.seed_offset, int) or self.seed_offset < 0:
            raise ConfigError(f"seed_offset must be a non-negative integer, got {self.seed_offset!r}")
        if not self.templates:
            raise ConfigError("templates must not be empty")

    def settings(self) -> Any:
        """The DecodeSettings these options ask for."""
        from namesae.decoders import DecodeSettings

        return DecodeSettings(**{f.name: getattr(self, f.name) for f in fields(DrawSettings)})


@dataclass(frozen=True)
class WorkItem:
    """One image to make: a name in a prompt with a seed, and where its file goes (relative to the output)."""

    name: str
    prompt: str
    seed: int
    image: str  # path relative to the output folder

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The store's resume key."""
        return ("image", self.name, self.prompt, self.seed)


def name_slug(name: str) -> str:
    """A file-system-safe folder name for a name, unique per name (a short hash disambiguates)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._")[:48] or "name"
    return f"{slug}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def image_relpath(name: str, prompt: str, seed: int) -> str:
    """Where the image of (name, prompt, seed) lives, relative to the output folder."""
    digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:10]
    return f"images/{name_slug(name)}/{digest}_s{seed}.png"


def work_list(names: Sequence[str], templates: Sequence[str], n: int, seed_offset: int = 0) -> list[WorkItem]:
    """Every name x template x seed, grouped by (name, prompt) in input order; repeated prompts dropped."""
    from namesae.names import render

    items: list[WorkItem] = []
    seen: set[tuple[str, str]] = set()
    for name in names:
        for template in templates:
            prompt = render(template, name)
            if (name, prompt) in seen:
                continue
            seen.add((name, prompt))
            items += [WorkItem(name, prompt, s, image_relpath(name, prompt, s))
                      for s in range(seed_offset, seed_offset + n)]
    return items


def units_of(work: Sequence[WorkItem]) -> list[list[WorkItem]]:
    """The work list cut into units of one (name, prompt), in order."""
    units: dict[tuple[str, str], list[WorkItem]] = {}
    for item in work:
        units.setdefault((item.name, item.prompt), []).append(item)
    return list(units.values())


def rank_slice(work: Sequence[WorkItem], rank: int, world: int) -> list[WorkItem]:
    """The items of rank `rank` of `world`: whole units r, r+W, r+2W, ... (deterministic, balanced)."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank must be in [0, {world}), got {rank}")
    return [item for unit in units_of(work)[rank::world] for item in unit]


# ---- distributed ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ranks:
    """This process's place among the workers."""

    rank: int
    world: int
    local_rank: int
    launched: bool  # started by torchrun / accelerate (env RANK + WORLD_SIZE): barriers and merge by rank 0


def ranks_from_env(rank: int | None = None, world: int | None = None) -> Ranks:
    """Rank and world size: explicit values (manual sharding), else RANK / WORLD_SIZE from the launcher, else 0/1."""
    if rank is not None or world is not None:
        if rank is None or world is None:
            raise ConfigError("give both --rank and --world-size, or neither")
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"need 0 <= rank < world-size, got rank {rank}, world-size {world}")
        return Ranks(rank, world, rank, False)
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    env_rank = int(os.environ.get("RANK", "0"))
    return Ranks(env_rank, env_world, int(os.environ.get("LOCAL_RANK", env_rank)), env_world > 1)


def _init_group(ranks: Ranks) -> bool:
    """Join the launcher's process group (gloo: only barriers travel); True if this call created it."""
    if not ranks.launched:
        return False
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return False
    # Ranks wait for the slowest at the end; generation can take days.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return True


def _barrier(ranks: Ranks) -> None:
    if ranks.launched:
        import torch.distributed as dist

        dist.barrier()


# ---- one rank's work -----------------------------------------------------------------------------------------------
@dataclass
class ShardResult:
    """What one rank did."""

    shard: Path
    rank: int
    world: int
    items: int  # items in this rank's slice
    generated: int  # images drawn by this run
    embedded_from_disk: int  # images found on disk (a run killed before storing them) and only embedded
    skipped: int  # items already in the stores


def shard_path(out: str | Path, rank: int) -> Path:
    """The shard store of a rank."""
    return Path(out) / SHARDS / f"rank{rank}.h5"


def _open_shard(path: Path, encoder: Any, cfg: GenerateConfig, attrs: dict[str, Any]) -> EmbeddingStore:
    space = encoder.space("image")
    if not path.exists():
        return EmbeddingStore.create(path, encoder.dim, space, normalized=encoder.normalized,
                                     dtype=cfg.store_dtype, chunk_rows=256, attrs=attrs)
    store = EmbeddingStore.open(path, mode="a")
    try:
        if store.space != space or store.dim != encoder.dim:
            raise SpaceMismatchError(f"{path}: holds space '{store.space}' ({store.dim}-d) but this run embeds with "
                                     f"'{space}' ({encoder.dim}-d); use another --out or the same encoder")
        if store.normalized != encoder.normalized:
            raise StoreError(f"{path}: normalized={store.normalized} but this run writes "
                             f"normalized={encoder.normalized}; match --normalize or use another --out")
    except BaseException:
        store.close()
        raise
    return store


def _done_keys(out: Path, shard: EmbeddingStore) -> set[tuple[str, str, str, int]]:
    done = shard.done_keys()
    merged = out / STORE_FILE
    if merged.exists():
        with EmbeddingStore.open(merged) as store:
            done |= store.done_keys()
    return done


def _load_png(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def generate_shard(decoder: Any, encoder: Any, work: Sequence[WorkItem], out: str | Path, cfg: GenerateConfig,
                   rank: int = 0, world: int = 1, progress: bool = False,
                   attrs: dict[str, Any] | None = None) -> ShardResult:
    """Draw and embed this rank's slice of `work` into its shard, resuming; returns what it did."""
    from tqdm.auto import tqdm

    from namesae.decoders import info_dict, write_png

    out = Path(out)
    mine = rank_slice(work, rank, world)
    path = shard_path(out, rank)
    decoder_meta = info_dict(decoder.info, decoder.settings)
    generated = from_disk = 0
    with _open_shard(path, encoder, cfg, dict(attrs or {})) as shard:
        done = _done_keys(out, shard)
        todo = [item for item in mine if item.key not in done]
        with tqdm(total=len(todo), unit="img", desc=f"rank {rank}", position=rank, disable=not progress) as bar:
            for unit in units_of(todo):
                for start in range(0, len(unit), cfg.batch_size):
                    batch = unit[start:start + cfg.batch_size]
                    images: dict[int, Any] = {}
                    fresh = [i for i, item in enumerate(batch) if not (out / item.image).is_file()]
                    if fresh:
                        # Draw the whole batch even when a kill left part of it on disk: a decoder's pixels
                        # depend on the batch they are drawn in (float rounding), so redrawing only the missing
                        # images would give other pixels than a run that was never killed.
                        drawn = decoder.generate([item.prompt for item in batch], [item.seed for item in batch])
                        for i in fresh:
                            item = batch[i]
                            write_png(out / item.image, drawn[i], {"name": item.name, "prompt": item.prompt,
                                                                   "seed": str(item.seed), "decoder": decoder_meta})
                            images[i] = drawn[i]
                    for i, item in enumerate(batch):
                        if i not in images:
                            images[i] = _load_png(out / item.image)
                    generated += len(fresh)
                    from_disk += len(batch) - len(fresh)
                    x = encoder.encode_images([images[i] for i in range(len(batch))])
                    shard.append(x, [b.name for b in batch], [b.prompt for b in batch], "image",
                                 seeds=[b.seed for b in batch],
                                 images=[os.path.relpath(out / b.image, path.parent) for b in batch])
                    bar.update(len(batch))
    return ShardResult(path, rank, world, len(mine), generated, from_disk, len(mine) - len(todo))


# ---- merging -------------------------------------------------------------------------------------------------------
def shard_paths(out: str | Path) -> list[Path]:
    """Every shard of an output folder, by rank."""
    folder = Path(out) / SHARDS
    found = [(int(m.group(1)), p) for p in folder.glob("rank*.h5") if (m := re.fullmatch(r"rank(\d+)\.h5", p.name))]
    return [p for _, p in sorted(found)]


def merge_generated(out: str | Path, work: Sequence[WorkItem] | None = None, block_rows: int = 4096) -> Path:
    """Merge the shards (and any earlier merged store) into DIR/image.h5, one row per key, in work-list order
    (rows outside `work` after, sorted by key); image paths relative to DIR. Writes DIR/images.csv too."""
    out = Path(out)
    target = out / STORE_FILE
    inputs = ([target] if target.exists() else []) + shard_paths(out)
    if not inputs:
        raise StoreError(f"{out}: nothing to merge: no {SHARDS}/rank*.h5 and no {STORE_FILE}")
    stores = [EmbeddingStore.open(p) for p in inputs]
    try:
        first = stores[0]
        for s in stores[1:]:
            if (s.space, s.dim, s.normalized) != (first.space, first.dim, first.normalized):
                raise SpaceMismatchError(f"{s.path}: space {s.space!r} ({s.dim}-d, normalized={s.normalized}) "
                                         f"differs from {first.path} ({first.space!r}); shards must share one space")
        position = {item.key[1:]: i for i, item in enumerate(work or [])}
        rows: dict[tuple[str, str, int], tuple[int, int, str]] = {}  # key -> (store, row, image path from out)
        for si, s in enumerate(stores):
            images = s.images if s.images is not None else np.full(len(s), "", dtype=object)
            for r, (name, prompt, seed, image) in enumerate(zip(s.names.tolist(), s.prompts.tolist(),
                                                                 s.seeds.tolist(), images.tolist())):
                key = (name, prompt, int(seed))
                if key not in rows:
                    rel = os.path.relpath(os.path.normpath(s.path.parent / image), out) if image else ""
                    rows[key] = (si, r, Path(rel).as_posix() if rel else "")
        order = sorted(rows, key=lambda k: (0, position[k], ()) if k in position else (1, 0, k))
        attrs = {k: v for k, v in first.attrs.items()
                 if k not in ("format_version", "space", "dim", "normalized", "rows_committed")}
        for stale in out.glob(f".{STORE_FILE}.tmp-*"):  # a killed merge's unfinished copy (and its segments)
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        with atomic_file(target) as tmp:  # renamed onto image.h5 only once every row is in
            with EmbeddingStore.create(tmp, first.dim, first.space, first.normalized, first.dtype,
                                       chunk_rows=min(4096, max(1, len(order))), overwrite=True, attrs=attrs) as dst:
                for b in range(0, len(order), block_rows):
                    keys = order[b:b + block_rows]
                    emb = np.empty((len(keys), first.dim), dtype=np.float32)
                    by_store: dict[int, list[int]] = {}
                    for pos, key in enumerate(keys):
                        by_store.setdefault(rows[key][0], []).append(pos)
                    for si, positions in by_store.items():
                        emb[positions] = stores[si].read_rows([rows[keys[p]][1] for p in positions])
                    dst.append(emb, [k[0] for k in keys], [k[1] for k in keys], "image",
                               seeds=[k[2] for k in keys], images=[rows[k][2] for k in keys])
    finally:
        for s in stores:
            s.close()
    _write_sidecar(out / "images.csv", [(rows[k][2], k[0], k[1], k[2]) for k in order])
    return target


def _write_sidecar(path: Path, records: list[tuple[str, str, str, int]]) -> None:
    fields = ["image", "name", "prompt", "seed"]
    atomic_write_csv(path, (dict(zip(fields, r)) for r in records), fields)


# ---- the whole run ------------------------------------------------------------------------------------------------
@dataclass
class GenerateResult:
    """What a generation run did (on this rank; `store` is set where the merge ran)."""

    out: Path
    shard: ShardResult
    store: Path | None  # the merged store, if this process merged
    summary: dict[str, Any] | None  # the merged store's summary, if this process merged
    ranks: Ranks | None = None  # this process's rank among the run's


def run_generate(decoder: Any, encoder: Any, names: Sequence[str], out: str | Path, cfg: GenerateConfig,
                 ranks: Ranks | None = None, progress: bool = False) -> GenerateResult:
    """Generate this rank's images, then (rank 0, once every rank is done) merge all shards into DIR/image.h5."""
    from namesae.decoders import info_dict
    from namesae.names import resolve_templates

    out = Path(out)
    ranks = ranks or Ranks(0, 1, 0, False)
    if decoder.space != encoder.space("image"):
        log.info("images are embedded in %s; the decoder takes %s", encoder.space("image"), decoder.space)
    work = work_list(names, resolve_templates(cfg.templates), cfg.n, cfg.seed_offset)
    attrs = {"generate_config": json.dumps(asdict(cfg)),
             "decoder": json.dumps(info_dict(decoder.info, decoder.settings)),
             **getattr(encoder, "attrs", {})}
    created = _init_group(ranks)
    try:
        shard = generate_shard(decoder, encoder, work, out, cfg, ranks.rank, ranks.world, progress, attrs)
        _barrier(ranks)
        store = summary = None
        merge_here = ranks.rank == 0 and (ranks.launched or ranks.world == 1)
        if merge_here:
            store = merge_generated(out, work)
            with EmbeddingStore.open(store) as s:
                summary = s.summary()
            record = {"config": asdict(cfg), "decoder": info_dict(decoder.info, decoder.settings),
                      "encoder": {"space": encoder.space("image"), **getattr(encoder, "attrs", {})},
                      "names": len(names), "work_items": len(work), "world_size": ranks.world,
                      "rank0": asdict(shard) | {"shard": str(shard.shard)}, "store": summary}
            atomic_write_json(out / "generate.json", record, indent=2, default=str)
        _barrier(ranks)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    return GenerateResult(out, shard, store, summary, ranks)


def run_generate_files(out: str | Path, names: Path | None, config: Path | None = None,
                       options: dict[str, Any] | None = None, rank: int | None = None,
                       world_size: int | None = None, progress: bool = False) -> GenerateResult:
    """`namesae generate` without the command line: GenerateConfig from the [generate] section of `config` with
    the command-line `options` over it, the names and templates checked, then the decoder and the image encoder
    of its space loaded (this rank's GPU under a launcher) and this rank's images drawn and embedded."""
    from namesae.config import config_from
    from namesae.decoders import load_decoder, quiet_loading, resolve_model
    from namesae.encoders import load_encoder
    from namesae.names import load_names, resolve_templates

    if names is None:
        raise ConfigError("--names FILE is required (one name per line, a CSV with a 'name' column, or JSON)")
    cfg = config_from(GenerateConfig, "generate", config, options or {})
    name_list = load_names(names)
    resolve_templates(cfg.templates)  # fail on a bad template before loading models
    ranks = ranks_from_env(rank, world_size)
    model_path = resolve_model(cfg.pipeline, cfg.model)
    quiet_loading()
    run_device = f"cuda:{ranks.local_rank}" if cfg.device == "cuda" and ranks.world > 1 else cfg.device
    decoder = load_decoder(cfg.pipeline, model_path, cfg.prior, device=run_device, dtype=cfg.dtype,
                           settings=cfg.settings())
    spec = decoder.info.encoder or {}
    enc_model, enc_pretrained = cfg.encoder or spec.get("model"), cfg.pretrained or spec.get("pretrained")
    if not enc_model:
        raise ConfigError(f"the decoder's space {decoder.space!r} has no open_clip image encoder; pass --encoder "
                          f"(and --pretrained) to embed the images")
    image_encoder = load_encoder(enc_model, enc_pretrained, device=run_device, dtype=cfg.dtype,
                                 normalize=cfg.normalize)
    return run_generate(decoder, image_encoder, name_list, out, cfg, ranks, progress=progress)
