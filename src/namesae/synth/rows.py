"""Rows of the synthetic world's stores, built from its planted truth: image, text, vocabulary, progression.

Image row ("generation") of name n from template t (scene_t, style_t), seed j, before normalisation to unit norm:
    base_strength·base + Σ_g attribute_strength·c_g·e_{g:v_g} + scene_strength·c_s·scene + style_strength·c_y·style
    + h·identity_strength·c_i·u_n + noise_scale·ξ + Σ_p part_carry·s_p·u_p,        ξ ~ N(0, I/d)
v_g is the name's anchor value, or w.p. (1 - r)^3 a draw from p_g; c_* = max(0.1, 1 + jitter_scale·z), z ~ N(0, 1);
scene/style are the template's (phases 1-3) or the name's iconic ones (phase 4); u_n and its term only for
dedicated names, h = 1 in the final stores and h(e_t) at checkpoint t (an overfit name's iconic scene/style
likewise enters as h x (iconic - template), so before its identity emerges it follows the template like any name); the last sum runs over the dedicated name
parts p (strength s_p, direction u_p) that a full name carries (`carried_parts`), at full strength throughout.
Text row of name n with template t: base + template scene/style + attribute_strength·Σ_g Σ_v p_g(v) e_{g:v}
+ h·identity_strength·u_n + text_noise·ξ (ξ fixed per prompt). Template rows (`template_name`): base + template
scene/style + noise. Vocabulary row: base + the phrase's direction mix + noise.
The same draws serve every checkpoint: only h changes, so emergence is the one difference between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from namesae.synth.config import ATTRIBUTES, TEMPLATE_FILLER, TEMPLATES, vocabulary_phrases
from namesae.synth.world import (
    Truth,
    base_vector,
    bias_vector,
    carried_vector,
    rng_for,
    template_vector,
    token_vector,
)

VOCAB_WEIGHT = 1.0  # coefficient of a vocabulary phrase's directions next to the base


@dataclass(frozen=True)
class StoreRows:
    """The content of one store, ready for `write_store`."""

    embeddings: np.ndarray  # [N, d] float32 unit rows
    names: list[str]
    prompts: list[str]
    kinds: list[str]
    seeds: list[int] | None
    space: str


@dataclass(frozen=True)
class RowParts:
    """Unnormalised rows split into the identity term (which ramps during training) and the rest."""

    rest: np.ndarray  # [N, d]
    identity: np.ndarray  # [N, d], the identity term at full strength (zero for compositional names)
    name_ids: np.ndarray  # [N] index into truth.names, -1 for rows of no name (templates)
    names: list[str]
    prompts: list[str]
    kind: str
    seeds: list[int] | None
    overfit: np.ndarray | None = None
    """[N, d] iconic scene/style minus the template's, for rows of overfit names (zero elsewhere); None: none."""

    def rows(self, fractions: np.ndarray, space: str) -> StoreRows:
        """The store with each name's identity at fraction `fractions[name_id]` [n_names] of full strength; an
        overfit name ignores its scenario to the same degree (h = 0: it follows the template like any name)."""
        h = np.where(self.name_ids >= 0, fractions[np.maximum(self.name_ids, 0)], 0.0)
        x = self.rest + h[:, None] * self.identity
        if self.overfit is not None:
            x = x - (1.0 - h)[:, None] * self.overfit
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        return StoreRows(x, self.names, self.prompts, [self.kind] * len(self.names), self.seeds, space)


def _attribute_tables(truth: Truth) -> dict[str, np.ndarray]:
    index = truth.index()
    return {g: truth.directions[[index[f"{g}:{v}"] for v in values]] for g, values in ATTRIBUTES.items()}


