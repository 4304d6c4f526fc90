"""The synthetic name world: names embedded with planted structure and known truth, to score every analysis.

A world (d = 64 by default) is built from orthonormal *shared* directions — `base:person`, one per attribute value
(`age:child` ... `age:elderly`, `gender:male|female`, `ethnicity:*`, `hair:*`, `body:*`, `glasses:no|yes`,
`expression:neutral|smiling`), one per scene (`scene:astronaut`, ...) and style (`style:painting`, ...) — and one
*identity* direction per dedicated name, in the complement of the shared span. First names and surnames carry
attribute biases (low-bias ones form the prior); full names "First Last" mix their parts' biases and are either
compositional (only shared directions) or dedicated (plus their identity direction). Image rows ("generations")
are the name's look plus scene/style and noise, spread set by the name's rigidity; phase-4 (overfit) names ignore
the scenario template. A progression of checkpoints grows each identity from absent to full, with an onset set
by the name's frequency. The generative model is documented in `world.py` (truth) and `rows.py` (rows).

Python API::

    from namesae.synth import SynthConfig, build_world, write_world, load_truth, load_world
    world = build_world(SynthConfig(seed=0))          # pure, in memory: world.truth, world.stores
    paths = write_world(world, "runs/world")          # WorldPaths
    truth = load_truth("runs/world")                  # dict (schema below)
    compositional_prediction(world, "Vora Tessard")   # unit [d]: the name as only its parts

Output layout of `write_world(world, DIR)` / `namesae synth --out DIR`:

    DIR/truth.json                  planted truth (schema below)
    DIR/directions.safetensors      tensor "directions" [n_directions, d] float32, unit rows, id = row;
                                    metadata "labels" (JSON list, same order as truth.json "directions")
    DIR/prior_names.txt             the low-bias names (one per line; `namesae identity --prior-names`)
    DIR/image.h5                    image rows, space synth:<seed>:image: every name (first names, surnames,
                                    full names) x n_templates x images_per_template; prompt = template filled with
                                    the name; seed = 0..images_per_template-1 within a prompt
    DIR/text.h5                     text rows, space synth:<seed>:text: every name x n_templates, plus the bare
                                    templates (name = template_name, "<template>"; name slot = "a person")
    DIR/vocab.h5                    text rows, space synth:<seed>:text: one row per phrase (prompt = phrase, name =
                                    its direction's label, e.g. "age:child"); includes every prompt of the
                                    built-in attribute ladders (namesae/data/ladders.json)
    DIR/progression/ckpt_NN/{image,text,vocab}.h5   the same rows at checkpoint NN (space synth:<seed>:ckptNN:
                                    image|text): identical draws, identity at identity_strength x h(e_t)
All stores hold unit-norm rows (`normalized` = true), in the DESIGN.md format, written atomically.

truth.json schema (format_version 1, kind "namesae-synth-world"):

    seed, dim, normalized, config (every SynthConfig field), spaces {image, text}, stores {...file names},
    template_name, template_filler, templates [{template, scene, style}], attributes {group: [values]},
    attribute_prior {group: {value: p}}, age_years {age value: years},
    directions [{id, label, kind: base|attribute|scene|style|identity, group?, value?, name?}],
    identity_coherence (max |cos| between identity directions), phases {"1".."4": {dedicated, follows_scenario,
    definition, measurable}}, phase_counts, definitions {rigidity, onset_index, compositional_prediction, low_bias},
    progression {samples_seen [T], emergence_exposures, emergence_steepness, onset_fraction,
                 checkpoints [{index, samples_seen, dir, spaces}]},
    names [{name, kind: first|last|full, first, last (null unless full), dedicated, identity_direction (id|null),
            identity_strength, attribute_biases {group: {value: p}}, attribute_anchor {group: value},
            attribute_resample_prob, bias_strength (parts; else null), rigidity (high = varies little), phase 1-4,
            follows_scenario, iconic_scene, iconic_style, noise_scale, jitter_scale, frequency, onset_index (null
            if never / compositional), identity_fraction [T], low_bias}]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from namesae.synth.config import (
    AGE_YEARS,
    ATTRIBUTE_PRIOR,
    ATTRIBUTES,
    SCENES,
    STYLES,
    TEMPLATES,
    SynthConfig,
    shared_labels,
    vocabulary_phrases,
)
from namesae.synth.io import (
    CheckpointPaths,
    World,
    WorldPaths,
    build_world,
    load_truth,
    load_world,
    space,
    truth_dict,
    write_world,
)
from namesae.synth.rows import StoreRows
from namesae.synth.world import NameTruth, Truth, identity_ramp, name_text_vector, onset_index
from namesae.synth.world import compositional_prediction as _compositional_prediction


def compositional_prediction(world: World | Truth, name: str, modality: str = "image",
                             template: int | None = None) -> np.ndarray:
    """Unit [d] embedding of `name` as only its parts (no identity): base + parts' attribute mix + scenario."""
    truth = world.truth if isinstance(world, World) else world
    return _compositional_prediction(truth, name, modality, template)


def text_vector(world: World | Truth, name: str, identity_fraction: float = 1.0) -> np.ndarray:
    """A name's own content [d] in its text rows (attribute biases + identity): for toy text encoders."""
    from namesae.synth.world import record_of
    truth = world.truth if isinstance(world, World) else world
    return name_text_vector(truth, record_of(truth, name), identity_fraction)


def summary(world: World) -> dict[str, Any]:
    """Counts for printing: names by kind and phase, dedicated, rows per store, onsets per checkpoint."""
    names = world.names
    onsets = [r.onset_index for r in names if r.dedicated]
    return {
        "seed": world.config.seed, "dim": world.config.dim, "n_directions": len(world.truth.labels),
        "names": {k: sum(r.kind == k for r in names) for k in ("first", "last", "full")},
        "dedicated": sum(r.dedicated for r in names), "low_bias": sum(r.low_bias for r in names),
        "phases": {str(p): sum(r.phase == p for r in names) for p in (1, 2, 3, 4)},
        "onsets": {str(t): onsets.count(t) for t in sorted({o for o in onsets if o is not None})}
        | ({"never": onsets.count(None)} if None in onsets else {}),
        "identity_coherence": round(world.truth.identity_coherence, 4),
        "rows": {key: len(rows.names) for key, rows in world.stores.items()},
    }


__all__ = [
    "AGE_YEARS", "ATTRIBUTES", "ATTRIBUTE_PRIOR", "SCENES", "STYLES", "TEMPLATES", "CheckpointPaths", "NameTruth",
    "StoreRows", "SynthConfig", "Truth", "World", "WorldPaths", "build_world", "compositional_prediction",
    "identity_ramp", "load_truth", "load_world", "onset_index", "shared_labels", "space", "summary", "text_vector",
    "truth_dict", "vocabulary_phrases", "write_world",
]
