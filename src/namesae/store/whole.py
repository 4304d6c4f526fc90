"""Whole stores at once: `write_store` and `merge_stores`, each a new base file renamed into place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from namesae.errors import StoreError
from namesae.store.core import EmbeddingStore
from namesae.store.files import CORE_ATTRS, DTYPES, FORMAT_VERSION, Block, _as_array, _validated_rows
from namesae.store.segments import _replace_base, _WriterLock


def write_store(
    path: str | Path,
    embeddings: Any,
    names: Sequence[str],
    prompts: Sequence[str],
    kinds: Sequence[str] | str,
    space: str,
    normalized: bool = False,
    seeds: Sequence[int] | None = None,
    images: Sequence[str] | None = None,
    dtype: str = "float32",
    attrs: dict[str, Any] | None = None,
    chunk_rows: int = 4096,
    wait: float = 0.0,
) -> Path:
    """Write a whole store at once, atomically (temp file, fsync, rename), replacing any store there; returns path."""
    path = Path(path)
    x = _as_array(embeddings)
    if x.ndim != 2:
        raise StoreError(f"{path}: embeddings must be [N, d], got shape {tuple(x.shape)}")
    if dtype not in DTYPES:
        raise StoreError(f"{path}: dtype '{dtype}' is not supported; use one of {DTYPES}")
    if x.shape[1] == 0:
        raise StoreError(f"{path}: dim must be a positive integer, got 0")
    if not space or not isinstance(space, str):
        raise StoreError(f"{path}: space must be a non-empty string such as 'open_clip:ViT-B-32:openai:text'")
    optional = tuple(f for f, v in (("seed", seeds), ("image", images)) if v is not None)
    core = {"format_version": FORMAT_VERSION, "space": space, "dim": int(x.shape[1]), "normalized": bool(normalized)}
    block = _validated_rows(str(path), int(x.shape[1]), bool(normalized), optional, x, names, prompts, kinds, seeds,
                            images)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _WriterLock(path, wait)
    try:
        _replace_base(path, len(x), x.shape[1], dtype, min(int(chunk_rows), max(1, len(x))), optional,
                      {**(attrs or {}), **core}, [block])
    finally:
        lock.release()
    return path


def merge_stores(shard_paths: Sequence[str | Path], out_path: str | Path, sort: bool = False,
                 rows_per_block: int = 16384, wait: float = 0.0) -> Path:
    """Merge shard stores of one space into one store, in the given shard order (or sorted by key), atomically."""
    out_path = Path(out_path)
    if not shard_paths:
        raise StoreError(f"{out_path}: no shards to merge")
    shards: list[EmbeddingStore] = []
    try:
        for p in shard_paths:
            shards.append(EmbeddingStore.open(p))
        first = shards[0]
        for s in shards[1:]:
            for attr in ("dim", "space", "normalized"):
                if getattr(s, attr) != getattr(first, attr):
                    raise StoreError(f"{s.path}: attribute '{attr}' = {getattr(s, attr)!r} differs from "
                                     f"{first.path} ({getattr(first, attr)!r}); shards must share one space")
        has_seed = any("seed" in s._optional for s in shards)
        has_image = any(s.images is not None for s in shards)
        attrs = {k: v for k, v in first._attrs.items() if k not in CORE_ATTRS}
        optional = tuple(f for f, flag in (("seed", has_seed), ("image", has_image)) if flag)
        pairs = [(i, r) for i, s in enumerate(shards) for r in range(len(s))]
        if sort:  # by (name, prompt, kind, seed)
            pairs.sort(key=lambda p: (shards[p[0]].names[p[1]], shards[p[0]].prompts[p[1]],
                                      shards[p[0]].kinds[p[1]], int(shards[p[0]].seeds[p[1]])))

        def blocks() -> Iterator[Block]:
            for b in range(0, len(pairs), rows_per_block):
                block = pairs[b:b + rows_per_block]
                emb = np.empty((len(block), first.dim), dtype=np.float32)
                by_shard: dict[int, list[int]] = {}
                for pos, (i, _) in enumerate(block):
                    by_shard.setdefault(i, []).append(pos)
                for i, positions in by_shard.items():
                    emb[positions] = shards[i].read_rows([block[p][1] for p in positions])
                cols: dict[str, Any] = {
                    "name": [shards[i].names[r] for i, r in block],
                    "prompt": [shards[i].prompts[r] for i, r in block],
                    "kind": [shards[i].kinds[r] for i, r in block]}
                if has_seed:
                    cols["seed"] = [int(shards[i].seeds[r]) for i, r in block]
                if has_image:
                    cols["image"] = [(shards[i].images[r] if shards[i].images is not None else "") for i, r in block]
                yield emb.astype(first.dtype), cols

        core = {"format_version": FORMAT_VERSION, "space": first.space, "dim": first.dim,
                "normalized": first.normalized}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(out_path, wait)
        try:
            _replace_base(out_path, len(pairs), first.dim, first.dtype, first.chunk_rows, optional,
                          {**attrs, **core}, blocks())
        finally:
            lock.release()
    finally:
        for s in shards:
            s.close()
    return out_path
