"""Sweeps: several TrainConfigs that differ from a base one, trained in one pass over the same batches.

A sweep is written either as `[[sweep]]` tables in the TOML config (each table overrides fields of `[train]`,
with an optional `name`), or as `--sweep` specs `field=v1,v2,...` whose Cartesian product gives the members
(`--sweep k=16,32 --sweep seed=0,1`: four SAEs). Each member trains into OUT/<name>/, a run folder of its own
(resumable, SAELens format). Members must agree on the data settings (`train.DATA_FIELDS`); seeds that vary
only the initialisation need `data_seed` fixed, which the sweep sets to the base config's data seed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from namesae.config import config_from, config_from_dict, config_to_dict, config_values, load_toml
from namesae.errors import ConfigError
from namesae.sae.config import TrainConfig


@dataclass(frozen=True)
class SweepMember:
    """One SAE of a sweep: its folder name under the sweep's output and its full config."""

    name: str
    config: TrainConfig


def parse_spec(spec: str) -> tuple[str, list[Any]]:
    """`field=v1,v2,...` -> (field, [values]); values in TOML syntax, bare words taken as strings."""
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--sweep {spec!r}: expected field=value1,value2,...")
    out = []
    for raw in values.split(","):
        raw = raw.strip()
        try:
            out.append(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            out.append(raw)
    return key.strip(), out


def _slug(overrides: dict[str, Any]) -> str:
    text = "-".join(f"{k}{v}" for k, v in overrides.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def sweep_members(base: dict[str, Any], tables: list[dict[str, Any]] = (), specs: list[str] = (),
                  source: str = "sweep") -> list[SweepMember]:
    """The members of a sweep from a base [train] mapping and [[sweep]] tables and/or --sweep specs."""
    variants: list[tuple[str | None, dict[str, Any]]] = []
    for table in tables:
        table = dict(table)
        name = table.pop("name", None)
        variants.append((name, table))
    if specs:
        parsed = [parse_spec(s) for s in specs]
        keys = [k for k, _ in parsed]
        if len(set(keys)) < len(keys):
            raise ConfigError(f"--sweep: field(s) given twice in {keys}")
        combos = list(itertools.product(*[v for _, v in parsed]))
        spec_variants = [dict(zip(keys, c)) for c in combos]
        if variants:  # tables x specs
            variants = [(f"{name or _slug(table)}-{_slug(combo)}", {**table, **combo})
                        for name, table in variants for combo in spec_variants]
        else:
            variants = [(None, combo) for combo in spec_variants]
    if not variants:
        raise ConfigError(f"{source}: a sweep needs [[sweep]] tables or --sweep field=v1,v2,...")
    base_cfg = config_from_dict(TrainConfig, base, source)
    data_seed = base_cfg.data_seed_value()
    members = []
    for i, (name, overrides) in enumerate(variants):
        merged = {**base, **overrides}
        if "data_seed" not in merged:
            merged["data_seed"] = data_seed
        cfg = config_from_dict(TrainConfig, merged, f"{source} member {i}")
        members.append(SweepMember(name or _slug(overrides), cfg))
    names = [m.name for m in members]
    if len(set(names)) < len(names):
        raise ConfigError(f"{source}: sweep members need distinct names, got {names}")
    return members


def sweep_tables(path: str | Path | None) -> list[dict[str, Any]]:
    """The [[sweep]] tables of a TOML config (none without a config)."""
    if path is None:
        return []
    tables = load_toml(path).get("sweep", [])
    if not isinstance(tables, list) or any(not isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: sweep must be [[sweep]] tables")
    return tables


def plan_sweep(path: str | Path | None, overrides: list[str] = (), specs: list[str] = ()) -> list[SweepMember]:
    """The members of the sweep a command asks for: [[sweep]] tables of config `path` and/or --sweep specs over
    its [train] section with `--set` overrides (no members: no sweep). The base is validated first, so a bad
    --set is named as such."""
    tables = sweep_tables(path)
    if not specs and not tables:
        return []
    config_from(TrainConfig, "train", path, overrides, required=True)
    base = config_values("train", path, overrides, required=True)
    return sweep_members(base, tables, specs, source=str(path) if path else "--sweep")


def describe(members: list[SweepMember]) -> list[dict[str, Any]]:
    """JSON-ready list of the members (name and config)."""
    return [{"name": m.name, "config": config_to_dict(m.config)} for m in members]
