"""Feature search: prompts that drive an SAE feature (or group), additions that cancel it, and feature contrasts.

A `FeatureTarget` is a set of SAE features and a way to compute codes; its activation on an embedding is the sum
of the features' codes (a group of one feature is a feature). Every search goes through the real text encoder:
candidate prompts are encoded in batches and scored on the SAE's codes, never estimated in embedding space.

- `rank_prompts`: every prompt of a corpus (names x templates, vocabulary phrases) ranked by activation.
- `improve_prompt`: discrete search from a prompt, word by word: each step tries substituting every word and
  inserting at every gap each vocabulary token (beam search; beam 1 is greedy) and keeps the best candidates;
  the activation gained at each step is reported. It stops when no candidate gains.
- `find_cancellers`: for a prompt and an unwanted feature, every vocabulary addition (appended as ", word", or
  inserted at any gap) is tried; additions are ranked by the feature's drop, among those that keep the rest of
  the embedding close: cosine to the original embedding with the features' decoder directions projected out
  (`rest_cosine`) >= min_rest_cosine. Additions stack greedily for `steps` > 1.
- `contrast_codes` / `contrast_store`: every feature's mean difference and Cohen's d between two row sets,
  ranked by |d|, with a percentile bootstrap CI of d for the top features (resampling rows of each set).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError
from namesae.names import render

log = logging.getLogger(__name__)

Codes = Callable[[np.ndarray], Any]  # embeddings [n, d] -> codes [n, d_sae] (numpy or torch)
OPS = ("substitute", "insert")
POSITIONS = ("end", "any")


def as_numpy(x: Any, dtype: type = np.float32) -> np.ndarray:
    """A numpy array of `dtype` from numpy, lists or torch tensors (any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


@dataclass(frozen=True)
class FeatureTarget:
    """SAE features whose summed code a search drives up or down."""

    codes: Codes
    features: tuple[int, ...]
    d_sae: int
    directions: np.ndarray | None = None  # [k, d] decoder directions of the features (for rest_cosine)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.features:
            raise NamesaeError("a feature target needs at least one feature id")
        bad = [f for f in self.features if not 0 <= f < self.d_sae]
        if bad:
            raise NamesaeError(f"feature id(s) {bad[:5]} out of range; the SAE has {self.d_sae} features "
                               f"(0..{self.d_sae - 1})")

    def activation(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Summed code of the target's features on embeddings x [n, d] -> [n]."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty(len(x), dtype=np.float64)
        idx = list(self.features)
        for start in range(0, len(x), batch):
            out[start:start + batch] = as_numpy(self.codes(x[start:start + batch]))[:, idx].sum(1)
        return out


def sae_target(sae: Any, features: Sequence[int], label: str = "") -> FeatureTarget:
    """A FeatureTarget over a trained SAE (`namesae.sae.load_sae`): codes via `encode`, decoder directions."""
    from namesae.sae import encode

    directions = as_numpy(sae.decoder_directions())  # [d_sae, d]
    feats = tuple(int(f) for f in features)
    bad = [f for f in feats if not 0 <= f < sae.d_sae]
    if bad:
        raise NamesaeError(f"feature id(s) {bad[:5]} out of range; the SAE has {sae.d_sae} features "
                           f"(0..{sae.d_sae - 1})")
    return FeatureTarget(lambda x: encode(sae, x), feats, int(sae.d_sae), directions[list(feats)],
                         label or ",".join(map(str, feats)))


def parse_features(spec: str) -> list[int]:
    """Feature ids from "12", "3,4,9" or "3 4 9" (a group is a list of feature ids)."""
    parts = [p for p in spec.replace(",", " ").split() if p]
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise NamesaeError(f"features {spec!r}: expected feature ids such as '12' or '3,4,9'") from None
    if not ids:
        raise NamesaeError("no feature ids given; pass e.g. --features 12 or --features 3,4,9")
    return ids


def _encode(encoder: TextEncoder, prompts: Sequence[str], batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(encoder.encode_text(list(prompts[i:i + batch])), dtype=np.float32)
                           for i in range(0, len(prompts), batch)]) if prompts else np.zeros((0, 0), np.float32)


# ---- corpus ranking --------------------------------------------------------------------------------------------
def corpus_prompts(names: Iterable[str] = (), templates: Iterable[str] = (), phrases: Iterable[str] = ()
                   ) -> list[str]:
    """The prompts of a corpus: every name in every template ({name}), then the phrases; duplicates dropped."""
    names, templates = list(names), list(templates)
    out = [render(t, n) for n in names for t in templates] + list(phrases)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class RankedPrompt:
    """One prompt of a corpus and its activation."""

    prompt: str
    activation: float


def rank_prompts(prompts: Sequence[str], encoder: TextEncoder, target: FeatureTarget, top: int | None = None,
                 batch: int = 1024) -> list[RankedPrompt]:
    """Every prompt ranked by the target's activation (encoded and scored in batches), highest first."""
    if not prompts:
        raise NamesaeError("the corpus is empty: give names and templates, or phrases")
    act = np.concatenate([target.activation(_encode(encoder, prompts[i:i + batch], batch))
                          for i in range(0, len(prompts), batch)])
    order = np.argsort(-act, kind="stable")[:top]
    return [RankedPrompt(prompts[i], float(act[i])) for i in order]


# ---- improving a prompt by token search ------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchStep:
    """One step of a token search: the best prompt so far, its activation and the edit that made it."""

    step: int
    prompt: str
    activation: float
    gain: float  # over the previous step
    edit: str  # e.g. "insert 'charcoal' at 3", "substitute 'sketch' -> 'charcoal'"


@dataclass(frozen=True)
class TokenSearch:
    """A token search from one prompt: the path of best prompts and how many candidates were encoded."""

    start_prompt: str
    start_activation: float
    steps: list[SearchStep]
    best_prompt: str
    best_activation: float
    n_candidates: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


def prompt_edits(words: Sequence[str], tokens: Sequence[str], ops: Sequence[str] = OPS
                 ) -> list[tuple[tuple[str, ...], str]]:
    """Every one-word edit of a prompt [(new words, description)]: substitutions and insertions of tokens."""
    out = []
    if "substitute" in ops:
        for i, old in enumerate(words):
            out += [((*words[:i], tok, *words[i + 1:]), f"substitute {old!r} -> {tok!r}")
                    for tok in tokens if tok != old]
    if "insert" in ops:
        for i in range(len(words) + 1):
            out += [((*words[:i], tok, *words[i:]), f"insert {tok!r} at {i}") for tok in tokens]
    return out


def improve_prompt(prompt: str, tokens: Sequence[str], encoder: TextEncoder, target: FeatureTarget,
                   steps: int = 3, beam: int = 1, ops: Sequence[str] = OPS, batch: int = 2048) -> TokenSearch:
    """Raise the target's activation by word substitutions and insertions of vocabulary tokens (beam search)."""
    bad = sorted(set(ops) - set(OPS))
    if bad or not ops:
        raise NamesaeError(f"ops {list(ops)}: use one or more of {OPS}")
    if steps < 1 or beam < 1:
        raise NamesaeError(f"steps and beam must be >= 1, got {steps}, {beam}")
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise NamesaeError("the token vocabulary is empty")
    if not prompt.strip():
        raise NamesaeError("the start prompt is empty")
    start = tuple(prompt.split())
    act0 = float(target.activation(_encode(encoder, [prompt], batch))[0])
    beams: list[tuple[tuple[str, ...], float, str]] = [(start, act0, "")]
    seen = {start}
    path: list[SearchStep] = []
    best = (start, act0)
    n_candidates = 0
    for step in range(1, steps + 1):
        cands = []
        for words, _, _ in beams:
            for new, edit in prompt_edits(words, tokens, ops):
                if new not in seen:
                    seen.add(new)
                    cands.append((new, edit))
        if not cands:
            break
        texts = [" ".join(w) for w, _ in cands]
        act = np.concatenate([target.activation(_encode(encoder, texts[i:i + batch], batch))
                              for i in range(0, len(texts), batch)])
        n_candidates += len(cands)
        order = np.argsort(-act, kind="stable")[:beam]
        beams = [(cands[i][0], float(act[i]), cands[i][1]) for i in order]
        top_words, top_act, top_edit = beams[0]
        if top_act <= best[1]:
            break  # no candidate gains: a local maximum
        path.append(SearchStep(step, " ".join(top_words), top_act, top_act - best[1], top_edit))
        best = (top_words, top_act)
    return TokenSearch(prompt, act0, path, " ".join(best[0]), best[1], n_candidates)


# ---- anti-patterns ---------------------------------------------------------------------------------------------
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
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise NamesaeError("the token vocabulary is empty")
    if not prompt.strip():
        raise NamesaeError("the prompt is empty")
    x0 = _encode(encoder, [prompt], batch)[0].astype(np.float64)
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
        x = _encode(encoder, texts, batch).astype(np.float64)
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


# ---- contrast --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContrastRow:
    """One feature's difference between row sets A and B."""

    feature: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b
    cohen_d: float  # diff / pooled standard deviation
    ci_low: float | None  # bootstrap CI of d (top features only)
    ci_high: float | None
    active_a: float  # fraction of A's rows where the feature fires
    active_b: float


@dataclass(frozen=True)
class Contrast:
    """Features ranked by |Cohen's d| between two row sets."""

    rows: list[ContrastRow]
    n_a: int
    n_b: int
    n_boot: int
    ci: float
    label_a: str = "A"
    label_b: str = "B"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return asdict(self)


SD_FLOOR = 1e-6  # pooled standard deviations below this count as this (a feature constant in both sets)


@dataclass
class Moments:
    """Running per-feature sums over rows of codes: n, Σf, Σf², #(f > 0)."""

    n: int
    total: np.ndarray  # [F]
    squares: np.ndarray  # [F]
    active: np.ndarray  # [F]

    @classmethod
    def zeros(cls, d_sae: int) -> Moments:
        """Empty sums over d_sae features."""
        return cls(0, np.zeros(d_sae), np.zeros(d_sae), np.zeros(d_sae))

    def add(self, codes: np.ndarray) -> None:
        """Accumulate a block of codes [rows, F]."""
        c = np.asarray(codes, dtype=np.float64)
        self.n += len(c)
        self.total += c.sum(0)
        self.squares += (c * c).sum(0)
        self.active += (c > 0).sum(0)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased variance per feature."""
        mean = self.total / self.n
        var = np.maximum(self.squares - self.n * mean**2, 0.0) / max(self.n - 1, 1)
        return mean, var


def cohen_d(mean_a: np.ndarray, var_a: np.ndarray, n_a: int, mean_b: np.ndarray, var_b: np.ndarray, n_b: int
            ) -> np.ndarray:
    """Cohen's d per feature: (mean_a - mean_b) / pooled sd (floored at SD_FLOOR)."""
    pooled = np.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / max(n_a + n_b - 2, 1))
    return (mean_a - mean_b) / np.maximum(pooled, SD_FLOOR)


