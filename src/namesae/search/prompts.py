"""Prompts that drive a feature: a corpus ranked by activation, then improved by discrete token search."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError
from namesae.names import render
from namesae.search.target import FeatureTarget, encode_prompts, search_tokens


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
    act = np.concatenate([target.activation(encode_prompts(encoder, prompts[i:i + batch], batch))
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


OPS = ("substitute", "insert")  # the edits a token search may make


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
    tokens = search_tokens(tokens, prompt, "start prompt")
    start = tuple(prompt.split())
    act0 = float(target.activation(encode_prompts(encoder, [prompt], batch))[0])
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
        act = np.concatenate([target.activation(encode_prompts(encoder, texts[i:i + batch], batch))
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
