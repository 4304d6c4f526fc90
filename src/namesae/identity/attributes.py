"""Attribute distributions of a name's images from zero-shot prompt ladders (age, gender, hair, ...).

A ladder is one prompt per value of an attribute ("a photo of a {} year old person" for 5, 15, ..., 85). For
each image row x, p(value | x) = softmax over the ladder of scale · cos(x, e(prompt)) (CLIP zero-shot with its
logit scale, 100 by default). Numeric ladders summarise a row by the expected value Σ p·value; categorical ones
by the probability vector. Per name: the mean and the (m - 1)-normalised standard deviation over its image rows;
for categorical ladders `std` is the mean over values of the std of p(value), and `mode` the most probable value.
Ladders are data (`namesae/data/ladders.json`), extendable by passing another file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from namesae.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ladder:
    """One attribute's prompts, the label of each value and, for numeric attributes, its number."""

    name: str
    labels: tuple[str, ...]
    prompts: tuple[str, ...]
    numeric: tuple[float, ...] | None = None


def _parse_ladder(item: Any, source: str) -> Ladder:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise ConfigError(f"{source}: every attribute needs a non-empty 'name'; got {item!r}")
    name = item["name"]
    values = item.get("values")
    if not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{source}: attribute '{name}': 'values' must list at least 2 strings")
    if "prompts" in item:
        prompts = item["prompts"]
        if not isinstance(prompts, list) or len(prompts) != len(values):
            raise ConfigError(f"{source}: attribute '{name}': 'prompts' must have one prompt per value")
    elif isinstance(item.get("template"), str) and "{}" in item["template"]:
        prompts = [item["template"].replace("{}", v) for v in values]
    else:
        raise ConfigError(f"{source}: attribute '{name}': give 'prompts' or a 'template' containing {{}}")
    numeric = item.get("numeric")
    if numeric is not None:
        if not isinstance(numeric, list) or len(numeric) != len(values) or \
                not all(isinstance(v, (int, float)) for v in numeric):
            raise ConfigError(f"{source}: attribute '{name}': 'numeric' must give one number per value")
        numeric = tuple(float(v) for v in numeric)
    return Ladder(name, tuple(values), tuple(str(p) for p in prompts), numeric)


def load_ladders(path: str | Path | None = None) -> list[Ladder]:
    """Attribute ladders from a JSON file, or the built-in `namesae/data/ladders.json`."""
    if path is None:
        text = resources.files("namesae").joinpath("data/ladders.json").read_text(encoding="utf-8")
        source = "namesae/data/ladders.json"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: ladders file not found")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{source}: invalid JSON ({err})") from None
    items = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: needs a non-empty list 'attributes'")
    ladders = [_parse_ladder(item, source) for item in items]
    names = [ladder.name for ladder in ladders]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: attribute names repeat: {names}")
    return ladders


@dataclass(frozen=True)
class LadderEmbeddings:
    """A ladder with the unit-normalised text embedding of each of its prompts."""

    ladder: Ladder
    embeddings: torch.Tensor  # [V, d] unit rows


def embed_ladders(ladders: Sequence[Ladder], encode_text: Callable[[list[str]], Any]) -> list[LadderEmbeddings]:
    """Embed every ladder's prompts with a text encoder function (list of prompts -> [V, d])."""
    out = []
    for ladder in ladders:
        emb = torch.as_tensor(np.asarray(encode_text(list(ladder.prompts)), dtype=np.float32))
        out.append(LadderEmbeddings(ladder, torch.nn.functional.normalize(emb, dim=1)))
    return out


def ladders_from_rows(ladders: Sequence[Ladder], prompts: np.ndarray, embeddings: Callable[[np.ndarray], Any]
                      ) -> tuple[list[LadderEmbeddings], list[str]]:
    """Ladders whose every prompt occurs among `prompts` (mean of the matching rows); names of the missing ones."""
    found, missing = [], []
    prompts = np.asarray(prompts, dtype=object).astype(str)
    for ladder in ladders:
        rows = [np.flatnonzero(prompts == p) for p in ladder.prompts]
        if any(r.size == 0 for r in rows):
            missing.append(ladder.name)
            continue
        emb = np.stack([np.asarray(embeddings(r), dtype=np.float32).mean(axis=0) for r in rows])
        found.append(LadderEmbeddings(ladder, torch.nn.functional.normalize(torch.as_tensor(emb), dim=1)))
    return found, missing


def attribute_batch(x: torch.Tensor, ladder: LadderEmbeddings, scale: float) -> list[dict[str, Any]]:
    """Per-name attribute summary of a batch of row sets x [B, m, d] on one ladder (see the module doc)."""
    b, m, _ = x.shape
    unit = torch.nn.functional.normalize(x.float(), dim=2)
    probs = torch.softmax(scale * unit @ ladder.embeddings.T, dim=2)  # [B, m, V]
    labels = ladder.ladder.labels
    out: list[dict[str, Any]] = []
    if ladder.ladder.numeric is not None:
        expected = probs @ torch.tensor(ladder.ladder.numeric)  # [B, m]
        mean = expected.mean(1)
        std = expected.std(1) if m > 1 else torch.full((b,), float("nan"))
        for i in range(b):
            out.append({"mean": float(mean[i]), "std": _finite(float(std[i]))})
        return out
    mean_p = probs.mean(1)  # [B, V]
    std = probs.std(1).mean(1) if m > 1 else torch.full((b,), float("nan"))
    for i in range(b):
        item: dict[str, Any] = {"mode": labels[int(mean_p[i].argmax())], "std": _finite(float(std[i]))}
        item.update({f"p_{label}": float(mean_p[i, v]) for v, label in enumerate(labels)})
        out.append(item)
    return out


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None
