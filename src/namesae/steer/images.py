"""Steering through a decoder: where the embedding comes from, the original and edited images, the files written."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from namesae.errors import NamesaeError
from namesae.io import atomic_file
from namesae.steer.core import SteerResult, steer_embeddings
from namesae.steer.edits import CodeRef, Decode, Edit, Encode, edits_to_json
from namesae.steer.record import record_of


@dataclass
class SteerSource:
    """The embedding to steer, in the SAE's (store's) units, and how to hand it to the decoder."""

    embedding: Tensor  # [1, d]
    kind: str  # row | name | image | prompt | embedding
    value: Any  # the row index, name, image path, prompt, ...
    scale: float | None = None  # multiply before decoding (the prior's norm when its output was unit-normalised)
    prompt: str | None = None  # the text behind it, if any (SD unCLIP can decode with it)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for metadata."""
        return {"kind": self.kind, "value": self.value, "scale": self.scale}


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def rows_of_name(store: Any, name: str) -> np.ndarray:
    """A name's image rows in a store (all its rows if it has no image rows); clear error if it has none."""
    rows = store.select(kind="image", names=[name])
    if len(rows) == 0:
        rows = store.rows_of(name)
    if len(rows) == 0:
        raise NamesaeError(f"{store.path}: no rows for name {name!r}")
    return rows


def source_from_store(store: Any, row: int | None = None, name: str | None = None) -> SteerSource:
    """A store row, or a name's mean embedding (unit-normalised when the store is), as the thing to steer."""
    if (row is None) == (name is None):
        raise NamesaeError("give exactly one of a row or a name")
    if row is not None:
        if not 0 <= row < len(store):
            raise NamesaeError(f"{store.path}: row {row} out of range; the store has {len(store)} rows")
        x = torch.from_numpy(store.read_rows([row]))
        return SteerSource(x, "row", int(row), prompt=str(store.prompts[row]))
    x = torch.from_numpy(store.read_rows(rows_of_name(store, name))).mean(0, keepdim=True)
    return SteerSource(_unit(x) if store.normalized else x, "name", name)


def source_from_image(encoder: Any, path: str | Path) -> SteerSource:
    """An image file embedded by the SAE space's image encoder."""
    path = Path(path)
    if not path.is_file():
        raise NamesaeError(f"{path}: image not found")
    return SteerSource(torch.from_numpy(encoder.encode_images([path])), "image", str(path))


def source_from_prompt(decoder: Any, prompt: str, seed: int, normalize: bool) -> SteerSource:
    """A prompt turned into an image embedding by the Kandinsky prior (seeded); unit-normalised for the SAE when
    `normalize`, with the prior's norm kept as the decoding scale."""
    x = decoder.embed_prompts([prompt], [seed])
    if not normalize:
        return SteerSource(x, "prompt", prompt, prompt=prompt)
    norm = float(x.norm())
    return SteerSource(_unit(x), "prompt", prompt, scale=norm, prompt=prompt)


def reference_embeddings(store: Any | None, image_encoder: Callable[[], Any] | None, decoder: Any | None,
                         normalize: bool, seed: int = 0) -> Callable[[CodeRef], Tensor]:
    """`embeddings_of(ref)` for `resolve_edits`: rows / names from the store, images through the encoder (built on
    first use), prompts through the decoder's prior, literal embeddings."""
    def embeddings_of(ref: CodeRef) -> Tensor:
        if ref.kind in ("row", "rows", "name"):
            if store is None:
                raise NamesaeError(f"edit reference {ref.to_json()} needs a store; pass --store")
            rows = [ref.value] if ref.kind == "row" else list(ref.value) if ref.kind == "rows" else \
                rows_of_name(store, ref.value)
            bad = [r for r in rows if not 0 <= int(r) < len(store)]
            if bad:
                raise NamesaeError(f"{store.path}: edit reference row(s) {bad[:5]} out of range [0, {len(store)})")
            return torch.from_numpy(store.read_rows(rows))
        if ref.kind == "image":
            if image_encoder is None:
                raise NamesaeError(f"edit reference {ref.to_json()} needs an image encoder for the SAE's space")
            return source_from_image(image_encoder(), ref.value).embedding
        if ref.kind == "prompt":
            if decoder is None:
                raise NamesaeError(f"edit reference {ref.to_json()} needs a decoder with a prior")
            return source_from_prompt(decoder, ref.value, seed, normalize).embedding
        if ref.kind == "embedding":
            return torch.tensor([ref.value], dtype=torch.float32)
        raise NamesaeError(f"edit reference {ref.to_json()} cannot be turned into embeddings")
    return embeddings_of


