"""Settings of the synthetic name world (`SynthConfig`, TOML section `[synth]`) and its fixed vocabulary.

The vocabulary (attribute groups and values, scenes, styles, scenario templates, phrases of the vocabulary store)
is data, not configuration: analyses and their ladders (`namesae/data/ladders.json`) refer to these labels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from namesae.errors import ConfigError

# Attribute groups: each generation shows exactly one value of every group (one direction per value).
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "age": ("child", "teen", "young_adult", "adult", "middle_aged", "senior", "elderly"),
    "gender": ("male", "female"),
    "ethnicity": ("white", "black", "east_asian", "south_asian", "southeast_asian", "latino", "middle_eastern"),
    "hair": ("black", "brown", "blond", "red", "grey", "bald"),
    "body": ("slim", "average", "heavy"),
    "glasses": ("no", "yes"),
    "expression": ("neutral", "smiling"),
}
# The model's prior over each group's values (what a name without bias generates).
ATTRIBUTE_PRIOR: dict[str, tuple[float, ...]] = {
    "age": (0.08, 0.10, 0.22, 0.22, 0.18, 0.12, 0.08),
    "gender": (0.5, 0.5),
    "ethnicity": (0.40, 0.14, 0.12, 0.10, 0.08, 0.10, 0.06),
    "hair": (0.28, 0.30, 0.16, 0.06, 0.12, 0.08),
    "body": (0.3, 0.5, 0.2),
    "glasses": (0.8, 0.2),
    "expression": (0.45, 0.55),
}
# Nominal age in years of each age bucket; ladder prompts between two buckets embed as their interpolation.
AGE_YEARS: dict[str, float] = {"child": 6, "teen": 15, "young_adult": 25, "adult": 37, "middle_aged": 50,
                               "senior": 65, "elderly": 80}
# How strongly each kind of name part biases each group (multiplies the part's bias strength).
PART_GROUP_WEIGHT: dict[str, dict[str, float]] = {
    "first": {"age": 0.8, "gender": 1.0, "ethnicity": 0.5, "hair": 0.4, "body": 0.2, "glasses": 0.1,
              "expression": 0.1},
    "last": {"age": 0.2, "gender": 0.05, "ethnicity": 1.0, "hair": 0.5, "body": 0.2, "glasses": 0.1,
             "expression": 0.1},
}
SCENES: tuple[str, ...] = ("portrait", "astronaut", "beach", "office", "stage", "forest", "kitchen")
STYLES: tuple[str, ...] = ("photo", "painting", "cartoon", "sketch")
# Scenario templates: (template with {} for the name, scene, style). Image and text rows use the first n_templates.
TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("a photo of {}", "portrait", "photo"),
    ("a photo of {} as an astronaut", "astronaut", "photo"),
    ("a portrait painting of {}", "portrait", "painting"),
    ("a photo of {} at the beach", "beach", "photo"),
    ("a photo of {} in an office", "office", "photo"),
    ("a photo of {} on stage", "stage", "photo"),
    ("a cartoon of {} in a forest", "forest", "cartoon"),
    ("a sketch of {} in a kitchen", "kitchen", "sketch"),
)
TEMPLATE_FILLER = "a person"  # fills the name slot of the bare-template text rows
BASE_LABEL = "base:person"

# Vocabulary phrases: (phrase, {direction label: weight}). Row name in vocab.h5 = the label of largest weight.
_ARTICLE = {"adult": "an adult", "elderly": "an elderly person", "middle_aged": "a middle-aged person",
            "young_adult": "a young adult", "teen": "a teenager", "child": "a child", "senior": "a senior"}
ETHNICITY_WORDS = {"white": "White", "black": "Black", "east_asian": "East Asian", "south_asian": "South Asian",
                   "southeast_asian": "Southeast Asian", "latino": "Latino", "middle_eastern": "Middle Eastern"}
SCENE_PHRASES = {"portrait": "a studio portrait", "astronaut": "an astronaut", "beach": "a beach",
                 "office": "an office", "stage": "a stage", "forest": "a forest", "kitchen": "a kitchen"}
STYLE_PHRASES = {"photo": "a photo", "painting": "a painting", "cartoon": "a cartoon", "sketch": "a sketch"}


def age_mix(years: float) -> dict[str, float]:
    """Age-bucket weights of an age in years: linear interpolation between the two nearest nominal ages."""
    buckets = sorted(AGE_YEARS.items(), key=lambda kv: kv[1])
    if years <= buckets[0][1]:
        return {f"age:{buckets[0][0]}": 1.0}
    for (lo, ylo), (hi, yhi) in itertools.pairwise(buckets):
        if years <= yhi:
            t = (years - ylo) / (yhi - ylo)
            return {k: w for k, w in ((f"age:{lo}", 1.0 - t), (f"age:{hi}", t)) if w > 0}
    return {f"age:{buckets[-1][0]}": 1.0}


def vocabulary_phrases() -> list[tuple[str, dict[str, float]]]:
    """Every phrase of the vocabulary store with its direction mix (ladder prompts of ladders.json included)."""
    out: list[tuple[str, dict[str, float]]] = [("a person", {BASE_LABEL: 1.0}),
                                               ("a photo of a person", {BASE_LABEL: 1.0})]
    for value, words in _ARTICLE.items():
        out += [(words, {f"age:{value}": 1.0}), (f"a photo of {words}", {f"age:{value}": 1.0})]
    for years in (5, 15, 25, 35, 45, 55, 65, 75, 85):
        out.append((f"a photo of a {years} year old person", age_mix(years)))
    for value, word in (("male", "man"), ("female", "woman")):
        out += [(f"a {word}", {f"gender:{value}": 1.0}), (f"a photo of a {word}", {f"gender:{value}": 1.0})]
    for value, word in ETHNICITY_WORDS.items():
        out += [(f"a {word} person", {f"ethnicity:{value}": 1.0}),
                (f"a photo of a {word} person", {f"ethnicity:{value}": 1.0})]
    for value in ATTRIBUTES["hair"]:
        word = "no" if value == "bald" else value
        out += [(f"a photo of a person with {word} hair", {f"hair:{value}": 1.0})]
    out.append(("a bald person", {"hair:bald": 1.0}))
    for value, word in (("slim", "slim"), ("average", "average-build"), ("heavy", "heavy-set")):
        out += [(f"a {word} person", {f"body:{value}": 1.0}), (f"a photo of a {word} person", {f"body:{value}": 1.0})]
    out += [("a photo of a person wearing glasses", {"glasses:yes": 1.0}),
            ("a person with glasses", {"glasses:yes": 1.0}),
            ("a photo of a person without glasses", {"glasses:no": 1.0}),
            ("a person without glasses", {"glasses:no": 1.0}),
            ("a photo of a smiling person", {"expression:smiling": 1.0}),
            ("a smiling person", {"expression:smiling": 1.0}),
            ("a photo of a person with a neutral expression", {"expression:neutral": 1.0}),
            ("a person with a neutral expression", {"expression:neutral": 1.0})]
    for scene, phrase in SCENE_PHRASES.items():
        out += [(phrase, {f"scene:{scene}": 1.0}), (f"a photo of {phrase}", {f"scene:{scene}": 1.0})]
    for style, phrase in STYLE_PHRASES.items():
        out += [(phrase, {f"style:{style}": 1.0}), (f"{phrase} of a person", {f"style:{style}": 1.0})]
    return out


def shared_labels() -> list[str]:
    """Labels of the shared directions, in direction-id order: base, attributes, scenes, styles."""
    labels = [BASE_LABEL]
    labels += [f"{g}:{v}" for g, values in ATTRIBUTES.items() for v in values]
    labels += [f"scene:{s}" for s in SCENES] + [f"style:{s}" for s in STYLES]
    return labels


N_SHARED = len(shared_labels())


def _geometric(start: float, ratio: float, n: int) -> tuple[int, ...]:
    return tuple(round(start * ratio**t) for t in range(n))


@dataclass(frozen=True)
class SynthConfig:
    """Settings of `namesae synth` (TOML section `[synth]`); every count and strength of the planted world."""

    seed: int = 0
    """Seed of every random draw; the same config and seed give the same world, bit for bit."""
    dim: int = 64
    """Embedding dimension d. Shared directions (base, attributes, scenes, styles) are orthonormal, so
    d must exceed their number; identity directions live in the d - n_shared dimensions left."""
    n_first: int = 48
    """Number of first names (single-token names, attribute biases led by gender and age)."""
    n_last: int = 48
    """Number of surnames (single-token names, attribute biases led by ethnicity)."""
    n_full: int = 160
    """Number of full names "First Last" (distinct pairs of the first names and surnames above)."""
    n_dedicated: int = 32
    """How many full names own a dedicated identity direction (phases 3 and 4); the rest are compositional."""
    dedicated_part_fraction: float = 0.0
    """Share of first names and of surnames that own an identity direction of their own (a "Winona"): their
    rows carry it like a dedicated full name's, so features for name parts exist and can be absorbed."""
    part_carry: float = 0.6
    """Coefficient, relative to the part's identity strength, of a dedicated part's direction in the rows of a
    full name that carries it (see `part_carry_fraction`)."""
    part_carry_fraction: float = 0.5
    """Share of the full names containing a dedicated part whose rows carry that part's direction (the others
    are a different person who only shares the name part). Carried parts are the planted truth of absorption."""
    overfit_fraction: float = 0.25
    """Share of dedicated names that are overfit (phase 4: generations ignore the scenario template)."""
    stable_fraction: float = 0.5
    """Share of compositional names (full names and biased parts) in phase 2 (coarse attributes stable);
    the others are phase 1 (name-part biases dominate). Low-bias parts are always phase 1."""
    low_bias_fraction: float = 0.25
    """Share of first names and of surnames that are low-bias (weak attribute biases; the model's prior)."""
    n_templates: int = 8
    """Scenario templates used for image and text rows (the first n of `namesae.synth.TEMPLATES`, 2..8)."""
    images_per_template: int = 2
    """Image rows ("generations") per name and template; a name has n_templates * images_per_template."""
    base_strength: float = 1.0
    """Coefficient of the common `base:person` direction in every row (real embeddings share a mean)."""
    attribute_strength: float = 0.45
    """Coefficient of each attribute group's value direction in image rows, and the scale of text biases."""
    scene_strength: float = 0.6
    """Coefficient of the scene direction in image rows (and of the template's scene in text rows)."""
    style_strength: float = 0.45
    """Coefficient of the style direction in image rows (and of the template's style in text rows)."""
    identity_strength: tuple[float, float] = (0.9, 1.4)
    """Range of a dedicated name's identity coefficient (uniform; phase-4 names draw from the upper half)."""
    noise: tuple[float, float] = (0.05, 0.3)
    """Norm of a generation's isotropic Gaussian noise at rigidity 1 and at rigidity 0 (linear in between)."""
    jitter: float = 0.35
    """Relative spread of a generation's scene, style, attribute and identity coefficients at rigidity 0
    (scaled by 1 - rigidity)."""
    text_noise: float = 0.05
    token_strength: float = 0.3
    """Norm of each name part's own token direction in text rows: a seeded random unit direction per first name
    and surname (superposed over the whole space), carried by the part's text rows and by every full name that
    contains it. It is what lets a name's parts be recognised in its text embedding; 0 leaves parts as nothing but
    their attribute biases. Image rows do not carry tokens."""
    """Norm of the fixed noise of each text row (one per prompt; text encoders are deterministic)."""
    phase_edges: tuple[float, float, float, float, float] = (0.0, 0.3, 0.55, 0.8, 1.0)
    """Rigidity bands of phases 1..4: a phase-p name draws its rigidity uniformly in [edges[p-1], edges[p])."""
    samples_seen: tuple[int, ...] = _geometric(1e7, 3.0, 6)
    """Training samples seen at each checkpoint of the progression (strictly increasing)."""
    frequency: tuple[float, float] = (1e-6, 1.5e-4)
    """Range of a name's frequency (occurrences per training sample; log-uniform)."""
    emergence_exposures: float = 2000.0
    """Exposures (frequency * samples seen) at which an identity reaches half its strength."""
    emergence_steepness: float = 4.0
    """Hill exponent k of the identity ramp h(e) = 1 / (1 + (E / e)^k) over exposures e."""
    onset_fraction: float = 0.5
    """Onset index = first checkpoint whose ramp h reaches this fraction of the full identity strength."""
    max_superposition: float = 2.0
    """At most this many identity directions per dimension left free by the shared directions."""
    template_name: str = "<template>"
    """Name of the text rows holding the bare scenario templates (the name slot filled with "a person")."""
    dtype: str = "float32"
    """Storage dtype of the written stores (float32 or float16)."""
    progression: bool = True
    """Write the progression (one image, text and vocab store per checkpoint)."""

    def __post_init__(self) -> None:
        for name in ("seed", "dim", "n_first", "n_last", "n_full", "n_dedicated", "n_templates",
                     "images_per_template"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        for name in ("dim", "n_first", "n_last", "images_per_template"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.n_templates <= len(TEMPLATES):
            raise ConfigError(f"n_templates must be in [2, {len(TEMPLATES)}], got {self.n_templates}")
        if self.n_full > self.n_first * self.n_last:
            raise ConfigError(f"n_full={self.n_full} exceeds the {self.n_first * self.n_last} distinct "
                              f"first x last pairs; raise n_first/n_last or lower n_full")
        if self.n_dedicated > self.n_full:
            raise ConfigError(f"n_dedicated={self.n_dedicated} exceeds n_full={self.n_full}: only full names can "
                              f"own an identity direction; lower n_dedicated or raise n_full")
        if self.dim <= N_SHARED:
            raise ConfigError(f"dim={self.dim} is too small for the {N_SHARED} shared directions (base, "
                              f"attributes, scenes, styles), which are orthonormal; use dim >= {N_SHARED + 1}")
        free = self.dim - N_SHARED
        for name in ("dedicated_part_fraction", "part_carry_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if isinstance(self.part_carry, bool) or not isinstance(self.part_carry, (int, float)) or \
                not self.part_carry >= 0:
            raise ConfigError(f"part_carry must be a number >= 0, got {self.part_carry!r}")
        if self.n_dedicated + self.n_dedicated_parts > self.max_superposition * free:
            total = self.n_dedicated + self.n_dedicated_parts
            need = N_SHARED + math.ceil(total / self.max_superposition)
            raise ConfigError(f"dim={self.dim} leaves {free} dimensions for {total} identity directions "
                              f"(n_dedicated={self.n_dedicated} + {self.n_dedicated_parts} dedicated parts), more "
                              f"than max_superposition={self.max_superposition} per dimension; use dim >= {need} "
                              f"or fewer dedicated names")
        for name in ("overfit_fraction", "stable_fraction", "low_bias_fraction", "onset_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
        if not 0.0 < self.onset_fraction < 1.0:
            raise ConfigError(f"onset_fraction must be strictly between 0 and 1, got {self.onset_fraction}")
        for name in ("base_strength", "attribute_strength", "scene_strength", "style_strength", "jitter",
                     "text_noise", "token_strength"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("identity_strength", "noise", "frequency"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair) or not 0 <= pair[0] <= pair[1]:
                raise ConfigError(f"{name} must be a pair [low, high] with 0 <= low <= high, got {list(pair)}")
        if not self.identity_strength[0] > 0:
            raise ConfigError(f"identity_strength must be > 0, got {list(self.identity_strength)}")
        if not self.frequency[0] > 0:
            raise ConfigError(f"frequency must be > 0 (log-uniform), got {list(self.frequency)}")
        edges = self.phase_edges
        if len(edges) != 5 or edges[0] != 0.0 or edges[-1] != 1.0 or \
                any(not b > a for a, b in itertools.pairwise(edges)):
            raise ConfigError(f"phase_edges must be 5 increasing numbers from 0 to 1, got {list(edges)}")
        seen = self.samples_seen
        if len(seen) < 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in seen) or \
                any(not b > a for a, b in itertools.pairwise(seen)):
            raise ConfigError(f"samples_seen must list >= 2 strictly increasing positive integers, got {list(seen)}")
        if not self.emergence_exposures > 0 or not self.emergence_steepness > 0:
            raise ConfigError("emergence_exposures and emergence_steepness must be > 0, got "
                              f"{self.emergence_exposures!r}, {self.emergence_steepness!r}")
        if not self.max_superposition > 0:
            raise ConfigError(f"max_superposition must be > 0, got {self.max_superposition!r}")
        if not isinstance(self.template_name, str) or not self.template_name:
            raise ConfigError("template_name must be a non-empty string")
        if self.dtype not in ("float32", "float16"):
            raise ConfigError(f"dtype must be 'float32' or 'float16', got {self.dtype!r}")

    @property
    def n_dedicated_parts(self) -> int:
        """Number of first names and surnames that own an identity direction."""
        return round(self.dedicated_part_fraction * self.n_first) + round(self.dedicated_part_fraction * self.n_last)

    @property
    def n_names(self) -> int:
        """Total number of names (first names + surnames + full names)."""
        return self.n_first + self.n_last + self.n_full

    @property
    def n_checkpoints(self) -> int:
        """Number of checkpoints T in the progression."""
        return len(self.samples_seen)


# Named worlds for `namesae synth --preset NAME` (fields over the defaults).
PRESETS: dict[str, dict[str, object]] = {
    "demo": {},
    # The size real runs use: CLIP bigG's 1280 dimensions, a strong common direction (mean pairwise cosine of
    # image rows about 0.5, as CLIP image embeddings have), 5,000 names of 16 generations each, 1,000 dedicated
    # full names sharing attributes with the rest, and 10% of first names and surnames owning a feature of their
    # own, carried by half of the full names that contain them (absorption can happen).
    "real": {"dim": 1280, "n_first": 400, "n_last": 600, "n_full": 4000, "n_dedicated": 1000,
             "dedicated_part_fraction": 0.1, "base_strength": 1.1, "progression": False},
}


def synth_config(path: str | Path | None = None, preset: str | None = None, seed: int | None = None) -> SynthConfig:
    """The SynthConfig of `namesae synth`: the [synth] section of TOML file `path` (defaults without one), a named
    `preset` under it (the file's fields that differ from the defaults win) and `seed` over both."""
    import dataclasses

    from namesae.config import config_from

    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: unknown; use one of {', '.join(PRESETS)}")
    cfg = config_from(SynthConfig, "synth", path, required=True)
    if preset is not None:
        given = dataclasses.asdict(cfg) if path is not None else {}
        defaults = dataclasses.asdict(SynthConfig())
        fields = {**PRESETS[preset], **{k: v for k, v in given.items() if v != defaults[k]}}
        cfg = dataclasses.replace(SynthConfig(), **fields)
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)
