"""Anti-patterns: additions to a prompt that cancel a feature while the rest of the embedding stays close."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError
from namesae.search.target import FeatureTarget, encode_prompts, search_tokens

log = logging.getLogger(__name__)


POSITIONS = ("end", "any")


@dataclass(frozen=True)
class Addition:
    """A prompt with an addition, scored: the feature's drop and how close the embedding stays."""

    addition: str
    prompt: str
    activation: float
    drop: float  # activation before - after
    drop_fraction: float  # drop / activation before
    cosine: float  # to the original prompt's embedding
    rest_cosine: float  # the same with the features' decoder directions projected out of both


@dataclass(frozen=True)
class AntiPatternSearch:
    """Additions that suppress a feature in a prompt: the ranked first additions and the greedy path."""

    prompt: str
    activation: float
    ranked: list[Addition]  # the best single additions, most suppressing first (those keeping the rest close)
    path: list[Addition]  # stacked additions, one per step
    n_candidates: int
    n_rejected: int  # candidates that moved the rest of the embedding too far

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def _rest_projector(directions: np.ndarray | None, dim: int) -> np.ndarray | None:
    if directions is None or len(directions) == 0:
        return None
    q, _ = np.linalg.qr(np.asarray(directions, dtype=np.float64).T)  # [d, k] orthonormal span
    return np.eye(dim) - q @ q.T


def _cos_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y)
    return (x @ y) / np.maximum(nx * ny, 1e-12)


def addition_candidates(words: Sequence[str], tokens: Sequence[str], positions: str = "end"
                        ) -> list[tuple[str, str]]:
    """[(new prompt, addition)]: each token appended as ", token" (end) or also inserted at every gap (any)."""
    if positions not in POSITIONS:
        raise NamesaeError(f"positions must be one of {POSITIONS}, got {positions!r}")
    text = " ".join(words)
    out = [(f"{text}, {tok}", tok) for tok in tokens]
    if positions == "any":
        out += [(" ".join((*words[:i], tok, *words[i:])), f"{tok} @{i}") for i in range(len(words)) for tok in tokens]
    return out


def find_cancellers(prompt: str, tokens: Sequence[str], encoder: TextEncoder, target: FeatureTarget,
                    steps: int = 1, positions: str = "end", min_rest_cosine: float = 0.9, top: int = 10,
                    batch: int = 2048) -> AntiPatternSearch:
    """Additions to a prompt that suppress the target while keeping the rest of its embedding close."""
    if steps < 1 or top < 1:
        raise NamesaeError(f"steps and top must be >= 1, got {steps}, {top}")
    if not -1.0 <= min_rest_cosine <= 1.0:
        raise NamesaeError(f"min_rest_cosine must be in [-1, 1], got {min_rest_cosine}")
    tokens = search_tokens(tokens, prompt)
    x0 = encode_prompts(encoder, [prompt], batch)[0].astype(np.float64)
    act0 = float(target.activation(x0[None])[0])
    if act0 <= 0:
        log.warning("the target features do not fire on %r (activation %.3g): nothing to cancel", prompt, act0)
    proj = _rest_projector(target.directions, x0.shape[0])
    rest0 = x0 if proj is None else proj @ x0
    current, current_act = prompt, act0
    ranked: list[Addition] = []
    path: list[Addition] = []
    n_candidates = n_rejected = 0
    used: set[str] = set()
    for step in range(steps):
        cands = [(p, a) for p, a in addition_candidates(current.split(), tokens, positions)
                 if a.split(" @")[0] not in used]
        if not cands:
            break
        texts = [p for p, _ in cands]
        x = encode_prompts(encoder, texts, batch).astype(np.float64)
        act = target.activation(x)
        cos = _cos_rows(x, x0)
        rest = cos if proj is None else _cos_rows(x @ proj.T, rest0)
        ok = rest >= min_rest_cosine
        n_candidates += len(cands)
        n_rejected += int((~ok).sum())
        order = sorted(np.flatnonzero(ok), key=lambda i: (act[i], -rest[i]))
        adds = [Addition(cands[i][1], texts[i], float(act[i]), act0 - float(act[i]),
                         (act0 - float(act[i])) / act0 if act0 > 0 else 0.0, float(cos[i]), float(rest[i]))
                for i in order[:top]]
        if step == 0:
            ranked = adds
        if not adds or adds[0].activation >= current_act:
            break  # no addition suppresses further
        path.append(adds[0])
        current, current_act = adds[0].prompt, adds[0].activation
        used.add(adds[0].addition.split(" @")[0])
    return AntiPatternSearch(prompt, act0, ranked, path, n_candidates, n_rejected)
