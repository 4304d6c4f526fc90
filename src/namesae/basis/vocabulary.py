"""The basis vocabulary: terms embedded once, in context, by the encoder that re-encodes paintings; its store cache."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError, StoreError
from namesae.names import render

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