def bootstrap_d(x_a: np.ndarray, x_b: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                chunk: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI [k] of Cohen's d for codes x_a [n_a, k], x_b [n_b, k] (rows resampled per set)."""
    rng = np.random.default_rng(seed)
    n_a, n_b = len(x_a), len(x_b)
    ds = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        stats = []
        for x, n in ((x_a, n_a), (x_b, n_b)):
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)  # [b, n]
            mean = counts @ x / n
            var = np.maximum(counts @ (x * x) / n - mean**2, 0.0) * n / max(n - 1, 1)
            stats.append((mean, var))
        (ma, va), (mb, vb) = stats
        ds.append(cohen_d(ma, va, n_a, mb, vb, n_b))
    d = np.concatenate(ds)  # [n_boot, k]
    alpha = (1.0 - ci) / 2
    return np.quantile(d, alpha, axis=0), np.quantile(d, 1 - alpha, axis=0)


def _contrast_rows(ma: Moments, mb: Moments, top: int, boot: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
                   | None) -> list[ContrastRow]:
    mean_a, var_a = ma.mean_var()
    mean_b, var_b = mb.mean_var()
    d = cohen_d(mean_a, var_a, ma.n, mean_b, var_b, mb.n)
    order = np.lexsort((-np.abs(mean_a - mean_b), -np.abs(d)))[:top]
    lo, hi = boot(order) if boot is not None else (None, None)
    return [ContrastRow(int(j), float(mean_a[j]), float(mean_b[j]), float(mean_a[j] - mean_b[j]), float(d[j]),
                        None if lo is None else float(lo[i]), None if hi is None else float(hi[i]),
                        float(ma.active[j] / ma.n), float(mb.active[j] / mb.n))
            for i, j in enumerate(order)]