def image_parts(truth: Truth) -> RowParts:
    """Every name's generations: n_templates x images_per_template rows per name (see the module docstring)."""
    config, index = truth.config, truth.index()
    d, per = config.dim, config.images_per_template
    tables = _attribute_tables(truth)
    base = base_vector(truth)
    rest, ident, over, ids, names, prompts, seeds = [], [], [], [], [], [], []
    for i, rec in enumerate(truth.names):
        rng = rng_for(config, "image", i)
        m = config.n_templates * per
        templates = np.repeat(np.arange(config.n_templates), per)
        x = np.tile(base, (m, 1))
        for group, values in ATTRIBUTES.items():
            p = np.array([rec.attribute_biases[group][v] for v in values])
            anchor = values.index(rec.attribute_anchor[group])
            resample = rng.random(m) < rec.attribute_resample_prob
            drawn = rng.choice(len(values), size=m, p=p / p.sum())
            chosen = np.where(resample, drawn, anchor)
            coef = np.maximum(0.1, 1.0 + rec.jitter_scale * rng.normal(size=m))
            x += config.attribute_strength * coef[:, None] * tables[group][chosen]
        delta = np.zeros((m, d))
        for kind, strength in (("scene", config.scene_strength), ("style", config.style_strength)):
            follow = [f"{kind}:{TEMPLATES[t][1 if kind == 'scene' else 2]}" for t in templates]
            if rec.follows_scenario:
                labels = follow
            else:
                labels = [f"{kind}:{rec.iconic_scene if kind == 'scene' else rec.iconic_style}"] * m
            coef = np.maximum(0.1, 1.0 + rec.jitter_scale * rng.normal(size=m))
            x += strength * coef[:, None] * truth.directions[[index[label] for label in labels]]
            if not rec.follows_scenario:
                delta += strength * coef[:, None] * (truth.directions[[index[label] for label in labels]]
                                                     - truth.directions[[index[label] for label in follow]])
        x += rec.noise_scale * rng.normal(size=(m, d)) / np.sqrt(d)
        x += carried_vector(truth, rec)  # dedicated name parts this full name carries (empty for most)
        y = np.zeros((m, d))
        if rec.identity_direction is not None:
            coef = np.maximum(0.1, 1.0 + rec.jitter_scale * rng.normal(size=m))
            y = rec.identity_strength * coef[:, None] * truth.directions[rec.identity_direction]
        rest.append(x)
        ident.append(y)
        over.append(delta)
        ids += [i] * m
        names += [rec.name] * m
        prompts += [TEMPLATES[t][0].format(rec.name) for t in templates]
        seeds += list(range(per)) * config.n_templates
    return RowParts(np.concatenate(rest), np.concatenate(ident), np.asarray(ids), names, prompts, "image", seeds,
                    np.concatenate(over))


def text_parts(truth: Truth) -> RowParts:
    """One text row per name and template, plus the bare templates (name `template_name`)."""
    config = truth.config
    d = config.dim
    base = base_vector(truth)
    scenario = [template_vector(truth, t) for t in range(config.n_templates)]
    rest, ident, ids, names, prompts = [], [], [], [], []
    rng = rng_for(config, "text", len(truth.names))
    for t in range(config.n_templates):
        rest.append(base + scenario[t] + config.text_noise * rng.normal(size=d) / np.sqrt(d))
        ident.append(np.zeros(d))
        ids.append(-1)
        names.append(config.template_name)
        prompts.append(TEMPLATES[t][0].format(TEMPLATE_FILLER))
    for i, rec in enumerate(truth.names):
        rng = rng_for(config, "text", i)
        own = config.attribute_strength * bias_vector(truth, rec) + token_vector(truth, rec) + \
            carried_vector(truth, rec)
        u = rec.identity_strength * truth.directions[rec.identity_direction] \
            if rec.identity_direction is not None else np.zeros(d)
        for t in range(config.n_templates):
            rest.append(base + scenario[t] + own + config.text_noise * rng.normal(size=d) / np.sqrt(d))
            ident.append(u)
            ids.append(i)
            names.append(rec.name)
            prompts.append(TEMPLATES[t][0].format(rec.name))
    return RowParts(np.stack(rest), np.stack(ident), np.asarray(ids), names, prompts, "text", None)


def vocab_rows(truth: Truth, space: str) -> StoreRows:
    """One text row per vocabulary phrase; row name = the label of the phrase's main direction."""
    config, index = truth.config, truth.index()
    rng = rng_for(config, "vocab")
    base = base_vector(truth)
    rows, names, prompts = [], [], []
    for phrase, mix in vocabulary_phrases():
        x = base + config.text_noise * rng.normal(size=config.dim) / np.sqrt(config.dim)
        for label, weight in mix.items():
            x = x + VOCAB_WEIGHT * weight * truth.directions[index[label]]
        rows.append(x / np.linalg.norm(x))
        names.append(max(mix, key=mix.get))
        prompts.append(phrase)
    return StoreRows(np.stack(rows).astype(np.float32), names, prompts, ["text"] * len(rows), None, space)
