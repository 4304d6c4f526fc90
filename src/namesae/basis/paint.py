"""Painting a target as a prompt of name parts and phrases, re-encoded honestly; best (first name, surname) pairs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from namesae.basis.fit import centered_cosine, cosine, sparse_nonnegative_fit
from namesae.basis.vocabulary import DEFAULT_MAX_PER_KIND, Vocabulary, render_painting
from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError


@dataclass(frozen=True)
class PaintTerm:
    """One term of a painting."""

    term: str
    kind: str
    weight: float


@dataclass(frozen=True)
class PathStep:
    """The painting after n steps of the greedy path, rendered and re-encoded."""

    n_terms: int
    prompt: str
    cosine: float  # of the combination at this step
    reencoded_cosine: float
    reencoded_centered_cosine: float


@dataclass(frozen=True)
class Painting:
    """A target painted as a sparse non-negative combination of vocabulary terms, and as a re-encoded prompt."""

    terms: list[PaintTerm]
    reference_weight: float
    prompt: str
    cosine: float  # combination vs target
    centered_cosine: float
    reencoded_cosine: float  # the rendered prompt, re-encoded by the encoder, vs target: the honest number
    reencoded_centered_cosine: float
    chosen_step: int  # which step of the path this painting is (its number of terms)
    path: list[PathStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


CHOOSE = ("reencoded", "full")


def paint(target: np.ndarray, vocab: Vocabulary, encoder: TextEncoder, k: int = 4, exclude: Sequence[str] = (),
          max_per_kind: Mapping[str, int] | None = None, choose: str = "reencoded") -> Painting:
    """Paint target [d] with at most k vocabulary terms (excluding `exclude`), then render and re-encode it.

    Every step of the greedy path is rendered and re-encoded in one batch; `choose="reencoded"` returns the step
    whose re-encoded prompt is closest to the target (a prompt cannot carry the fit's weights, so a small-weight
    term may hurt once written out), `choose="full"` the fit with every chosen term.
    """
    if choose not in CHOOSE:
        raise NamesaeError(f"choose must be one of {CHOOSE}, got {choose!r}")
    t = _vector(target, vocab.dim, "target")
    voc = vocab.without(exclude) if exclude else vocab
    if len(voc) == 0:
        raise NamesaeError("the vocabulary is empty after exclusions")
    limits = dict(DEFAULT_MAX_PER_KIND if max_per_kind is None else max_per_kind)
    fit = sparse_nonnegative_fit(t, voc.embeddings - voc.reference[None], voc.reference, k, voc.kinds, limits)
    prompts = [render_painting([(voc.terms[i], voc.kinds[i]) for i in step.indices], voc.template, voc.filler)
               for step in fit.steps]
    x = np.asarray(encoder.encode_text(prompts), dtype=np.float64)
    re_cos = [cosine(xi, t) for xi in x]
    path = [PathStep(len(step.indices), p, step.cosine, c, centered_cosine(xi, t, voc.reference))
            for step, p, c, xi in zip(fit.steps, prompts, re_cos, x)]
    n = int(np.argmax(re_cos)) if choose == "reencoded" else len(fit.steps) - 1
    step = fit.steps[n]
    return Painting(
        terms=[PaintTerm(voc.terms[i], voc.kinds[i], w) for i, w in zip(step.indices, step.weights)],
        reference_weight=step.reference_weight, prompt=prompts[n], cosine=step.cosine,
        centered_cosine=centered_cosine(step.fit, t, voc.reference), reencoded_cosine=re_cos[n],
        reencoded_centered_cosine=path[n].reencoded_centered_cosine, chosen_step=n, path=path)


@dataclass(frozen=True)
class PairCandidate:
    """A (first name, surname) pair for a target: predicted by the additive model, then re-encoded."""

    first: str
    last: str
    prompt: str
    predicted_centered_cosine: float  # cos of (a_first - r) + (a_last - r) to the target, orthogonal to r
    reencoded_cosine: float
    reencoded_centered_cosine: float


@dataclass(frozen=True)
class PairSearch:
    """The best (first, surname) pairs for a target, best re-encoded cosine first."""

    pairs: list[PairCandidate]
    n_scored: int  # pairs in the grid

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def best_pairs(target: np.ndarray, vocab: Vocabulary, encoder: TextEncoder, top: int = 10, reencode: int = 50,
               exclude: Sequence[str] = (), batch: int = 512) -> PairSearch:
    """Score every (first, surname) pair of the vocabulary for target [d] in batches; re-encode the best ones.

    A pair's prompt is predicted additively, r + (a_f - r) + (a_l - r); pairs are ranked by its cosine to the
    target orthogonal to r (one [batch, d] x [d, L] product per batch of first names), and the `reencode` best are
    rendered ("a photo of First Last"), re-encoded and re-ranked by their real cosine.
    """
    import torch

    t = _vector(target, vocab.dim, "target")
    voc = vocab.without(exclude) if exclude else vocab
    firsts, lasts = voc.of_kind("first"), voc.of_kind("last")
    if len(firsts) == 0 or len(lasts) == 0:
        raise NamesaeError(f"pair search needs first names and surnames in the vocabulary; it has "
                           f"{len(firsts)} first names and {len(lasts)} surnames")
    if top < 1 or reencode < 1:
        raise NamesaeError(f"top and reencode must be >= 1, got {top}, {reencode}")
    banned = {e.lower() for e in exclude}
    u = voc.reference.astype(np.float64) / np.linalg.norm(voc.reference)

    def perp(x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x, dtype=np.float64)
        return torch.from_numpy(x - np.outer(x @ u, u) if x.ndim == 2 else x - (x @ u) * u)

    df, dl, tp = perp(firsts.embeddings - voc.reference), perp(lasts.embeddings - voc.reference), perp(t)
    tf, tl = df @ tp, dl @ tp  # [F], [L]
    nf, nl = (df * df).sum(1), (dl * dl).sum(1)
    tnorm = float(tp.norm())
    n_keep = min(reencode, len(firsts) * len(lasts))
    best_val = torch.full((0,), -2.0, dtype=torch.float64)
    best_idx = torch.zeros((0,), dtype=torch.int64)
    for start in range(0, len(firsts), batch):
        stop = min(start + batch, len(firsts))
        cross = df[start:stop] @ dl.T  # [b, L]
        num = tf[start:stop, None] + tl[None]
        den = (nf[start:stop, None] + nl[None] + 2 * cross).clamp_min(1e-24).sqrt() * max(tnorm, 1e-12)
        score = (num / den).flatten()
        idx = torch.arange(start * len(lasts), stop * len(lasts))
        best_val, order = torch.cat([best_val, score]).topk(min(n_keep, len(best_val) + len(score)))
        best_idx = torch.cat([best_idx, idx])[order]
    cands = []
    for flat, pred in zip(best_idx.tolist(), best_val.tolist()):
        f, l = firsts.terms[flat // len(lasts)], lasts.terms[flat % len(lasts)]
        if f"{f} {l}".lower() not in banned:
            cands.append((f, l, pred))
    prompts = [render_painting([(f, "first"), (l, "last")], voc.template, voc.filler) for f, l, _ in cands]
    x = np.asarray(encoder.encode_text(prompts), dtype=np.float64) if prompts else np.zeros((0, vocab.dim))
    out = [PairCandidate(f, l, p, float(pred), cosine(xi, t), centered_cosine(xi, t, voc.reference))
           for (f, l, pred), p, xi in zip(cands, prompts, x)]
    out.sort(key=lambda c: -c.reencoded_cosine)
    return PairSearch(out[:top], len(firsts) * len(lasts))


def _vector(x: Any, dim: int, what: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.ndim == 2 and v.shape[0] == 1:
        v = v[0]
    if v.shape != (dim,):
        raise NamesaeError(f"{what} has shape {tuple(v.shape)}; expected one vector of dimension {dim} "
                           f"(the vocabulary's space)")
    if not np.isfinite(v).all() or not np.linalg.norm(v) > 0:
        raise NamesaeError(f"{what} is zero or holds NaN/Inf")
    return v
