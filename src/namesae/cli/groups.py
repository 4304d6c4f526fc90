"""`namesae groups`: feature groups of one store row or of a name (its mean code), as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from namesae.cli.options import device_option


def load_group_config(config: Path | None, overrides: dict[str, Any]):
    """GroupConfig from the [groups] section of a TOML file (optional), with CLI overrides (None: keep)."""
    import dataclasses

    from namesae.config import config_from_dict, load_toml
    from namesae.groups import GroupConfig

    cfg = GroupConfig()
    if config is not None:
        cfg = config_from_dict(GroupConfig, load_toml(config).get("groups", {}), f"{config} [groups]")
    set_ = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, **set_) if set_ else cfg


def load_labels(path: Path) -> dict[int, tuple[str, float] | str]:
    """Feature labels from features.json (`namesae features --vocab`) or a JSON {feature id: label | [label,
    score]} mapping."""
    from namesae.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path}: labels file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
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


def _write(path: Path, text: str) -> None:
    from namesae.io import atomic_write_text

    atomic_write_text(path, text)


def _table(payload: dict[str, Any]) -> str:
    """The groups as a readable table."""
    who = f"row {payload['row']} ({payload['row_name']!r}, {payload['kind']})" if payload["row"] is not None else \
        f"name {payload['name']!r} (mean code of {payload['n_rows']} rows)"
    head = (f"{who}: {payload['n_active']} active features -> {payload['k']} groups (select={payload['select']}; "
            f"mass rule k={payload['k_mass']}, objective {payload['objective']})")
    if payload.get("stability") is not None:
        head += f"; stability across rows {payload['stability']:.3f}"
    lines = [head, f"{'group':>5}  {'mass':>6}  {'coher.':>6}  {'stab.':>6}  {'n':>4}  {'label':<24}  top features"]
    for g in payload["groups"]:
        stab = "" if g["stability"] is None else f"{g['stability']:.3f}"
        label = "" if g["label"] is None else f"{g['label']} ({g['label_share']:.2f})"
        top = ", ".join(str(f) for f in g["features"][:8]) + (", ..." if len(g["features"]) > 8 else "")
        lines.append(f"{g['group']:>5}  {g['mass_share']:>6.3f}  {g['coherence']:>6.3f}  {stab:>6}  "
                     f"{len(g['features']):>4}  {label[:24]:<24}  {top}")
    return "\n".join(lines)


def groups(
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (written by `namesae train`)."),
    store: Path = typer.Option(..., "--store", help="Embedding store in the SAE's space (HDF5)."),
    row: int = typer.Option(None, "--row", help="Group the active features of this store row."),
    name: str = typer.Option(None, "--name", help="Group the mean code of this name's rows, with the stability "
                             "of each group across those rows."),
    kind: str = typer.Option(None, "--kind", help="With --name: use only rows of this kind (text or image)."),
    select: str = typer.Option(None, "--select", help="mass: largest k whose every group holds >= m-min of the "
                               "activation mass (the original method, default); concepts: then join groups whose "
                               "centroids have cosine >= join-cos (one group per concept)."),
    k_max: int = typer.Option(None, "--k-max", help="Largest k tried (default 20)."),
    m_min: float = typer.Option(None, "--m-min", help="Smallest mass share per group (default 0.05)."),
    join_cos: float = typer.Option(None, "--join-cos", help="select=concepts: join threshold (default 0.7)."),
    restarts: int = typer.Option(None, "--restarts", help="k-means++ restarts per k (default 3)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the k-means++ draws (default 0)."),
    config: Path = typer.Option(None, "--config", help="TOML file; its [groups] section sets GroupConfig."),
    labels: Path = typer.Option(None, "--labels", help="features.json of `namesae features --vocab` (or a JSON "
                                "{feature id: label}); each group then reports its top label."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (fields documented in the README)."),
    centroids: bool = typer.Option(False, "--centroids", help="Include each group's centroid direction in JSON."),
    out: Path = typer.Option(None, "--out", help="Also write groups.json and groups.csv into this folder."),
    device: str = device_option("for the SAE's encoding and the batched k-means"),
) -> None:
    """Feature groups: activation-weighted spherical k-means over an embedding's active SAE features (unit
    decoder directions, weights f_j * |d_j|) for k = 1..k-max, keeping the largest k whose every group holds at
    least m-min of the mass; with --select concepts, groups with similar centroids are then joined. Each group
    reports its features, mass share, coherence (weighted mean cosine to its centroid) and top label."""
    import numpy as np

    from namesae.devices import resolve_device
    from namesae.errors import NamesaeError

    device = resolve_device(device)
    if (row is None) == (name is None):
        raise NamesaeError("give exactly one of --row I or --name N")
    cfg = load_group_config(config, {"select": select, "k_max": k_max, "m_min": m_min, "join_cos": join_cos,
                                     "restarts": restarts, "seed": seed})
    label_map = load_labels(labels) if labels is not None else None
    from namesae.groups import EmbeddingGroups, group_codes, name_groups
    from namesae.sae import check_space, encode, load_sae
    from namesae.store import EmbeddingStore

    model = load_sae(sae, device=device)
    directions = model.decoder_directions()
    with EmbeddingStore.open(store) as s:
        check_space(model, s)
        if row is not None:
            if not 0 <= row < len(s):
                raise NamesaeError(f"{store}: --row {row} is out of range (the store has {len(s)} rows)")
            codes = encode(model, s.read_rows(np.array([row])))
            result = EmbeddingGroups(group_codes(codes, directions, cfg, device).grouping(0, labels=label_map), cfg,
                                     n_rows=1, row=row, row_name=str(s.names[row]), prompt=str(s.prompts[row]),
                                     kind=str(s.kinds[row]), sae=str(sae), store=str(store))
        else:
            rows = s.select(kind=kind, names=[name])
            if rows.size == 0:
                raise NamesaeError(f"{store}: no rows of name {name!r}" + (f" with kind {kind!r}" if kind else ""))
            codes = encode(model, s.read_rows(rows))
            found = name_groups(codes, directions, cfg, label_map, name=name, device=device)
            result = EmbeddingGroups(found.grouping, cfg, n_rows=found.n_rows, name=name, kind=kind,
                                     stability=found.stability, row_k=found.row_k, sae=str(sae), store=str(store))
    payload = result.to_dict(centroids)
    typer.echo(json.dumps(payload, indent=1) if as_json else _table(payload))
    if out is not None:
        result.save(out / "groups.json", centroids)
        from namesae.io import csv_text

        fields = ["group", "feature", "weight", "group_mass_share", "group_coherence", "group_label"]
        rows = [dict(zip(fields, (g["group"], f, w, g["mass_share"], g["coherence"],
                                  "" if g["label"] is None else g["label"])))
                for g in payload["groups"] for f, w in zip(g["features"], g["weights"])]
        _write(out / "groups.csv", csv_text(rows, fields))
        from namesae.cli.options import record

        record(out / "groups.json", "groups", store=store, sae=sae)
        typer.echo(f"wrote {out / 'groups.json'}", err=as_json)
        typer.echo(f"wrote {out / 'groups.csv'}", err=as_json)
