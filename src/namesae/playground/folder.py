"""What the playground finds in a run folder: the SAE, the image store, identity, groups, feature labels, icons and
the decoder, each where `namesae demo` writes it (or where the folder's run.json says)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import read_json, require_format

log = logging.getLogger(__name__)

TINY_DECODER = "steer/tiny_kandinsky22"  # where `namesae demo` builds its tiny Kandinsky 2.2
# run.json keys and their defaults (the layout `namesae demo` writes).
DEFAULTS = {"sae": "sae", "image_store": "world/image.h5", "identity": "identity.json", "groups": "groups.json",
            "features": "features.json", "truth": "world/truth.json"}


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of features of the embedding being steered, as the playground shows it."""

    label: str
    features: tuple[int, ...]
    mass_share: float | None = None  # the group's share of the embedding's activation mass
    origin: str = ""  # identity.json | groups.json | live


@dataclass(frozen=True)
class Icons:
    """Feature and group icons from icons/index.json: {"features": {id: file}, "groups": {label: file}}."""

    features: dict[int, Path] = field(default_factory=dict)
    groups: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFolder:
    """The files of one run the playground reads."""

    root: Path
    sae: Path
    store: Path
    identity: Path | None
    groups: Path | None
    features: Path | None
    truth: Path | None
    icons: Path | None  # icons/index.json
    model: str | None  # the decoder spec handed to `namesae steer --model` (tiny:DIR for the demo's)


def _manifest(root: Path) -> dict[str, str]:
    """The run's run.json paths (relative to the run folder), or {} without one."""
    path = root / "run.json"
    if not path.is_file():
        return {}
    data = read_json(path, "run `namesae demo` first", "run `namesae demo` again to rewrite it")
    if not isinstance(data, dict):
        raise NamesaeError(f"{path}: top level must be an object of paths, got {type(data).__name__}; run "
                           f"`namesae demo` again to rewrite it")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def find_run(root: str | Path, model: str | None = None) -> RunFolder:
    """The run folder's files; one clear line when it is not a run folder (no SAE, no image store)."""
    root = Path(root)
    if not root.is_dir():
        raise NamesaeError(f"{root}: not a folder; pass the run folder `namesae demo` wrote (e.g. runs/demo)")
    paths = {**DEFAULTS, **_manifest(root)}
    sae = root / paths["sae"]
    if not (sae / "cfg.json").is_file():
        raise NamesaeError(f"{root}: no SAE in {sae} (cfg.json missing); run `namesae demo --out {root}` or "
                           f"`namesae train --out {sae}`")
    store = root / paths["image_store"]
    if not store.is_file():
        raise NamesaeError(f"{root}: no image store at {store}; write one there (`namesae synth`, `namesae embed`) "
                           f"or name it under 'image_store' in {root / 'run.json'}")

    def optional(key: str) -> Path | None:
        path = root / paths[key]
        return path if path.is_file() else None

    icons = root / "icons" / "index.json"
    tiny = root / TINY_DECODER
    if model is None and (tiny / "namesae_decoder.json").is_file():
        model = f"tiny:{tiny}"
    return RunFolder(root, sae, store, optional("identity"), optional("groups"), optional("features"),
                     optional("truth"), icons if icons.is_file() else None, model)


# ---- readers of the run's result files ---------------------------------------------------------------------------
def _records(path: Path, kind: str, key: str) -> list[dict[str, Any]]:
    """The list of records under `key` of a format_version 1 result file (identity.json, features.json)."""
    fix = f"run `namesae {kind}` (or `namesae demo`) again to rewrite it"
    data = require_format(read_json(path, f"run `namesae {kind}` first", fix), path, kind, 1, fix)
    records = data.get(key)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise NamesaeError(f"{path}: field {key!r} must be a list of objects; {fix}")
    return records


def identity_features(path: Path | None) -> dict[str, tuple[int, ...]]:
    """Each name's identity features from identity.json ({} without the file)."""
    if path is None:
        return {}
    out = {}
    for rec in _records(path, "identity", "names"):
        feats = tuple(int(f["feature"]) for f in rec.get("identity_features") or [] if isinstance(f, dict))
        out[str(rec.get("name"))] = feats
    return out


def feature_labels(path: Path | None) -> dict[int, str]:
    """Each feature's label from features.json ({} without the file)."""
    if path is None:
        return {}
    return {int(r["feature"]): str(r["label"]) for r in _records(path, "features", "features")
            if isinstance(r.get("feature"), int) and r.get("label")}


def name_groups_of(path: Path | None) -> tuple[dict[str, list[FeatureGroup]], dict[str, Any] | None]:
    """(groups of each name, the grouping config) from the demo's groups.json ({} and None without it)."""
    if path is None:
        return {}, None
    fix = "run `namesae demo` again to rewrite it"
    data = require_format(read_json(path, "run `namesae demo` first", fix), path, "groups", 1, fix)
    names = data.get("names")
    if not isinstance(names, Mapping):
        log.warning("%s: no 'names' mapping (a single `namesae groups` record?); groups are computed live", path)
        return {}, data.get("config") if isinstance(data.get("config"), dict) else None
    out = {}
    for name, record in names.items():
        groups = record.get("groups") if isinstance(record, Mapping) else None
        if not isinstance(groups, list):
            raise NamesaeError(f"{path}: field 'names.{name}.groups' must be a list of groups; {fix}")
        out[str(name)] = [FeatureGroup(g.get("label") or f"group {i + 1}", tuple(int(j) for j in g["features"]),
                                       g.get("mass_share"), "groups.json") for i, g in enumerate(groups)]
    return out, data.get("config") if isinstance(data.get("config"), dict) else None


def read_icons(path: Path | None) -> Icons:
    """Icons from icons/index.json (paths relative to icons/); files that are missing are left out."""
    if path is None:
        return Icons()
    fix = "write icons/index.json again ({\"features\": {id: file}, \"groups\": {label: file}})"
    data = read_json(path, "no icons", fix)
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict) for k in ("features", "groups")):
        raise NamesaeError(f"{path}: expected an object with 'features' and 'groups' objects; {fix}")
    folder = path.parent

    def present(entries: Mapping[str, Any]) -> dict[str, Path]:
        files = {str(k): folder / str(v) for k, v in entries.items() if isinstance(v, str)}
        return {k: p for k, p in files.items() if p.is_file() and folder.resolve() in p.resolve().parents}

    features = {int(k): p for k, p in present(data.get("features", {})).items() if k.isdigit()}
    return Icons(features, present(data.get("groups", {})))
