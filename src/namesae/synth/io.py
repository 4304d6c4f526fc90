"""Build a world in memory, write it (stores + truth.json + directions.safetensors), and read its truth back."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from namesae.config import config_from_dict, config_to_dict
from namesae.errors import NamesaeError
from namesae.io import atomic_write_bytes, read_json_input
from namesae.synth.config import (
    AGE_YEARS,
    ATTRIBUTE_PRIOR,
    ATTRIBUTES,
    TEMPLATE_FILLER,
    TEMPLATES,
    SynthConfig,
)
from namesae.synth.rows import StoreRows, image_parts, text_parts, vocab_rows
from namesae.synth.world import NameTruth, Truth, plant_truth

FORMAT_VERSION = 1
TRUTH_KIND = "namesae-synth-world"

# What each planted phase means and how the analyses should see it (prose written into truth.json).
PHASE_DEFINITIONS = json.loads(resources.files("namesae").joinpath("data", "phases.json")
                               .read_text(encoding="utf-8"))
DEFINITIONS = {
    "rigidity": "r in [0, 1], high = generations vary little. Within-name spread falls with r: attribute "
                "resample probability (1 - r)^3, noise norm noise[1] + (noise[0] - noise[1]) r, coefficient jitter "
                "jitter (1 - r), no scene/style change across templates in phase 4. Expect r to rank names like "
                "mean pairwise cosine (increasing) and total variance (decreasing).",
    "onset_index": "first checkpoint t with h(e_t) >= onset_fraction, where e_t = frequency x samples_seen[t] and "
                   "h(e) = 1 / (1 + (emergence_exposures / e)^emergence_steepness); the identity coefficient at t "
                   "is identity_strength x h(e_t). null for compositional names (they never emerge) and for a "
                   "dedicated name that no checkpoint brings to onset_fraction.",
    "compositional_prediction": "base + attribute_strength x Σ_g Σ_v attribute_biases[g][v] e_{g:v} + mean over "
                                "templates of (scene_strength scene + style_strength style), unit-normalised "
                                "(namesae.synth.compositional_prediction).",
    "low_bias": "first names / surnames whose bias_strength < 0.1: the model's prior for z-scores.",
}


@dataclass(frozen=True)
class World:
    """A synthetic name world: its planted truth and (when built in memory) the content of every store."""

    truth: Truth
    stores: dict[str, StoreRows] = field(default_factory=dict)
    """Keyed by path relative to the world's folder without `.h5`: "image", "text", "vocab",
    "progression/ckpt_00/image", ...; empty for a world loaded from disk (the rows are in its stores)."""

    @property
    def config(self) -> SynthConfig:
        """The world's settings."""
        return self.truth.config

    @property
    def names(self) -> tuple[NameTruth, ...]:
        """Every name's truth: first names, surnames, then full names."""
        return self.truth.names

    @property
    def directions(self) -> dict[str, np.ndarray]:
        """Unit direction [d] of every label (`age:child`, `scene:astronaut`, `identity:<name>`, ...)."""
        return {label: self.truth.directions[i] for i, label in enumerate(self.truth.labels)}

    def record(self, name: str) -> NameTruth:
        """The truth of one name."""
        from namesae.synth.world import record_of
        return record_of(self.truth, name)


@dataclass(frozen=True)
class CheckpointPaths:
    """The stores of one checkpoint of the progression."""

    index: int
    samples_seen: int
    image: Path
    text: Path
    vocab: Path


@dataclass(frozen=True)
class WorldPaths:
    """Where `write_world` wrote each file."""

    root: Path
    truth: Path
    directions: Path
    prior_names: Path
    image: Path
    text: Path
    vocab: Path
    checkpoints: list[CheckpointPaths]


def space(config: SynthConfig, modality: str, checkpoint: int | None = None) -> str:
    """Store space string: `synth:<seed>:<modality>` or `synth:<seed>:ckptNN:<modality>`."""
    return f"synth:{config.seed}:{modality}" if checkpoint is None else \
        f"synth:{config.seed}:ckpt{checkpoint:02d}:{modality}"


def checkpoint_dir(index: int) -> str:
    """Folder of checkpoint `index`, relative to the world's folder."""
    return f"progression/ckpt_{index:02d}"


def build_world(config: SynthConfig) -> World:
    """Plant the truth and build every store's rows in memory (pure; seeded)."""
    truth = plant_truth(config)
    image, text = image_parts(truth), text_parts(truth)
    full = np.ones(len(truth.names))
    stores = {"image": image.rows(full, space(config, "image")), "text": text.rows(full, space(config, "text")),
              "vocab": vocab_rows(truth, space(config, "text"))}
    if config.progression:
        for t in range(config.n_checkpoints):
            fractions = np.array([rec.identity_fraction[t] for rec in truth.names])
            key = checkpoint_dir(t)
            stores[f"{key}/image"] = image.rows(fractions, space(config, "image", t))
            stores[f"{key}/text"] = text.rows(fractions, space(config, "text", t))
            stores[f"{key}/vocab"] = vocab_rows(truth, space(config, "text", t))
    return World(truth, stores)


