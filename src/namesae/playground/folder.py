"""What the playground finds in a run folder: the SAE, the image store, identity, groups, feature labels, icons and
the decoder, each where `namesae demo` writes it (or where the folder's run.json says)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import read_json

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
    """Feature and group icons of the run (`namesae icons`): feature id -> file, group label -> file."""

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
    icons: Path | None  # icons/icons.json (`namesae icons`)
    model: str | None  # the decoder spec handed to `namesae steer --model` (tiny:DIR for the demo's)


def _manifest(root: Path) -> dict[str, str]:
    """The artefacts run.json records for the run (namesae.runs), as paths; {} without one."""
    from namesae.runs import read_run

    return {k: str(a.path) for k, a in read_run(root).artefacts.items()}


def find_run(root: str | Path, model: str | None = None) -> RunFolder:
    """The run folder's files; one clear line when it is not a run folder (no SAE, no image store)."""
    root = Path(root)
    if not root.is_dir():
        raise NamesaeError(f"{root}: not a folder; pass the run folder `namesae demo` wrote (e.g. runs/demo)")
    paths = {**DEFAULTS, **_manifest(root)}
    sae = root / paths["sae"]  # an absolute recorded path stays as it is
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

    icons = Path(paths.get("icons", root / "icons" / "icons.json"))
    icons = root / icons if not icons.is_absolute() else icons
    tiny = root / TINY_DECODER
    if model is None:
        from namesae.runs import read_run

        recorded = (read_run(root).decoder or {}).get("model")
        if recorded:
            model = recorded
        elif (tiny / "namesae_decoder.json").is_file():
            model = f"tiny:{tiny}"
    return RunFolder(root, sae, store, optional("identity"), optional("groups"), optional("features"),
                     optional("truth"), icons if icons.is_file() else None, model)


# ---- readers of the run's result files (through their owners' loaders) ----------------------------------------
def identity_features(path: Path | None) -> dict[str, tuple[int, ...]]:
    """Each name's identity features from identity.json ({} without the file)."""
    if path is None:
        return {}
    from namesae.identity.result import IdentityResult

    return {r.name: tuple(r.identity_features) for r in IdentityResult.load(path).records}


def feature_labels(path: Path | None) -> dict[int, str]:
    """Each feature's label from features.json ({} without the file)."""
    if path is None:
        return {}
    from namesae.features.result import FeaturesResult

    return {f.feature: f.label for f in FeaturesResult.load(path).features if f.label}


def name_groups_of(path: Path | None) -> tuple[dict[str, list[FeatureGroup]], dict[str, Any] | None]:
    """(groups of each name, the grouping config) from groups.json, either layout ({} and None without it)."""
    if path is None:
        return {}, None
    from namesae.groups.result import groupings_of
    from namesae.report.pictures import group_label

    config = read_json(path, "run `namesae demo` first", "run `namesae demo` again to rewrite it").get("config")
    out = {name: [FeatureGroup(g.label or group_label(name, i + 1), tuple(int(j) for j in g.features),
                               g.mass_share, "groups.json") for i, g in enumerate(grouping.groups)]
           for name, grouping in groupings_of(path).items()}
    return out, config if isinstance(config, dict) else None


def read_icons(path: Path | None) -> Icons:
    """Icons from icons/icons.json (`namesae icons`); files that are missing are left out."""
    if path is None:
        return Icons()
    from namesae.steer.icons import IconIndex

    index = IconIndex.load(path.parent)  # files absent or outside the icon folder come back as None
    features = {f: index.feature_file(f) for f in index.features}
    groups = {g: index.group_file(g) for g in index.groups}
    return Icons({k: v for k, v in features.items() if v is not None},
                 {k: v for k, v in groups.items() if v is not None})
