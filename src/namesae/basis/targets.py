"""The target of a painting: one embedding [d] from a store's row or a name's rows, a prompt, an image or a file.

`TargetSpec` holds what the command line gave (exactly one source); `resolve_target` turns it into the embedding
and a description of where it came from, refusing anything embedded by another encoder than the one loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from namesae.errors import NamesaeError, SpaceMismatchError


class Target(NamedTuple):
    """A target embedding and where it came from ("mean of 16 rows of 'Ada' in store.h5")."""

    embedding: Any  # [d]
    description: str


@dataclass(frozen=True)
class TargetSpec:
    """Where a target comes from: exactly one of a name (the mean of its rows) or a row of `store`, a prompt, an
    image or an embedding file."""

    store: Path | None = None
    """Store holding the target (with `name` or `row`)."""
    name: str | None = None
    """The mean embedding of this name's rows in `store` (of `kind` only, when given)."""
    row: int | None = None
    """One row of `store`."""
    kind: str | None = None
    """With `name`: only rows of this kind (text or image)."""
    prompt: str | None = None
    """This prompt, encoded."""
    image: Path | None = None
    """This image file, encoded by the encoder's image tower."""
    embedding: Path | None = None
    """An embedding file: .safetensors (e.g. steer's embeddings.safetensors) or a .json list."""
    tensor: str | None = None
    """With `embedding`: the tensor of a .safetensors file (default 'edited', or its only tensor)."""
    embedding_row: int | None = None
    """With `embedding`: one row of a [n, d] embedding (default: their mean)."""

    def resolve(self, encoder: Any) -> Target:
        """The target embedding [d] and its description (`resolve_target`)."""
        return resolve_target(encoder, **asdict(self))


def check_same_encoder(what: str, space: str, encoder: Any) -> None:
    """Refuse an artefact embedded by another encoder than the one loaded (modality may differ)."""
    from namesae.features import same_encoder

    if not same_encoder(space, encoder.space("text")):
        raise SpaceMismatchError(f"{what} lives in space {space!r} but the encoder writes "
                                 f"{encoder.space('text')!r}; use the encoder that embedded it")


def resolve_target(encoder: Any, store: Path | None = None, name: str | None = None, row: int | None = None,
                   kind: str | None = None, prompt: str | None = None, image: Path | None = None,
                   embedding: Path | None = None, tensor: str | None = None,
                   embedding_row: int | None = None) -> Target:
    """The target embedding [d] and a description, from exactly one of: a name's mean (or a row) of a store, a
    prompt, an image file, or an embedding file (.safetensors, e.g. steer's embeddings.safetensors, or .json)."""
    given = [k for k, v in (("--name", name), ("--row", row), ("--prompt", prompt), ("--image", image),
                            ("--embedding", embedding)) if v is not None]
    if len(given) != 1:
        raise NamesaeError(f"give exactly one target: --name or --row (with --store), --prompt, --image or "
                           f"--embedding; got {given or 'none'}")
    if name is not None or row is not None:
        if store is None:
            raise NamesaeError(f"{given[0]} needs --store (the store holding the target's rows)")
        from namesae.store import EmbeddingStore

        with EmbeddingStore.open(store) as s:
            check_same_encoder(f"store {store}", s.space, encoder)
            if row is not None:
                if not 0 <= row < len(s):
                    raise NamesaeError(f"{store}: --row {row} is out of range (0..{len(s) - 1})")
                return Target(s.read_rows([row])[0], f"row {row} of {store} ({s.names[row]!r}: {s.prompts[row]!r})")
            rows = s.select(kind=kind, names=[name])
            if len(rows) == 0:
                raise NamesaeError(f"{store}: no rows of name {name!r}" + (f" of kind {kind!r}" if kind else ""))
            return Target(s.read_rows(rows).mean(0), f"mean of {len(rows)} rows of {name!r} in {store}")
    if prompt is not None:
        return Target(encoder.encode_text([prompt])[0], f"prompt {prompt!r}")
    if image is not None:
        if not hasattr(encoder, "encode_images"):
            raise NamesaeError("--image needs an encoder with an image tower (--model); the toy encoder is text only")
        return Target(encoder.encode_images([image])[0], f"image {image}")
    return Target(embedding_file(embedding, tensor, embedding_row), f"embedding {embedding}")


def embedding_file(path: Path, tensor: str | None = None, row: int | None = None) -> np.ndarray:
    """One embedding [d] from a .json list or a .safetensors file (tensor `tensor`, default 'edited' or its only
    one); of rows [n, d], row `row` or (default) their mean."""
    if not path.is_file():
        raise NamesaeError(f"{path}: embedding file not found")
    if path.suffix == ".json":
        try:
            x = np.asarray(json.loads(path.read_text(encoding="utf-8")), dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise NamesaeError(f"{path}: not a JSON list of numbers ({err})") from None
    elif path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise NamesaeError(f"{path}: not a readable safetensors file ({err})") from None
        key = tensor or ("edited" if "edited" in tensors else next(iter(tensors)) if len(tensors) == 1 else None)
        if key not in tensors:
            raise NamesaeError(f"{path}: pick a tensor with --tensor, one of {sorted(tensors)}")
        x = tensors[key].astype(np.float32)
    else:
        raise NamesaeError(f"{path}: use a .safetensors or .json embedding file")
    if x.ndim == 2:
        if row is not None:
            if not 0 <= row < len(x):
                raise NamesaeError(f"{path}: --embedding-row {row} is out of range (0..{len(x) - 1})")
            x = x[row]
        else:
            x = x.mean(0)  # rows of one steered embedding (one per seed) are averaged
    if x.ndim != 1:
        raise NamesaeError(f"{path}: expected one embedding [d] or rows [n, d], got shape {tuple(x.shape)}")
    return x
