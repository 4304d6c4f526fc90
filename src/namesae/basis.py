"""Name basis: paint a target embedding as a short prompt of name parts and attribute phrases; name axes.

Vocabulary. Every term is embedded once, in context, by the encoder that will re-encode the painting: a name
(first name, surname, full name) fills the template ("a photo of Vicki"), a phrase is appended to the template
filled with a neutral filler ("a photo of a person, elderly"); the filled template itself is the reference r.
An atom is a term's offset from the reference, a_i - r: what the term adds to a prompt.

Fit (non-negative OMP). The target t is approximated by c = w_0 r + Σ_{i in S} w_i (a_i - r), w >= 0, |S| <= K:
greedily add the atom most positively correlated with the residual, refit all weights by NNLS on the support
(w_0 free, not counted in K), stop at K atoms or when no atom correlates positively. Why OMP and not NNLS with a
sparsity penalty: K is a hard budget (a prompt holds a few words), OMP meets it exactly with no penalty to tune,
each step costs one pass over the vocabulary (a [V, d] x [d] product) and its NNLS has at most K + 1 columns, and
the greedy order gives a path (1 term, 2 terms, ...) that we also render. Kind constraints follow what a prompt
can say: at most one first name and one surname (rendered "First Last"), or one full name instead of both.

Honest number. The combination's cosine to t is what the linear picture promises; the painting is then rendered
as a prompt (template with "First Last", then ", phrase" per phrase — "a photo of Vicki Sullivan, elderly"),
re-encoded by the real encoder, and its cosine to t is reported too. Both are also given orthogonal to the
reference ("centered": the component along r removed from both vectors), which measures what the name adds
beyond the bare template and is not inflated by the direction every prompt shares.

Axes. PCA over the embeddings of well-known full names; the coordinates of any embedding on those axes; and a walk
along one axis reporting, at each step, the first names and surnames nearest to it (in the axes' coordinates,
each kind centred on its own mean), i.e. which name parts move along the axis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError, StoreError
from namesae.names import render

log = logging.getLogger(__name__)

TERM_KINDS = ("first", "last", "full", "phrase")
NAME_KINDS = ("first", "last", "full")
REFERENCE = "<reference>"
DEFAULT_TEMPLATE = "a photo of {name}"
DEFAULT_FILLER = "a person"
DEFAULT_MAX_PER_KIND = MappingProxyType({"first": 1, "last": 1, "full": 1})
# Attribute phrases of the default vocabulary: age, gender, ethnicity, hair, body, glasses, expression.
DEFAULT_PHRASES = (
    "a child", "a teenager", "a young adult", "an adult", "middle-aged", "a senior", "elderly", "a man", "a woman",
    "White", "Black", "East Asian", "South Asian", "Southeast Asian", "Latino", "Middle Eastern", "black hair",
    "brown hair", "blond hair", "red hair", "grey hair", "bald", "slim", "average-build", "heavy-set",
    "wearing glasses", "without glasses", "smiling", "neutral expression",
)
VOCAB_ATTR = "namesae_basis_vocabulary"
VOCAB_FORMAT = 1


# ---- vocabulary ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vocabulary:
    """Terms embedded in context by one encoder, with the reference (the template filled with the filler)."""

    terms: tuple[str, ...]  # [V]
    kinds: tuple[str, ...]  # [V], each in TERM_KINDS
    embeddings: np.ndarray  # [V, d] float32: each term in context
    reference: np.ndarray  # [d] float32: the filled template
    template: str
    filler: str
    space: str

    def __post_init__(self) -> None:
        if len(self.terms) != len(self.kinds) or len(self.terms) != len(self.embeddings):
            raise NamesaeError(f"vocabulary: {len(self.terms)} terms, {len(self.kinds)} kinds and "
                               f"{len(self.embeddings)} embeddings must match")
        bad = sorted(set(self.kinds) - set(TERM_KINDS))
        if bad:
            raise NamesaeError(f"vocabulary: term kinds {bad} are unknown; use {TERM_KINDS}")

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self.reference.shape[0])

    def subset(self, keep: np.ndarray) -> Vocabulary:
        """The vocabulary restricted to a boolean mask [V] or index array."""
        idx = np.arange(len(self))[keep]
        return Vocabulary(tuple(self.terms[i] for i in idx), tuple(self.kinds[i] for i in idx),
                          self.embeddings[idx], self.reference, self.template, self.filler, self.space)

    def without(self, terms: Sequence[str]) -> Vocabulary:
        """The vocabulary without the given terms (case-insensitive), e.g. a target's own name and its parts."""
        drop = {t.lower() for t in terms}
        return self.subset(np.array([t.lower() not in drop for t in self.terms], dtype=bool))

    def of_kind(self, *kinds: str) -> Vocabulary:
        """The terms of the given kinds."""
        return self.subset(np.isin(np.asarray(self.kinds), kinds))