def truth_dict(world: World) -> dict[str, Any]:
    """The JSON content of truth.json (schema in the package docstring)."""
    truth, config = world.truth, world.config
    directions = []
    for i, label in enumerate(truth.labels):
        kind, _, rest = label.partition(":")
        item: dict[str, Any] = {"id": i, "label": label}
        if kind in ATTRIBUTES:
            item.update(kind="attribute", group=kind, value=rest)
        elif kind == "identity":
            item.update(kind="identity", name=rest)
        else:
            item.update(kind=kind, value=rest)
        directions.append(item)
    counts = Counter(rec.phase for rec in truth.names)
    return {
        "format_version": FORMAT_VERSION, "kind": TRUTH_KIND, "seed": config.seed,
        "config": config_to_dict(config), "dim": config.dim, "normalized": True,
        "spaces": {"image": space(config, "image"), "text": space(config, "text")},
        "stores": {"image": "image.h5", "text": "text.h5", "vocab": "vocab.h5",
                   "directions": "directions.safetensors", "prior_names": "prior_names.txt"},
        "template_name": config.template_name, "template_filler": TEMPLATE_FILLER,
        "templates": [{"template": tpl, "scene": f"scene:{scene}", "style": f"style:{style}"}
                      for tpl, scene, style in TEMPLATES[:config.n_templates]],
        "attributes": {g: list(v) for g, v in ATTRIBUTES.items()},
        "attribute_prior": {g: dict(zip(ATTRIBUTES[g], p)) for g, p in ATTRIBUTE_PRIOR.items()},
        "age_years": dict(AGE_YEARS),
        "directions": directions, "identity_coherence": truth.identity_coherence,
        "phases": PHASE_DEFINITIONS, "phase_counts": {str(p): counts.get(p, 0) for p in (1, 2, 3, 4)},
        "definitions": DEFINITIONS,
        "progression": {
            "samples_seen": list(config.samples_seen), "emergence_exposures": config.emergence_exposures,
            "emergence_steepness": config.emergence_steepness, "onset_fraction": config.onset_fraction,
            "checkpoints": [{"index": t, "samples_seen": s, "dir": checkpoint_dir(t),
                             "spaces": {"image": space(config, "image", t), "text": space(config, "text", t)}}
                            for t, s in enumerate(config.samples_seen)] if config.progression else [],
        },
        "names": [rec.to_dict() for rec in truth.names],
    }


def write_world(world: World, out_dir: str | Path) -> WorldPaths:
    """Write the world's stores, truth.json and directions.safetensors under out_dir (each file atomically)."""
    from safetensors.numpy import save

    from namesae.store import write_store

    if not world.stores:
        raise NamesaeError("this world has no rows (loaded from disk?); build it with build_world(config)")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    config = world.config
    attrs = {"synth_seed": config.seed, "synth_truth": "truth.json"}
    for key, rows in world.stores.items():
        path = root / f"{key}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_store(path, rows.embeddings, rows.names, rows.prompts, rows.kinds, rows.space, normalized=True,
                    seeds=rows.seeds, dtype=config.dtype, attrs=attrs)
    # Checkpoints of an earlier, longer progression written here would contradict truth.json.
    progression = root / "progression"
    if progression.is_dir():
        for stale in sorted(progression.glob("ckpt_*")):
            if f"progression/{stale.name}/image" not in world.stores and stale.is_dir():
                shutil.rmtree(stale)
    directions_path = root / "directions.safetensors"
    atomic_write_bytes(directions_path, save({"directions": world.truth.directions.astype(np.float32)},
                                        metadata={"labels": json.dumps(list(world.truth.labels))}))
    prior_path = root / "prior_names.txt"
    prior = [rec.name for rec in world.truth.names if rec.low_bias]
    atomic_write_bytes(prior_path, ("# low-bias names (the prior for z-scores), one per line\n" +
                               "".join(f"{n}\n" for n in prior)).encode("utf-8"))
    truth_path = root / "truth.json"
    atomic_write_bytes(truth_path, json.dumps(truth_dict(world), indent=1).encode("utf-8"))
    checkpoints = [CheckpointPaths(t, s, root / checkpoint_dir(t) / "image.h5", root / checkpoint_dir(t) / "text.h5",
                                   root / checkpoint_dir(t) / "vocab.h5")
                   for t, s in enumerate(config.samples_seen) if config.progression]
    return WorldPaths(root, truth_path, directions_path, prior_path, root / "image.h5", root / "text.h5", root / "vocab.h5",
                      checkpoints)


def load_truth(world_dir: str | Path) -> dict[str, Any]:
    """truth.json of a written world as a dict (schema in the package docstring), validated."""
    path = Path(world_dir)
    path = path / "truth.json" if path.is_dir() else path
    data = read_json_input(path, "truth.json not found; write a world with `namesae synth --out DIR`")
    if not isinstance(data, dict) or data.get("kind") != TRUTH_KIND:
        raise NamesaeError(f"{path}: not a synthetic world's truth (field 'kind' is not {TRUTH_KIND!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise NamesaeError(f"{path}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}; "
                           f"rewrite the world with this version of namesae")
    return data


def load_world(world_dir: str | Path) -> World:
    """The truth of a written world (directions included) as a World without rows (they stay in the stores)."""
    from safetensors.numpy import load_file

    data = load_truth(world_dir)
    root = Path(world_dir) if Path(world_dir).is_dir() else Path(world_dir).parent
    config = config_from_dict(SynthConfig, data["config"], str(root / "truth.json"))
    path = root / "directions.safetensors"
    if not path.is_file():
        raise NamesaeError(f"{path}: directions file not found next to truth.json; rewrite the world")
    directions = load_file(str(path))["directions"].astype(np.float64)
    labels = tuple(d["label"] for d in data["directions"])
    if directions.shape != (len(labels), config.dim):
        raise NamesaeError(f"{path}: directions have shape {directions.shape}, truth.json lists {len(labels)} "
                           f"directions of dim {config.dim}; rewrite the world")
    names = tuple(NameTruth(**{**rec, "identity_fraction": tuple(rec["identity_fraction"]),
                                "carried_parts": tuple(rec.get("carried_parts", ())),
                                "part_owner": tuple(rec.get("part_owner", ()))})
                  for rec in data["names"])
    return World(Truth(config, labels, directions, names, float(data["identity_coherence"])))