def _check_sets(n_a: int, n_b: int) -> None:
    if n_a < 2 or n_b < 2:
        raise NamesaeError(f"contrast needs at least 2 rows in each set, got {n_a} (A) and {n_b} (B); "
                           f"check the names / kinds / prompt filters")


def contrast_codes(codes_a: np.ndarray, codes_b: np.ndarray, top: int = 50, n_boot: int = 1000, ci: float = 0.95,
                   seed: int = 0) -> Contrast:
    """Features ranked by |Cohen's d| between codes_a [n_a, F] and codes_b [n_b, F]; bootstrap CI for the top."""
    a, b = as_numpy(codes_a, np.float64), as_numpy(codes_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise NamesaeError(f"codes of the two sets must be [rows, features] with equal features: {a.shape}, {b.shape}")
    _check_sets(len(a), len(b))
    ma, mb = Moments.zeros(a.shape[1]), Moments.zeros(b.shape[1])
    ma.add(a)
    mb.add(b)
    boot = (lambda cols: bootstrap_d(a[:, cols], b[:, cols], n_boot, ci, seed)) if n_boot > 0 else None
    return Contrast(_contrast_rows(ma, mb, top, boot), len(a), len(b), n_boot, ci)


def contrast_store(codes: Codes, store: Any, rows_a: np.ndarray, rows_b: np.ndarray, d_sae: int, top: int = 50,
                   n_boot: int = 1000, ci: float = 0.95, seed: int = 0, batch: int = 4096,
                   label_a: str = "A", label_b: str = "B") -> Contrast:
    """Contrast two row sets of a store, streamed: moments of every feature, then the top features' bootstrap."""
    rows_a, rows_b = np.asarray(rows_a, dtype=np.int64), np.asarray(rows_b, dtype=np.int64)
    _check_sets(len(rows_a), len(rows_b))
    notes = []
    overlap = np.intersect1d(rows_a, rows_b).size
    if overlap:
        notes.append(f"{overlap} rows are in both sets")
    moments = []
    for rows in (rows_a, rows_b):
        m = Moments.zeros(d_sae)
        for start in range(0, len(rows), batch):
            m.add(as_numpy(codes(store.read_rows(rows[start:start + batch]))))
        moments.append(m)

    def boot(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for rows in (rows_a, rows_b):  # second pass: only the top features' codes are kept
            parts.append(np.concatenate([as_numpy(codes(store.read_rows(rows[s:s + batch])))[:, cols]
                                         for s in range(0, len(rows), batch)]).astype(np.float64))
        return bootstrap_d(parts[0], parts[1], n_boot, ci, seed)

    out = _contrast_rows(moments[0], moments[1], top, boot if n_boot > 0 else None)
    return Contrast(out, len(rows_a), len(rows_b), n_boot, ci, label_a, label_b, notes)


def select_rows(store: Any, names: Sequence[str] | None = None, kind: str | None = None,
                prompt_contains: str | None = None) -> np.ndarray:
    """Row indices of a store matching names, kind and a prompt substring (all that are given)."""
    if names:
        known = set(store.name_index())
        missing = [n for n in names if n not in known]
        if missing:
            raise NamesaeError(f"{store.path}: names {missing[:5]} have no rows in this store")
    rows = store.select(kind=kind, names=list(names) if names else None)
    if prompt_contains:
        prompts = store.prompts
        rows = np.asarray([r for r in rows if prompt_contains in str(prompts[r])], dtype=np.int64)
    return np.asarray(rows, dtype=np.int64)
