"""A toy text encoder for the synthetic name world: planted token directions, trigger tokens and cancellers.

`ToyTextEncoder(world)` has the interface of `namesae.encoders.ClipEncoder` for text (`encode_text`, `dim`,
`normalized`, `space(kind)`), so the name basis and the feature searches run through it exactly as through CLIP,
and their findings can be scored against what was planted. It is deterministic: the same world and text always
give the same embedding. How a text is embedded:

1. Tokens: the lower-cased text split into words (`[a-z0-9]+` joined by `-` or `'`) and punctuation marks
   (, ; . : ! ?), matched left to right, longest phrase first (up to three words: "middle eastern", "35 year old",
   "without glasses"). Punctuation adds nothing but separates: no phrase or full name spans it.
2. Names: a first name directly followed by a surname (no punctuation between) is a full name "First Last": the world's mix of the two
   parts' biases (the rule of `namesae.synth.world`), plus the identity direction when it is a dedicated name of
   the world, so "a photo of <name>" embeds like the name's row in the world's text store. A lone first name or
   surname adds its own biases (attribute_strength x bias vector).
3. Words: scene words (`astronaut`, `beach`, ...) add scene_strength x their scene direction, style words (`photo`,
   `painting`, ...) style_strength x their style direction, attribute words (`elderly`, `woman`, `glasses`, ...)
   attribute_strength x their attribute direction. A text with a style but no scene shows the `portrait` scene
   (as the world's template "a photo of {}" does).
4. Planted triggers (`TRIGGERS`): unusual words that switch on a scene/style direction harder than its plain
   word (trigger_strength, default 1.0 > scene/style strengths) — what feature search should find.
   Planted cancellers (`CANCELLERS`): words that subtract a direction (by the strength its plain word adds) —
   what anti-pattern search should find.
5. Stop words ("a", "of", "person", ...) add nothing; any other word adds a small pseudo-random vector of norm
   unknown_norm, seeded by the word (words still move the embedding, a little, as in a real encoder).
6. Every distinct item counts once (repeating a word does not strengthen it). The sum with base_strength x
   `base:person` and a fixed per-text noise (norm text_noise, seeded by the text) is L2-normalised.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.synth import ATTRIBUTE_PRIOR, ATTRIBUTES, World, load_world
from namesae.synth.config import BASE_LABEL, ETHNICITY_WORDS, PART_GROUP_WEIGHT, age_mix
from namesae.synth.world import MIX_PRIOR, Truth, token_vector

log = logging.getLogger(__name__)

# Planted trigger words: each switches on one direction at trigger_strength (stronger than its plain word).
TRIGGERS = MappingProxyType({
    "polaroid": "style:photo", "watercolor": "style:painting", "animated": "style:cartoon",
    "charcoal": "style:sketch", "spacesuit": "scene:astronaut", "seashore": "scene:beach",
    "cubicle": "scene:office", "spotlight": "scene:stage", "woodland": "scene:forest", "stovetop": "scene:kitchen",
})
# Planted canceller words: each subtracts one direction, by the strength its plain word adds.
CANCELLERS = MappingProxyType({
    "indoors": "scene:beach", "earthbound": "scene:astronaut", "unpainted": "style:painting",
    "photoreal": "style:cartoon", "ageless": "age:elderly", "unbespectacled": "glasses:yes",
})
# Words with no planted meaning: they add only their small pseudo-random vector (decoys for the searches).
DISTRACTORS = (
    "bright", "vintage", "blue", "tall", "quiet", "wooden", "modern", "distant", "golden", "rainy", "tiny",
    "famous", "classic", "soft", "sharp", "dark", "green", "winter", "summer", "city", "street", "window",
    "hat", "coat", "scarf", "bicycle", "dog", "cat", "book", "guitar", "chair", "table", "mountain", "river",
)
STOP_WORDS = frozenset({"a", "an", "the", "of", "as", "at", "in", "on", "with", "and", "person", "people", "is",
                        "to", "for", "by", "their", "his", "her", "wearing", "who", "picture", "image"})
_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*|[,;.:!?]")
PUNCTUATION = frozenset(",;.:!?")
MAX_PHRASE = 3


def _plain_words() -> dict[tuple[str, ...], dict[str, str]]:
    """Plain vocabulary: phrase (tuple of words) -> {direction label: kind} (kind sets the strength)."""
    out: dict[tuple[str, ...], dict[str, str]] = {}

    def add(phrase: str, label: str, kind: str) -> None:
        out[tuple(phrase.split())] = {label: kind}

    for word, style in (("photo", "photo"), ("photograph", "photo"), ("painting", "painting"),
                        ("painted", "painting"), ("cartoon", "cartoon"), ("sketch", "sketch"),
                        ("drawing", "sketch")):
        add(word, f"style:{style}", "style")
    for scene in ("portrait", "astronaut", "beach", "office", "stage", "forest", "kitchen"):
        add(scene, f"scene:{scene}", "scene")
    for phrase, value in (("child", "child"), ("kid", "child"), ("teen", "teen"), ("teenager", "teen"),
                          ("young adult", "young_adult"), ("young", "young_adult"), ("adult", "adult"),
                          ("middle-aged", "middle_aged"), ("senior", "senior"), ("elderly", "elderly"),
                          ("old", "elderly")):
        add(phrase, f"age:{value}", "attribute")
    for phrase, value in (("man", "male"), ("male", "male"), ("woman", "female"), ("female", "female")):
        add(phrase, f"gender:{value}", "attribute")
    for value, phrase in ETHNICITY_WORDS.items():
        add(phrase.lower(), f"ethnicity:{value}", "attribute")
    for value in ATTRIBUTES["hair"]:
        if value != "bald":
            add(f"{value} hair", f"hair:{value}", "attribute")
    add("gray hair", "hair:grey", "attribute")
    add("blond", "hair:blond", "attribute")
    add("redhead", "hair:red", "attribute")
    add("bald", "hair:bald", "attribute")
    add("no hair", "hair:bald", "attribute")
    for phrase, value in (("slim", "slim"), ("average-build", "average"), ("heavy-set", "heavy")):
        add(phrase, f"body:{value}", "attribute")
    add("glasses", "glasses:yes", "attribute")
    add("without glasses", "glasses:no", "attribute")
    add("smiling", "expression:smiling", "attribute")
    add("smile", "expression:smiling", "attribute")
    add("neutral expression", "expression:neutral", "attribute")
    return out


PLAIN_WORDS = MappingProxyType(_plain_words())


def tokenize(text: str) -> list[str]:
    """The words of a text as the toy encoder sees them: lower-cased, hyphens kept; , ; . : ! ? as boundaries."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class ToyItem:
    """One matched item of a text: the words it spans and what it adds."""

    words: tuple[str, ...]
    kind: str
    """"full_name", "first", "last", "plain", "trigger", "canceller", "stop" or "unknown"."""
    key: str
    """Identity of the item (a name, a phrase or a word): each distinct key counts once."""