def term_prompt(term: str, kind: str, template: str = DEFAULT_TEMPLATE, filler: str = DEFAULT_FILLER) -> str:
    """The prompt a term is embedded in: names fill the template, phrases follow the filled template."""
    if kind in NAME_KINDS:
        return render(template, term)
    if kind == "phrase":
        return f"{render(template, filler)}, {term}"
    raise NamesaeError(f"term kind {kind!r} is unknown; use one of {TERM_KINDS}")


def render_painting(terms: Sequence[tuple[str, str]], template: str = DEFAULT_TEMPLATE,
                    filler: str = DEFAULT_FILLER) -> str:
    """The prompt of a painting [(term, kind)]: "a photo of First Last, phrase, phrase" (filler if no name)."""
    full = [t for t, k in terms if k == "full"]
    parts = [t for t, k in terms if k == "first"] + [t for t, k in terms if k == "last"]
    phrases = [t for t, k in terms if k == "phrase"]
    slot = " ".join(full + parts) if full or parts else filler
    prompt = render(template, slot)
    return prompt + "".join(f", {p}" for p in phrases)


def build_vocabulary(encoder: TextEncoder, terms: Mapping[str, Sequence[str]], template: str = DEFAULT_TEMPLATE,
                     filler: str = DEFAULT_FILLER) -> Vocabulary:
    """Embed terms by kind ({"first": [...], "last": [...], "phrase": [...]}) once, in context."""
    names: list[str] = []
    kinds: list[str] = []
    for kind, items in terms.items():
        if kind not in TERM_KINDS:
            raise NamesaeError(f"vocabulary: term kind {kind!r} is unknown; use one of {TERM_KINDS}")
        for term in items:
            if not isinstance(term, str) or not term.strip():
                raise NamesaeError(f"vocabulary: empty or non-text {kind} term {term!r}")
            names.append(term.strip())
            kinds.append(kind)
    if not names:
        raise NamesaeError("vocabulary: no terms given")
    prompts = [term_prompt(t, k, template, filler) for t, k in zip(names, kinds)] + [render(template, filler)]
    x = np.asarray(encoder.encode_text(prompts), dtype=np.float32)
    return Vocabulary(tuple(names), tuple(kinds), x[:-1], x[-1], template, filler, encoder.space("text"))


def write_vocabulary(vocab: Vocabulary, path: str | Path, normalized: bool = True) -> Path:
    """Cache a vocabulary as an embedding store (reference first; term kinds and template in a root attribute)."""
    from namesae.store import write_store

    runs: list[list[Any]] = []
    for kind in vocab.kinds:  # run-length kinds keep the attribute small for any vocabulary size
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    meta = {"format_version": VOCAB_FORMAT, "template": vocab.template, "filler": vocab.filler, "kind_runs": runs}
    prompts = [render(vocab.template, vocab.filler)] + \
        [term_prompt(t, k, vocab.template, vocab.filler) for t, k in zip(vocab.terms, vocab.kinds)]
    x = np.concatenate([vocab.reference[None], vocab.embeddings])
    return write_store(path, x, [REFERENCE, *vocab.terms], prompts, "text", vocab.space, normalized=normalized,
                       attrs={VOCAB_ATTR: json.dumps(meta)})


