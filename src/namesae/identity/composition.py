"""Name-part composition (text space): how well a full name's embedding is a non-negative mix of its parts.

part_composition("First Last") = cos(e, A w*), A = [e("First"), e("Last"), e(template)], w* = argmin_{w >= 0}
|A w - e|, where e(.) is the mean text embedding of a name's rows in the text store and the template is the
bare prompt template (rows of a configurable placeholder name). 1 = the full name is its parts; low = the full
name departs from its parts (a candidate identity). Single-token names have no parts: NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NameParts:
    """The first name and surname of a full name ("Mary Ann Smith" -> "Mary Ann" is not guessed: first token)."""

    first: str
    last: str


def split_name(name: str) -> NameParts | None:
    """First token and the rest of a full name; None for a single token."""
    tokens = name.split()
    if len(tokens) < 2:
        return None
    return NameParts(tokens[0], " ".join(tokens[1:]))


def nnls_cosine(full: np.ndarray, parts: np.ndarray) -> float:
    """Cosine between `full` [d] and its best non-negative combination of the rows of `parts` [k, d]."""
    from scipy.optimize import nnls

    a = np.asarray(parts, dtype=np.float64).T
    b = np.asarray(full, dtype=np.float64)
    w, _ = nnls(a, b)
    fit = a @ w
    denom = float(np.linalg.norm(fit) * np.linalg.norm(b))
    return float(fit @ b / denom) if denom > 0 else 0.0


def part_compositions(names: Sequence[str], mean_embedding: Callable[[str], np.ndarray | None],
                      template: np.ndarray | None, parts_of: Callable[[str], NameParts | None] = split_name
                      ) -> dict[str, float | None]:
    """part_composition of every name whose full name and both parts have text embeddings (else None)."""
    out: dict[str, float | None] = {}
    for name in names:
        parts = parts_of(name)
        full = mean_embedding(name)
        if parts is None or full is None:
            out[name] = None
            continue
        first, last = mean_embedding(parts.first), mean_embedding(parts.last)
        if first is None or last is None:
            out[name] = None
            continue
        columns = [first, last] + ([template] if template is not None else [])
        out[name] = nnls_cosine(full, np.stack(columns))
    return out
