"""The planted truth of the synthetic name world: directions, names, their biases, phases, rigidity and onsets.

Pure and seeded: `plant_truth(config)` draws everything from `np.random.default_rng([seed, stream])`, one stream
per purpose, so the same config gives the same world. Rows are built from this truth in `rows.py`.

Directions (rows of a [n_directions, d] matrix, id = row index):
- shared (orthonormal): `base:person`, one per attribute value (`age:child`, `gender:female`, ...), one per scene
  (`scene:astronaut`, ...) and style (`style:painting`, ...); each is used by many names.
- identity (`identity:<name>`, one per dedicated name): in the orthogonal complement of the shared span; exactly
  orthonormal when they fit, otherwise a low-coherence frame (max |cos| recorded as `identity_coherence`).

Names: first names and surnames ("parts") carry attribute biases: per group g a distribution
p_g = (1 - s_g) prior_g + s_g onehot(peak_g), s_g = bias_strength x PART_GROUP_WEIGHT[kind][g] (first names lead
gender/age, surnames ethnicity); low-bias parts have bias_strength < 0.1. A full name's biases mix its parts':
p_g = (s_first,g p_first,g + s_last,g p_last,g + 0.05 prior_g) / (s_first,g + s_last,g + 0.05).

Phases and rigidity r in [0, 1] (high r = generations vary little): a phase-p name draws r uniformly in
[phase_edges[p-1], phase_edges[p]). Every source of within-name spread shrinks with r: the probability that a
generation resamples an attribute from p_g instead of the name's fixed look (anchor) is (1 - r)^3, noise norm is
linear from noise[1] (r = 0) to noise[0] (r = 1), coefficient jitter is jitter x (1 - r); phase 4 also drops the
scene/style variation across templates.
- 1 compositional, attributes vary with the part biases (resample probability > (1 - edges[1])^3);
- 2 compositional, coarse attributes stable (resample probability <= (1 - edges[1])^3);
- 3 dedicated (identity direction in every generation), scene/style follow the scenario template;
- 4 dedicated and overfit: scene/style are the name's iconic ones whatever the template.

Emergence: exposures at checkpoint t are e_t = frequency x samples_seen[t]; the identity coefficient there is
identity_strength x h(e_t), h(e) = 1 / (1 + (E / e)^k) (E = emergence_exposures, k = emergence_steepness);
onset_index = the first t with h(e_t) >= onset_fraction (None when no checkpoint reaches it). The final stores
use h = 1. Onsets are non-increasing in frequency by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from namesae.synth.config import (
    ATTRIBUTE_PRIOR,
    ATTRIBUTES,
    BASE_LABEL,
    N_SHARED,
    PART_GROUP_WEIGHT,
    TEMPLATES,
    SynthConfig,
    shared_labels,
)

# One random stream per purpose, so that each part of the world is reproducible on its own.
STREAMS = {"directions": 1, "names": 2, "parts": 3, "full": 4, "phases": 5, "image": 6, "text": 7, "vocab": 8,
           "tokens": 9, "dedicated_parts": 10, "carry": 11}
MIX_PRIOR = 0.05  # weight of the prior when a full name's part biases are mixed


def rng_for(config: SynthConfig, stream: str, *keys: int) -> np.random.Generator:
    """The seeded generator of one purpose (and optional sub-keys such as a name's index)."""
    return np.random.default_rng([config.seed, STREAMS[stream], *keys])


@dataclass(frozen=True)
class NameTruth:
    """Everything planted about one name (a row of truth.json's `names`)."""

    name: str
    kind: str
    """"first", "last" (single-token name parts) or "full" ("First Last")."""
    first: str | None
    last: str | None
    dedicated: bool
    identity_direction: int | None
    """Row of the direction matrix holding this name's identity direction (dedicated names only)."""
    identity_strength: float
    """Coefficient of the identity direction in the final stores (0 for compositional names)."""
    attribute_biases: dict[str, dict[str, float]]
    """p_g over each group's values: what the name's parts imply (the compositional expectation)."""
    attribute_anchor: dict[str, str]
    """The name's own look: one value per group, drawn from p_g, shown unless a generation resamples."""
    attribute_resample_prob: float
    """Probability that a generation resamples a group's value from p_g instead of the anchor: (1 - r)^3."""
    bias_strength: float | None
    """Parts only: the overall strength s of the part's biases (low-bias parts < 0.1)."""
    rigidity: float
    """r in [0, 1]; high = generations vary little (the dominant driver of within-name spread)."""
    phase: int
    follows_scenario: bool
    """Whether image rows take their scene/style from the prompt's template (False only in phase 4)."""
    iconic_scene: str | None
    iconic_style: str | None
    noise_scale: float
    """Norm of each generation's isotropic noise."""
    jitter_scale: float
    """Relative spread of each generation's coefficients: jitter x (1 - r)."""
    frequency: float
    """Occurrences per training sample (log-uniform); sets the onset of dedicated names."""
    onset_index: int | None
    identity_fraction: tuple[float, ...]
    """h(e_t) per checkpoint (0 for compositional names): the identity coefficient is strength x h."""
    low_bias: bool
    carried_parts: tuple[str, ...] = ()
    """Full names: the dedicated name parts whose identity direction its rows carry (planted absorption truth)."""
    part_owner: tuple[str, ...] = ()
    """Full names: its parts that own an identity direction (carried or not)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        out = asdict(self)
        out["identity_fraction"] = list(self.identity_fraction)
        out["carried_parts"] = list(self.carried_parts)
        out["part_owner"] = list(self.part_owner)
        return out


@dataclass(frozen=True)
class Truth:
    """The planted world without its rows: directions, their labels and every name's truth."""

    config: SynthConfig
    labels: tuple[str, ...]
    directions: np.ndarray  # [n_directions, d] unit rows
    names: tuple[NameTruth, ...]
    identity_coherence: float
    """Max |cos| between two identity directions (0 when they are orthonormal)."""

    def index(self) -> dict[str, int]:
        """Direction id of every label."""
        return {label: i for i, label in enumerate(self.labels)}


def low_coherence_frame(n: int, k: int, rng: np.random.Generator, iters: int = 500) -> np.ndarray:
    """n unit vectors in R^k [n, k]: orthonormal when n <= k, else pushed apart towards the Welch bound."""
    if n == 0:
        return np.zeros((0, k))
    if n <= k:
        q, _ = np.linalg.qr(rng.normal(size=(k, n)))
        return q.T
    v = rng.normal(size=(n, k))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(iters):
        g = v @ v.T
        np.fill_diagonal(g, 0.0)
        m = np.abs(g).max()
        # Gradient of sum (g_ij / m)^8: moves mostly the most coherent pairs apart.
        v = v - 0.5 * m * ((g / m) ** 7) @ v / n
        v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def plant_directions(config: SynthConfig, dedicated_names: list[str]) -> tuple[tuple[str, ...], np.ndarray, float]:
    """Labels and unit directions [n, d] (shared then identity) and the identity directions' max coherence."""
    rng = rng_for(config, "directions")
    q, _ = np.linalg.qr(rng.normal(size=(config.dim, config.dim)))
    shared = q[:, :N_SHARED].T
    frame = low_coherence_frame(len(dedicated_names), config.dim - N_SHARED, rng)
    identity = frame @ q[:, N_SHARED:].T
    gram = identity @ identity.T
    np.fill_diagonal(gram, 0.0)
    coherence = float(np.abs(gram).max()) if len(dedicated_names) > 1 else 0.0
    labels = tuple(shared_labels() + [f"identity:{n}" for n in dedicated_names])
    return labels, np.concatenate([shared, identity]).astype(np.float64), coherence


_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "dr", "gr", "kr", "sh", "st", "th", "tr", "vl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ie", "ou", "y")
_VOWEL_LETTERS = "aeiouy"
_FIRST_ENDS = ("", "a", "n", "l", "ie", "o", "elle", "ian", "is", "en")
_LAST_ENDS = ("son", "ard", "ova", "ez", "ini", "berg", "ton", "ski", "ley", "ami", "ander", "quist")