@dataclass
class SteeredImages:
    """Images of the original and the edited embedding, drawn with the same seeds."""

    seeds: list[int]
    edited: list[Any]  # PIL images, one per seed
    original: list[Any] | None  # PIL images, one per seed (None when not drawn)
    result: SteerResult
    scale: float | None  # the factor applied to both embeddings before decoding


def steer_images(x: Tensor, edits: Sequence[Edit], encode: Encode, decode: Decode, decoder: Any,
                 seeds: Sequence[int], keep_norm: bool = False, scale: float | None = None,
                 prompts: Sequence[str] | None = None, originals: bool = True) -> SteeredImages:
    """Steer one embedding x [1, d] and decode the original and the edited version with each seed."""
    x = torch.as_tensor(x, dtype=torch.float32)
    x = x[None] if x.ndim == 1 else x
    if x.shape[0] != 1:
        raise NamesaeError(f"steer_images steers one embedding at a time, got {x.shape[0]}")
    seeds = [int(s) for s in seeds]
    result = steer_embeddings(x, edits, encode, decode, keep_norm)
    factor = 1.0 if scale is None else float(scale)
    n = len(seeds)
    prompts = None if prompts is None else list(prompts) * (n if len(prompts) == 1 else 1)
    edited = decoder.decode((result.embeddings * factor).expand(n, -1), seeds, prompts)
    original = decoder.decode((result.original * factor).expand(n, -1), seeds, prompts) if originals else None
    return SteeredImages(seeds, edited, original, result, scale)


@dataclass
class SteerFiles:
    """What `write_steer_outputs` wrote."""

    grid: Path  # original | edited, one row per seed, with the metadata
    original: list[Path]
    edited: list[Path]
    record: Path  # steer.json
    embeddings: Path  # embeddings.safetensors: original, edited, codes, edited_codes


def write_steer_outputs(out_dir: str | Path, steered: SteeredImages, metadata: Mapping[str, Any]) -> SteerFiles:
    """Write the side-by-side grid (metadata in its PNG text), each image, steer.json and the embeddings."""
    from safetensors.torch import save_file

    from namesae.decoders import image_grid, write_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**metadata, "edits": edits_to_json(steered.result.edits), "seeds": steered.seeds,
            "scale": steered.scale, "layout": "rows = seeds; columns = original, edited"
            if steered.original is not None else "one edited image per seed"}
    originals, editeds = [], []
    for i, seed in enumerate(steered.seeds):
        if steered.original is not None:
            originals.append(write_png(out / f"original_s{seed}.png", steered.original[i], meta))
        editeds.append(write_png(out / f"edited_s{seed}.png", steered.edited[i], meta))
    rows = [[o, e] for o, e in zip(steered.original, steered.edited)] if steered.original is not None else \
        [[e] for e in steered.edited]
    grid = write_png(out / "side_by_side.png", image_grid(rows), meta)
    r = steered.result
    tensors = {"original": r.original, "edited": r.embeddings, "codes": r.codes, "edited_codes": r.edited_codes}
    tensors = {k: v.detach().float().cpu().clone().contiguous() for k, v in tensors.items()}  # no shared storage
    with atomic_file(out / "embeddings.safetensors") as tmp:
        save_file(tensors, str(tmp))
    files = {"side_by_side": grid.name, "original": [p.name for p in originals], "edited": [p.name for p in editeds],
             "embeddings": "embeddings.safetensors"}
    record = record_of(metadata, meta["edits"], steered.seeds, steered.scale, meta["layout"], r.summary(), files)
    path = record.save(out / "steer.json")
    return SteerFiles(grid, originals, editeds, path, out / "embeddings.safetensors")
