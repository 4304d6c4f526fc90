"""`namesae groups` as one library call: the groups of one store row or of a name's mean code, with labels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from namesae.errors import ConfigError, NamesaeError
from namesae.groups.result import EmbeddingGroups
from namesae.io import read_json_input


def load_labels(path: Path) -> dict[int, tuple[str, float] | str]:
    """Feature labels from features.json (`namesae features --vocab`) or a JSON {feature id: label | [label,
    score]} mapping."""
    data = read_json_input(path, "labels file not found", ConfigError)
    out: dict[int, tuple[str, float] | str] = {}
    if isinstance(data, dict) and isinstance(data.get("features"), list):
        for item in data["features"]:
            if isinstance(item, dict) and item.get("label") is not None and "feature" in item:
                score = item.get("label_cosine")
                out[int(item["feature"])] = (str(item["label"]), float(score)) if score is not None \
                    else str(item["label"])
        return out
    if isinstance(data, dict):
        for key, value in data.items():
            try:
                fid = int(key)
            except ValueError:
                raise ConfigError(f"{path}: key {key!r} is not a feature id (expected {{id: label}})") from None
            if isinstance(value, str):
                out[fid] = value
            elif isinstance(value, list) and len(value) == 2:
                out[fid] = (str(value[0]), float(value[1]))
            else:
                raise ConfigError(f"{path}: feature {key}: expected a label or [label, score], got {value!r}")
        return out
    raise ConfigError(f"{path}: expected features.json or a {{feature id: label}} mapping")


def run_groups(sae: Path, store: Path, row: int | None = None, name: str | None = None, kind: str | None = None,
               config: Path | None = None, options: Mapping[str, Any] | None = None, labels: Path | None = None,
               device: str = "cpu") -> EmbeddingGroups:
    """The feature groups of store row `row` or of name `name`'s mean code (with their stability across its
    rows): GroupConfig from the [groups] section of `config` with the command-line `options` over it."""
    import numpy as np

    from namesae.config import config_from
    from namesae.devices import resolve_device
    from namesae.groups.api import group_codes
    from namesae.groups.config import GroupConfig
    from namesae.groups.name import name_groups
    from namesae.sae import check_space, encode, load_sae
    from namesae.store import EmbeddingStore

    device = resolve_device(device)
    if (row is None) == (name is None):
        raise NamesaeError("give exactly one of --row I or --name N")
    cfg = config_from(GroupConfig, "groups", config, options or {})
    label_map = load_labels(labels) if labels is not None else None
    model = load_sae(sae, device=device)
    directions = model.decoder_directions()
    with EmbeddingStore.open(store) as s:
        check_space(model, s)
        if row is not None:
            if not 0 <= row < len(s):
                raise NamesaeError(f"{store}: --row {row} is out of range (the store has {len(s)} rows)")
            codes = encode(model, s.read_rows(np.array([row])))
            return EmbeddingGroups(group_codes(codes, directions, cfg, device).grouping(0, labels=label_map), cfg,
                                   n_rows=1, row=row, row_name=str(s.names[row]), prompt=str(s.prompts[row]),
                                   kind=str(s.kinds[row]), sae=str(sae), store=str(store))
        rows = s.select(kind=kind, names=[name])
        if rows.size == 0:
            raise NamesaeError(f"{store}: no rows of name {name!r}" + (f" with kind {kind!r}" if kind else ""))
        codes = encode(model, s.read_rows(rows))
        found = name_groups(codes, directions, cfg, label_map, name=name, device=device)
        return EmbeddingGroups(found.grouping, cfg, n_rows=found.n_rows, name=name, kind=kind,
                               stability=found.stability, row_k=found.row_k, sae=str(sae), store=str(store))