def invent_names(rng: np.random.Generator, n: int, ends: tuple[str, ...], taken: set[str]) -> list[str]:
    """n distinct made-up single-token names (syllables + an ending), none in `taken` (which grows)."""
    out: list[str] = []
    while len(out) < n:
        stem = "".join(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) for _ in range(int(rng.integers(1, 3))))
        end = str(rng.choice(ends))
        if end[:1] in _VOWEL_LETTERS and stem[-1] in _VOWEL_LETTERS:
            stem = stem.rstrip(_VOWEL_LETTERS) or stem  # "Stea" + "elle" -> "Stelle"
        name = (stem + end).capitalize()
        if len(name) >= 3 and name not in taken:
            taken.add(name)
            out.append(name)
    return out


def part_biases(kind: str, strength: float, rng: np.random.Generator
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """A part's distribution p_g per group and its per-group strength s_g (peaks drawn from the prior)."""
    biases, strengths = {}, {}
    for group, values in ATTRIBUTES.items():
        prior = np.asarray(ATTRIBUTE_PRIOR[group])
        s = strength * PART_GROUP_WEIGHT[kind][group]
        peak = int(rng.choice(len(values), p=prior))
        biases[group] = (1.0 - s) * prior + s * np.eye(len(values))[peak]
        strengths[group] = s
    return biases, strengths


def identity_ramp(config: SynthConfig, frequency: float) -> np.ndarray:
    """h(e_t) per checkpoint [T]: the fraction of the identity strength present at each checkpoint."""
    exposures = frequency * np.asarray(config.samples_seen, dtype=np.float64)
    return 1.0 / (1.0 + (config.emergence_exposures / exposures) ** config.emergence_steepness)


def onset_index(config: SynthConfig, frequency: float) -> int | None:
    """First checkpoint whose ramp reaches onset_fraction, or None."""
    hit = np.flatnonzero(identity_ramp(config, frequency) >= config.onset_fraction)
    return int(hit[0]) if hit.size else None


def _assign_exact(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Boolean mask of n items with exactly round(share * n) True, at random positions."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:round(share * n)]] = True
    return mask


def plant_truth(config: SynthConfig) -> Truth:
    """Draw every planted quantity of the world (see the module docstring); pure and seeded."""
    rng = rng_for(config, "names")
    taken: set[str] = set()
    firsts = invent_names(rng, config.n_first, _FIRST_ENDS, taken)
    lasts = invent_names(rng, config.n_last, _LAST_ENDS, taken)
    pair_ids = rng.choice(config.n_first * config.n_last, size=config.n_full, replace=False)
    pairs = [(firsts[i // config.n_last], lasts[i % config.n_last]) for i in pair_ids]
    dedicated_mask = _assign_exact(rng, config.n_full, config.n_dedicated / max(config.n_full, 1))
    dedicated_names = [f"{f} {l}" for (f, l), d in zip(pairs, dedicated_mask) if d]
    dedicated_parts: list[str] = []
    if config.dedicated_part_fraction > 0:
        prng = rng_for(config, "dedicated_parts")
        for names in (firsts, lasts):
            mask = _assign_exact(prng, len(names), config.dedicated_part_fraction)
            dedicated_parts += [n for n, d in zip(names, mask) if d]
    labels, directions, coherence = plant_directions(config, dedicated_names + dedicated_parts)
    index = {label: i for i, label in enumerate(labels)}

    # Parts: biases, low-bias flags.
    rng = rng_for(config, "parts")
    parts: dict[str, tuple[dict[str, np.ndarray], dict[str, float], float, bool]] = {}
    for kind, names in (("first", firsts), ("last", lasts)):
        low = _assign_exact(rng, len(names), config.low_bias_fraction)
        for name, is_low in zip(names, low):
            strength = float(rng.uniform(0.0, 0.1) if is_low else rng.uniform(0.4, 1.0))
            biases, strengths = part_biases(kind, strength, rng)
            parts[name] = (biases, strengths, strength, bool(is_low))

    # Phases: parts (low-bias ones always 1), compositional full names, dedicated full names.
    rng = rng_for(config, "phases")
    phase: dict[str, int] = {}
    biased = [n for n in firsts + lasts if not parts[n][3]]
    for name, stable in zip(biased, _assign_exact(rng, len(biased), config.stable_fraction)):
        phase[name] = 2 if stable else 1
    phase.update({n: 1 for n in firsts + lasts if parts[n][3]})
    phase.update({n: 3 for n in dedicated_parts})
    compositional = [f"{f} {l}" for (f, l), d in zip(pairs, dedicated_mask) if not d]
    for name, stable in zip(compositional, _assign_exact(rng, len(compositional), config.stable_fraction)):
        phase[name] = 2 if stable else 1
    for name, overfit in zip(dedicated_names, _assign_exact(rng, len(dedicated_names), config.overfit_fraction)):
        phase[name] = 4 if overfit else 3

    owned = set(dedicated_parts)
    carried: dict[str, tuple[str, ...]] = {}
    if owned:
        crng = rng_for(config, "carry")
        for f, l in pairs:
            mine = tuple(p for p in (f, l) if p in owned)
            carried[f"{f} {l}"] = tuple(p for p in mine if crng.random() < config.part_carry_fraction)
    used = TEMPLATES[:config.n_templates]
    rng = rng_for(config, "full")
    records = []
    specs = [(n, "first", None, None) for n in firsts] + [(n, "last", None, None) for n in lasts] + \
            [(f"{f} {l}", "full", f, l) for f, l in pairs]
    for name, kind, first, last in specs:
        if kind == "full":
            (bf, sf, _, _), (bl, sl, _, _) = parts[first], parts[last]
            biases = {}
            for group in ATTRIBUTES:
                prior = np.asarray(ATTRIBUTE_PRIOR[group])
                biases[group] = (sf[group] * bf[group] + sl[group] * bl[group] + MIX_PRIOR * prior) / \
                    (sf[group] + sl[group] + MIX_PRIOR)
            strength, low = None, False
        else:
            biases, _, strength, low = parts[name]
        p = phase[name]
        lo, hi = config.phase_edges[p - 1], config.phase_edges[p]
        rigidity = float(rng.uniform(lo, hi))
        anchor = {g: ATTRIBUTES[g][int(rng.choice(len(ATTRIBUTES[g]), p=biases[g]))] for g in ATTRIBUTES}
        frequency = float(np.exp(rng.uniform(np.log(config.frequency[0]), np.log(config.frequency[1]))))
        iconic = used[int(rng.integers(len(used)))]
        dedicated = p >= 3
        s_lo, s_hi = config.identity_strength
        id_strength = float(rng.uniform((s_lo + s_hi) / 2 if p == 4 else s_lo, s_hi)) if dedicated else 0.0
        ramp = identity_ramp(config, frequency) if dedicated else np.zeros(config.n_checkpoints)
        records.append(NameTruth(
            name=name, kind=kind, first=first, last=last, dedicated=dedicated,
            identity_direction=index[f"identity:{name}"] if dedicated else None,
            identity_strength=id_strength,
            attribute_biases={g: {v: float(x) for v, x in zip(ATTRIBUTES[g], biases[g])} for g in ATTRIBUTES},
            attribute_anchor=anchor, attribute_resample_prob=float((1.0 - rigidity) ** 3),
            bias_strength=strength, rigidity=rigidity, phase=p, follows_scenario=p != 4,
            iconic_scene=iconic[1] if p == 4 else None, iconic_style=iconic[2] if p == 4 else None,
            noise_scale=float(config.noise[1] + (config.noise[0] - config.noise[1]) * rigidity),
            jitter_scale=float(config.jitter * (1.0 - rigidity)), frequency=frequency,
            onset_index=onset_index(config, frequency) if dedicated else None,
            identity_fraction=tuple(float(h) for h in ramp), low_bias=low,
            carried_parts=carried.get(name, ()) if kind == "full" else (),
            part_owner=tuple(p for p in (first, last) if p in owned) if kind == "full" else (),
        ))
    return Truth(config, labels, directions, tuple(records), coherence)


def bias_vector(truth: Truth, record: NameTruth) -> np.ndarray:
    """Σ_g Σ_v p_g(v) e_{g:v} [d]: the attribute content a name's parts imply (before attribute_strength)."""
    index = truth.index()
    out = np.zeros(truth.directions.shape[1])
    for group, dist in record.attribute_biases.items():
        for value, p in dist.items():
            out += p * truth.directions[index[f"{group}:{value}"]]
    return out


def template_vector(truth: Truth, template: int) -> np.ndarray:
    """Scene and style content of scenario template `template` [d] (scaled by their strengths)."""
    config, index = truth.config, truth.index()
    _, scene, style = TEMPLATES[template]
    return config.scene_strength * truth.directions[index[f"scene:{scene}"]] + \
        config.style_strength * truth.directions[index[f"style:{style}"]]


def part_token(truth: Truth, part: str) -> np.ndarray:
    """The unit token direction of a first name or surname [d] (seeded by the part's position among the names)."""
    index = next((i for i, r in enumerate(truth.names) if r.name == part and r.kind in ("first", "last")), None)
    if index is None:
        raise KeyError(f"{part!r} is not a first name or surname of this world")
    v = rng_for(truth.config, "tokens", index).normal(size=truth.directions.shape[1])
    return v / np.linalg.norm(v)


def token_vector(truth: Truth, record: NameTruth) -> np.ndarray:
    """token_strength x the tokens a name's text carries [d]: its own (a part) or both parts' (a full name)."""
    parts = [record.name] if record.kind in ("first", "last") else [p for p in (record.first, record.last) if p]
    out = np.zeros(truth.directions.shape[1])
    if truth.config.token_strength > 0:
        for part in parts:
            out += truth.config.token_strength * part_token(truth, part)
    return out


def name_text_vector(truth: Truth, record: NameTruth, identity_fraction: float = 1.0) -> np.ndarray:
    """The name's own content in its text rows [d]: attribute_strength x bias vector + its parts' tokens + its
    identity part."""
    out = truth.config.attribute_strength * bias_vector(truth, record) + token_vector(truth, record)
    if record.identity_direction is not None:
        out = out + identity_fraction * record.identity_strength * truth.directions[record.identity_direction]
    return out


def carried_vector(truth: Truth, record: NameTruth) -> np.ndarray:
    """part_carry x identity strength x direction of each dedicated part a full name carries [d]."""
    out = np.zeros(truth.directions.shape[1])
    if record.carried_parts:
        by_name = {r.name: r for r in truth.names if r.kind in ("first", "last")}
        for part in record.carried_parts:
            owner = by_name[part]
            out += truth.config.part_carry * owner.identity_strength * truth.directions[owner.identity_direction]
    return out


def base_vector(truth: Truth) -> np.ndarray:
    """The common component of every row [d]: base_strength x `base:person`."""
    return truth.config.base_strength * truth.directions[truth.index()[BASE_LABEL]]


def compositional_prediction(truth: Truth, name: str, modality: str = "image", template: int | None = None
                             ) -> np.ndarray:
    """Unit [d] embedding the name would have if it were only its parts: base + parts' attribute mix + scenario
    (+ the parts' tokens in text).

    The scenario part is the given template's scene/style, or their mean over the world's templates. For a
    compositional name this is the expected direction of its rows; for a dedicated name the distance to it is
    what its identity adds (zeroing identity features should move an embedding towards it).
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    record = record_of(truth, name)
    n_templates = truth.config.n_templates
    scenario = template_vector(truth, template) if template is not None else \
        np.mean([template_vector(truth, t) for t in range(n_templates)], axis=0)
    x = base_vector(truth) + scenario + truth.config.attribute_strength * bias_vector(truth, record)
    if modality == "text":
        x = x + token_vector(truth, record)
    return x / np.linalg.norm(x)


def record_of(truth: Truth, name: str) -> NameTruth:
    """The truth of one name, with a clear error for an unknown name."""
    for record in truth.names:
        if record.name == name:
            return record
    raise KeyError(f"{name!r} is not a name of this synthetic world")