def read_vocabulary(path: str | Path) -> Vocabulary:
    """A vocabulary cached by `write_vocabulary` (error naming the file if the store is not one)."""
    from namesae.store import EmbeddingStore

    with EmbeddingStore.open(path) as store:
        raw = store.attrs.get(VOCAB_ATTR)
        if raw is None:
            raise StoreError(f"{path}: not a basis vocabulary (root attribute '{VOCAB_ATTR}' missing); build one "
                             f"with `namesae basis vocab`")
        try:
            meta = json.loads(raw)
            kinds = [k for k, n in meta["kind_runs"] for _ in range(int(n))]
            template, filler = meta["template"], meta["filler"]
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"{path}: attribute '{VOCAB_ATTR}' is malformed ({err}); rebuild the vocabulary") from None
        names = [str(n) for n in store.names]
        if len(names) != len(kinds) + 1 or names[0] != REFERENCE:
            raise StoreError(f"{path}: {len(names)} rows do not match the {len(kinds)} terms + reference of "
                             f"attribute '{VOCAB_ATTR}'; rebuild the vocabulary")
        x = store.read()
        return Vocabulary(tuple(names[1:]), tuple(kinds), x[1:], x[0], template, filler, store.space)


# ---- the fit -------------------------------------------------------------------------------------------------
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors [d] (0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def centered_cosine(a: np.ndarray, b: np.ndarray, reference: np.ndarray) -> float:
    """Cosine of a and b [d] with their components along the reference removed."""
    u = reference / np.linalg.norm(reference)
    return cosine(a - (a @ u) * u, b - (b @ u) * u)


@dataclass(frozen=True)
class FitStep:
    """The fit after n atoms: the support (in selection order), its NNLS weights and the fit's cosine."""

    indices: list[int]  # atom ids with a positive weight, in the greedy order
    weights: list[float]  # their weights
    reference_weight: float  # w_0
    cosine: float  # cosine of the combination to the target
    fit: np.ndarray  # [d] the combination


@dataclass(frozen=True)
class SparseFit:
    """A sparse non-negative fit: one step per added atom; the last step is the full fit."""

    steps: list[FitStep]

    @property
    def final(self) -> FitStep:
        """The fit with every chosen atom."""
        return self.steps[-1]


def _nnls(columns: np.ndarray, target: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    w, _ = nnls(columns.T.astype(np.float64), target.astype(np.float64), maxiter=50 * columns.shape[0] + 100)
    return w


def sparse_nonnegative_fit(target: np.ndarray, offsets: np.ndarray, reference: np.ndarray, k: int,
                           kinds: Sequence[str] | None = None, max_per_kind: Mapping[str, int] | None = None,
                           tol: float = 1e-6) -> SparseFit:
    """Non-negative OMP: target [d] ~ w_0 reference + Σ w_i offsets[i] [V, d], w >= 0, at most k atoms."""
    if k < 1:
        raise NamesaeError(f"k must be >= 1, got {k}")
    t = np.asarray(target, dtype=np.float64)
    a = np.asarray(offsets, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != t.shape[0] or r.shape != t.shape:
        raise NamesaeError(f"shapes disagree: target {t.shape}, atoms {a.shape}, reference {r.shape}")
    norms = np.linalg.norm(a, axis=1)
    unit = a / np.where(norms > 0, norms, 1.0)[:, None]
    allowed = norms > 0
    kinds_arr = np.asarray(kinds) if kinds is not None else None
    limits = dict(max_per_kind or {})
    chosen: list[int] = []
    w = _nnls(r[None], t)
    fit = w[0] * r
    steps = [FitStep([], [], float(w[0]), cosine(fit, t), fit)]
    while len(chosen) < k:
        scores = np.where(allowed, unit @ (t - fit), -np.inf)
        j = int(np.argmax(scores))
        if not scores[j] > tol:
            break
        chosen.append(j)
        allowed[j] = False
        if kinds_arr is not None:
            kind = kinds_arr[j]
            used = sum(kinds_arr[i] == kind for i in chosen)
            if kind in limits and used >= limits[kind]:
                allowed &= kinds_arr != kind
            if kind == "full":  # a full name takes the name slot: no separate first name or surname
                allowed &= ~np.isin(kinds_arr, ("first", "last"))
            elif kind in ("first", "last"):
                allowed &= kinds_arr != "full"
        cols = np.concatenate([r[None], a[chosen]])
        w = _nnls(cols, t)
        fit = w @ cols
        keep = [(i, float(wi)) for i, wi in zip(chosen, w[1:]) if wi > 0]
        steps.append(FitStep([i for i, _ in keep], [wi for _, wi in keep], float(w[0]), cosine(fit, t), fit))
    return SparseFit(steps)


_F32_UNIT = 2.0**-24  # unit roundoff of float32


def sparse_nonnegative_fit_batch(targets: np.ndarray, offsets: np.ndarray, reference: np.ndarray, k: int,
                                 kinds: Sequence[str] | None = None, max_per_kind: Mapping[str, int] | None = None,
                                 tol: float = 1e-6, batch: int = 512) -> list[SparseFit]:
    """`sparse_nonnegative_fit` for many targets [n, d] at once: one [batch, d] x [d, V] product per step.

    Same fits as the per-target function (same atoms chosen, same NNLS weights): the atoms are normalised once,
    each step correlates a batch of residuals with every atom in float32, and every atom whose float32 score is
    within the float32 error bound of the row's best is re-scored in float64 before the argmax, so the float64
    choice of the per-target fit is kept. Memory: the [batch, V] float32 scores (512 x 50,000: 100 MB), plus a
    [batch, V] mask when kinds are given.
    """
    if k < 1:
        raise NamesaeError(f"k must be >= 1, got {k}")
    if batch < 1:
        raise NamesaeError(f"batch must be >= 1, got {batch}")
    t_all = np.asarray(targets, dtype=np.float64)
    a = np.asarray(offsets)
    r = np.asarray(reference, dtype=np.float64)
    if t_all.ndim != 2 or a.ndim != 2 or a.shape[1] != t_all.shape[1] or r.shape != (t_all.shape[1],):
        raise NamesaeError(f"shapes disagree: targets {t_all.shape} (expected [n, d]), atoms {a.shape}, "
                           f"reference {r.shape}")
    kinds_arr = np.asarray(kinds) if kinds is not None else None
    if kinds_arr is not None and kinds_arr.shape != (len(a),):
        raise NamesaeError(f"{len(kinds_arr)} kinds for {len(a)} atoms")
    norms = np.empty(len(a))
    unit32 = np.empty(a.shape, dtype=np.float32)
    for start in range(0, len(a), 4096):  # in row blocks: no [V, d] float64 copy
        block = a[start:start + 4096].astype(np.float64)
        norms[start:start + 4096] = nb = np.linalg.norm(block, axis=1)
        unit32[start:start + 4096] = block / np.where(nb > 0, nb, 1.0)[:, None]
    d = a.shape[1]
    # |float32 score - float64 score| <= slack * |residual| (dot product of d terms, rounded inputs), with x2 margin
    slack = 2.0 * (d + 2) * _F32_UNIT / (1.0 - (d + 2) * _F32_UNIT)
    out: list[SparseFit] = []
    for start in range(0, len(t_all), batch):
        out += _fit_chunk(t_all[start:start + batch], a, r, norms, unit32, k, kinds_arr, dict(max_per_kind or {}),
                          tol, slack)
    return out


def _fit_chunk(t_all: np.ndarray, a: np.ndarray, r: np.ndarray, norms: np.ndarray, unit32: np.ndarray, k: int,
               kinds_arr: np.ndarray | None, limits: dict[str, int], tol: float, slack: float) -> list[SparseFit]:
    m = len(t_all)
    usable = norms > 0
    dead = np.flatnonzero(~usable)
    # Kind rules need a mask per target; without kinds the banned atoms are the chosen ones (and zero atoms).
    allowed = np.repeat(usable[None], m, axis=0) if kinds_arr is not None else None  # [m, V]
    masks = {kd: kinds_arr != kd for kd in np.unique(kinds_arr)} if kinds_arr is not None else {}
    no_parts = ~np.isin(kinds_arr, ("first", "last")) if kinds_arr is not None else None
    chosen: list[list[int]] = [[] for _ in range(m)]
    fits = np.empty_like(t_all)
    steps: list[list[FitStep]] = []
    for i, t in enumerate(t_all):
        w = _nnls(r[None], t)
        fits[i] = w[0] * r
        steps.append([FitStep([], [], float(w[0]), cosine(fits[i], t), fits[i].copy())])
    live = np.arange(m)
    for _ in range(k):
        if live.size == 0:
            break
        lrows = np.arange(len(live))
        resid = t_all[live] - fits[live]  # [l, d]
        s32 = resid.astype(np.float32) @ unit32.T  # [l, V]
        if allowed is not None:
            np.copyto(s32, -np.inf, where=~allowed[live])
        else:
            lens = [len(chosen[i]) for i in live]
            s32[np.repeat(lrows, lens), [c for i in live for c in chosen[i]]] = -np.inf
            s32[:, dead] = -np.inf
        top_j = s32.argmax(axis=1)
        top = s32[lrows, top_j].copy()
        thresh = np.where(np.isfinite(top), top - 2.0 * slack * np.linalg.norm(resid, axis=1), np.inf)
        thresh = thresh.astype(np.float32)
        s32[lrows, top_j] = -np.inf
        tied = np.flatnonzero(s32.max(axis=1) >= thresh)  # rows with a second near-best atom (rare)
        rows, cols = lrows, top_j
        if tied.size:
            s32[tied, top_j[tied]] = top[tied]
            r_t, c_t = np.nonzero(s32[tied] >= thresh[tied, None])
            rows = np.concatenate([np.delete(lrows, tied), tied[r_t]])
            cols = np.concatenate([np.delete(top_j, tied), c_t])
        del s32
        # Re-score the near-best atoms in float64 (as the per-target fit scores them) and take the best.
        unit_c = a[cols].astype(np.float64) / np.where(norms[cols] > 0, norms[cols], 1.0)[:, None]
        exact = np.where(np.isfinite(top[rows]), np.einsum("ij,ij->i", unit_c, resid[rows]), -np.inf)
        order = np.lexsort((cols, -exact, rows))  # per row: best float64 score first, lowest index on ties
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        best_j, best_s = np.empty(len(live), dtype=np.int64), np.empty(len(live))
        best_j[rows[first]], best_s[rows[first]] = cols[first], exact[first]
        still = []
        for i, j, score in zip(live.tolist(), best_j.tolist(), best_s.tolist()):
            if not score > tol:
                continue  # no atom correlates positively: this target is done
            chosen[i].append(j)
            if allowed is not None:
                allowed[i, j] = False
                kind = kinds_arr[j]
                used = sum(kinds_arr[c] == kind for c in chosen[i])
                if kind in limits and used >= limits[kind]:
                    allowed[i] &= masks[kind]
                if kind == "full":  # a full name takes the name slot: no separate first name or surname
                    allowed[i] &= no_parts
                elif kind in ("first", "last") and "full" in masks:
                    allowed[i] &= masks["full"]
            cols_i = np.concatenate([r[None], a[chosen[i]].astype(np.float64)])
            w = _nnls(cols_i, t_all[i])
            fits[i] = fit = w @ cols_i
            keep = [(c, float(wc)) for c, wc in zip(chosen[i], w[1:]) if wc > 0]
            steps[i].append(FitStep([c for c, _ in keep], [wc for _, wc in keep], float(w[0]),
                                    cosine(fit, t_all[i]), fit))
            if len(chosen[i]) < k:
                still.append(i)
        live = np.asarray(still, dtype=np.int64)
    return [SparseFit(s) for s in steps]


# ---- painting ------------------------------------------------------------------------------------------------
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


# ---- axes ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NameAxes:
    """A PCA basis over full-name embeddings: mean, unit axes, their spread, and every name's coordinates."""

    names: tuple[str, ...]
    mean: np.ndarray  # [d]
    axes: np.ndarray  # [k, d] orthonormal
    scale: np.ndarray  # [k] standard deviation of the names' coordinates on each axis
    explained: np.ndarray  # [k] share of the total variance
    coords: np.ndarray  # [n, k]

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """Coordinates [m, k] of embeddings x [m, d] (or [d] -> [k]) on the axes."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.mean.shape[0]:
            raise NamesaeError(f"embeddings of dimension {x.shape[-1]} do not live in the axes' space "
                               f"(dimension {self.mean.shape[0]})")
        return (x - self.mean) @ self.axes.T


def fit_name_axes(embeddings: np.ndarray, names: Sequence[str], n_axes: int = 8) -> NameAxes:
    """PCA axes [n_axes, d] of name embeddings [n, d] (one row per name)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(names):
        raise NamesaeError(f"axes need one embedding per name: got {x.shape} for {len(names)} names")
    if len(x) < 3:
        raise NamesaeError(f"axes need at least 3 names, got {len(x)}")
    k = min(n_axes, len(x) - 1, x.shape[1])
    if k < 1:
        raise NamesaeError(f"n_axes must be >= 1, got {n_axes}")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = vt[:k]
    # Sign convention: the heaviest loading of each axis is positive (stable across runs and platforms).
    axes *= np.sign(axes[np.arange(k), np.abs(axes).argmax(1)])[:, None]
    var = s**2 / (len(x) - 1)
    coords = (x - mean) @ axes.T
    return NameAxes(tuple(names), mean, axes, np.sqrt(var[:k]), var[:k] / var.sum(), coords)


@dataclass(frozen=True)
class WalkStep:
    """One point of an axis walk: its offset in standard deviations and the name parts nearest to it."""

    sigma: float
    nearest: dict[str, list[tuple[str, float]]]  # kind -> [(term, distance in the axes' coordinates)]


def walk_axis(axes: NameAxes, axis: int, vocab: Vocabulary, span: float = 2.0, steps: int = 9, top: int = 3,
              kinds: Sequence[str] = ("first", "last")) -> list[WalkStep]:
    """Walk from -span to +span standard deviations along one axis; nearest first names and surnames per step."""
    if not 0 <= axis < len(axes.axes):
        raise NamesaeError(f"axis {axis} is out of range; these axes are 0..{len(axes.axes) - 1}")
    if steps < 2 or top < 1:
        raise NamesaeError(f"steps must be >= 2 and top >= 1, got {steps}, {top}")
    coords = {}
    for kind in kinds:
        part = vocab.of_kind(kind)
        if len(part) == 0:
            raise NamesaeError(f"the vocabulary holds no {kind} terms to walk with")
        c = axes.coordinates(part.embeddings)
        coords[kind] = (part.terms, c - c.mean(0))  # each kind centred on its own mean
    out = []
    for s in np.linspace(-span, span, steps):
        point = np.zeros(len(axes.axes))
        point[axis] = s * axes.scale[axis]
        nearest = {}
        for kind, (terms, c) in coords.items():
            dist = np.linalg.norm(c - point, axis=1)
            order = np.argsort(dist, kind="stable")[:top]
            nearest[kind] = [(terms[i], float(dist[i])) for i in order]
        out.append(WalkStep(float(s), nearest))
    return out