class ToyTextEncoder:
    """A deterministic text encoder over a synthetic world's planted directions (see the module docstring)."""

    def __init__(self, world: World | Truth, checkpoint: int | None = None, trigger_strength: float = 1.0,
                 unknown_norm: float = 0.1, text_noise: float | None = None) -> None:
        truth = world.truth if isinstance(world, World) else world
        if not isinstance(truth, Truth):
            raise NamesaeError(f"ToyTextEncoder needs a synthetic World or Truth, got {type(world).__name__}")
        config = truth.config
        if checkpoint is not None and not 0 <= checkpoint < config.n_checkpoints:
            raise NamesaeError(f"checkpoint {checkpoint} is not in [0, {config.n_checkpoints}) of this world")
        if trigger_strength < 0 or unknown_norm < 0 or (text_noise is not None and text_noise < 0):
            raise NamesaeError("trigger_strength, unknown_norm and text_noise must be >= 0")
        self.truth = truth
        self.checkpoint = checkpoint
        self.dim = int(config.dim)
        self.normalized = True
        self.trigger_strength = float(trigger_strength)
        self.unknown_norm = float(unknown_norm)
        self.text_noise = float(config.text_noise if text_noise is None else text_noise)
        self._index = truth.index()
        self._dirs = truth.directions
        strengths = {"style": config.style_strength, "scene": config.scene_strength,
                     "attribute": config.attribute_strength}
        self._strengths = strengths
        self._plain = {phrase: self._mix({label: strengths[kind] for label, kind in mix.items()})
                       for phrase, mix in PLAIN_WORDS.items()}
        self.triggers = dict(TRIGGERS)
        self.cancellers = dict(CANCELLERS)
        self._trigger_vec = {w: self.trigger_strength * self._dirs[self._index[label]] for w, label in TRIGGERS.items()}
        self._canceller_vec = {w: -strengths[_kind_of(label)] * self._dirs[self._index[label]]
                               for w, label in CANCELLERS.items()}
        self._base = config.base_strength * self._dirs[self._index[BASE_LABEL]]
        self._portrait = config.scene_strength * self._dirs[self._index["scene:portrait"]]
        self._records = {rec.name: rec for rec in truth.names}
        self._first = {rec.name.lower(): rec for rec in truth.names if rec.kind == "first"}
        self._last = {rec.name.lower(): rec for rec in truth.names if rec.kind == "last"}
        self._token = {rec.name: token_vector(truth, rec) for rec in truth.names if rec.kind in ("first", "last")}
        self._full = {(rec.first.lower(), rec.last.lower()): rec for rec in truth.names if rec.kind == "full"}
        clashes = sorted(w for w in set(self._first) | set(self._last)
                         if (w,) in self._plain or w in TRIGGERS or w in CANCELLERS or w in STOP_WORDS)
        if clashes:
            log.warning("toy encoder: names %s are also vocabulary words; as words they read as names", clashes)
        self._clashes = frozenset(clashes)
        self._cache: dict[tuple[str, str], np.ndarray | None] = {}  # item vectors (pure functions of the item)

    # ---- interface shared with ClipEncoder -----------------------------------------------------------------
    def __repr__(self) -> str:
        return f"ToyTextEncoder({self.space('text')!r}, dim={self.dim})"

    def space(self, kind: str) -> str:
        """The store space of the world's rows of one kind (`synth:<seed>[:ckptNN]:text|image`)."""
        if kind not in ("text", "image"):
            raise ValueError(f"kind must be 'text' or 'image', got {kind!r}")
        seed = self.truth.config.seed
        return f"synth:{seed}:{kind}" if self.checkpoint is None else f"synth:{seed}:ckpt{self.checkpoint:02d}:{kind}"

    @property
    def attrs(self) -> dict[str, Any]:
        """How the embeddings were made, for a store's root attributes."""
        return {"encoder": "toy", "encoder_model": f"synth:{self.truth.config.seed}",
                "encoder_checkpoint": -1 if self.checkpoint is None else self.checkpoint}

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of texts, float32 [n, dim], unit norm."""
        if isinstance(texts, str):
            raise NamesaeError("encode_text takes a list of texts, not one string")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise NamesaeError(f"text {i} is {type(text).__name__}, expected str")
            x = self.raw_vector(text)
            out[i] = x / np.linalg.norm(x)
        return out

    # ---- the model -----------------------------------------------------------------------------------------
    def parse(self, text: str) -> list[ToyItem]:
        """The items a text is read as, left to right (longest phrase first; "First Last" as one full name)."""
        words = tokenize(text)
        items: list[ToyItem] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w in self._first and i + 1 < len(words) and words[i + 1] in self._last:
                pair = (w, words[i + 1])
                items.append(ToyItem(pair, "full_name", " ".join(pair)))
                i += 2
                continue
            if w in self._first or w in self._last:
                items.append(ToyItem((w,), "first" if w in self._first else "last", w))
                i += 1
                continue
            if w.isdigit() and words[i + 1:i + 3] == ["year", "old"]:
                items.append(ToyItem(tuple(words[i:i + 3]), "plain", f"{w} year old"))
                i += 3
                continue
            for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
                phrase = tuple(words[i:i + n])
                if phrase in self._plain:
                    items.append(ToyItem(phrase, "plain", " ".join(phrase)))
                    i += n
                    break
            else:
                kind = "trigger" if w in TRIGGERS else "canceller" if w in CANCELLERS else \
                    "stop" if w in STOP_WORDS or w in PUNCTUATION else "unknown"
                items.append(ToyItem((w,), kind, w))
                i += 1
        return items

    def raw_vector(self, text: str) -> np.ndarray:
        """The unnormalised embedding [d] of one text (float64)."""
        x = self._base.copy()
        seen: set[tuple[str, str]] = set()
        has_style = has_scene = False
        for item in self.parse(text):
            if (item.kind, item.key) in seen:
                continue
            seen.add((item.kind, item.key))
            if (item.kind, item.key) not in self._cache:
                self._cache[item.kind, item.key] = self._item_vector(item)
            v = self._cache[item.kind, item.key]
            if v is not None:
                x += v
            label = TRIGGERS.get(item.key) if item.kind == "trigger" else None
            if item.kind == "plain":
                labels = self._plain_labels(item)
                has_style |= any(lab.startswith("style:") for lab in labels)
                has_scene |= any(lab.startswith("scene:") for lab in labels)
            elif label is not None:
                has_style |= label.startswith("style:")
                has_scene |= label.startswith("scene:")
        if has_style and not has_scene:
            x += self._portrait
        if self.text_noise > 0:
            x += self.text_noise * _seeded_normal(f"text:{text}", self.truth.config.seed, self.dim) / np.sqrt(self.dim)
        return x

    def _plain_labels(self, item: ToyItem) -> tuple[str, ...]:
        if item.key.endswith(" year old"):
            return ("age",)
        return tuple(PLAIN_WORDS[item.words])

    def _item_vector(self, item: ToyItem) -> np.ndarray | None:
        if item.kind == "full_name":
            return self.full_name_vector(*item.words)
        if item.kind in ("first", "last"):
            table = self._first if item.kind == "first" else self._last
            return self.part_vector(table[item.key].name)
        if item.kind == "plain":
            if item.key.endswith(" year old"):
                years = float(item.words[0])
                return self._mix({k: self._strengths["attribute"] * w for k, w in age_mix(years).items()})
            return self._plain[item.words]
        if item.kind == "trigger":
            return self._trigger_vec[item.key]
        if item.kind == "canceller":
            return self._canceller_vec[item.key]
        if item.kind == "unknown" and self.unknown_norm > 0:
            v = _seeded_normal(f"word:{item.key}", self.truth.config.seed, self.dim)
            return self.unknown_norm * v / np.linalg.norm(v)
        return None

    def _mix(self, weights: dict[str, float]) -> np.ndarray:
        out = np.zeros(self.dim)
        for label, w in weights.items():
            out += w * self._dirs[self._index[label]]
        return out

    def _bias_vector(self, biases: dict[str, dict[str, float]]) -> np.ndarray:
        return self._mix({f"{g}:{v}": p for g, dist in biases.items() for v, p in dist.items()})

    def part_vector(self, name: str) -> np.ndarray:
        """What a lone first name or surname adds [d]: attribute_strength x its bias vector + its token."""
        rec = self._records[name]
        return self.truth.config.attribute_strength * self._bias_vector(rec.attribute_biases) + self._token[name]

    def full_name_vector(self, first: str, last: str) -> np.ndarray:
        """What "First Last" adds [d]: the world's mix of the parts' biases, both parts' tokens (+ identity if a
        dedicated name)."""
        f, l = self._first[first.lower()], self._last[last.lower()]
        config = self.truth.config
        mixed: dict[str, dict[str, float]] = {}
        for group, values in ATTRIBUTES.items():
            sf = f.bias_strength * PART_GROUP_WEIGHT["first"][group]
            sl = l.bias_strength * PART_GROUP_WEIGHT["last"][group]
            prior = _prior(group)
            mixed[group] = {v: (sf * f.attribute_biases[group][v] + sl * l.attribute_biases[group][v]
                                + MIX_PRIOR * prior[v]) / (sf + sl + MIX_PRIOR) for v in values}
        out = config.attribute_strength * self._bias_vector(mixed) + self._token[f.name] + self._token[l.name]
        rec = self._full.get((first.lower(), last.lower()))
        if rec is not None and rec.identity_direction is not None:
            h = 1.0 if self.checkpoint is None else rec.identity_fraction[self.checkpoint]
            out = out + h * rec.identity_strength * self._dirs[rec.identity_direction]
        return out

    # ---- what was planted ----------------------------------------------------------------------------------
    def search_tokens(self) -> list[str]:
        """Words a token search may try: plain single words, triggers, cancellers and distractors (sorted)."""
        words = {p[0] for p in PLAIN_WORDS if len(p) == 1} | set(TRIGGERS) | set(CANCELLERS) | set(DISTRACTORS)
        return sorted(words - self._clashes)

    def triggers_of(self, label: str) -> list[str]:
        """The planted trigger words of a direction label (e.g. 'style:sketch' -> ['charcoal'])."""
        return sorted(w for w, lab in TRIGGERS.items() if lab == label)

    def cancellers_of(self, label: str) -> list[str]:
        """The planted canceller words of a direction label (e.g. 'scene:beach' -> ['indoors'])."""
        return sorted(w for w, lab in CANCELLERS.items() if lab == label)


def _kind_of(label: str) -> str:
    group = label.split(":", 1)[0]
    return group if group in ("scene", "style") else "attribute"


def _prior(group: str) -> dict[str, float]:
    return dict(zip(ATTRIBUTES[group], ATTRIBUTE_PRIOR[group]))


def _seeded_normal(key: str, seed: int, dim: int) -> np.ndarray:
    """A standard normal vector [dim] seeded by a string and the world's seed (stable across runs and machines)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")]).normal(size=dim)


def load_toy_encoder(world_dir: str | Path, checkpoint: int | None = None) -> ToyTextEncoder:
    """The toy text encoder of a synthetic world written by `namesae synth` (its truth.json and directions)."""
    return ToyTextEncoder(load_world(world_dir), checkpoint=checkpoint)
