"""Frozen dataclass configs loaded from TOML, with unknown keys refused."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from namesae.errors import ConfigError

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any], source: str = "<dict>") -> C:
    """Build config dataclass `cls` from a mapping, refusing unknown fields with a clear message."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {unknown} for {cls.__name__}; known fields: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        hint = hints.get(key)
        # TOML has no tuples: accept lists for tuple-typed fields.
        if isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with an error that names the file on bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def load_config(cls: type[C], path: str | Path, section: str | None = None) -> C:
    """Load config dataclass `cls` from a TOML file, optionally from one `[section]` of it."""
    data = load_toml(path)
    source = str(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section [{section}]")
        data = data[section]
        source = f"{path} [{section}]"
    return config_from_dict(cls, data, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Turn a config dataclass into a JSON/TOML-ready dict (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
