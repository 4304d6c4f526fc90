"""Frozen dataclass configs loaded from TOML, with unknown keys refused."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from namesae.errors import ConfigError

C = TypeVar("C")

# Every top-level table a namesae TOML file may hold; a misspelt section ("[trian]") is refused, not ignored.
KNOWN_SECTIONS = frozenset({
    "embed", "generate", "synth", "train", "features", "identity", "groups", "emergence", "emergence_train",
    "steer", "basis", "search", "report", "demo",
})


def _type_name(hint: Any) -> str:
    """A reader's name of a type hint ("an integer", "a list of strings", ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" (or unset)" if type(None) in args else "")
    if origin in (tuple, list):
        inner = args[0] if args else Any
        return f"a list of {_type_name(inner).removeprefix('a ').removeprefix('an ')}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            Path: "a path string", dict: "a table"}.get(origin or hint, getattr(hint, "__name__", str(hint)))


def _fits(value: Any, hint: Any) -> bool:
    """Whether a TOML/JSON value fits a field's type hint (strings are not booleans, numbers or lists)."""
    if hint is Any or isinstance(hint, TypeVar):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, Path))
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        if origin is tuple and args:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not model: the dataclass's own validation decides


def check_field(cls_name: str, key: str, value: Any, hint: Any, source: str) -> None:
    """Refuse a value whose type does not fit its field (ConfigError naming file, field, expected type)."""
    if not _fits(value, hint):
        raise ConfigError(f"{source}: field {key!r} of {cls_name} must be {_type_name(hint)}, got {value!r} "
                          f"({type(value).__name__}); fix it in the config")


def config_from_dict(cls: type[C], data: dict[str, Any], source: str = "<dict>") -> C:
    """Build config dataclass `cls` from a mapping, refusing unknown fields and mistyped values clearly."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a table of {cls.__name__} fields, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown field(s) {unknown} for {cls.__name__}; known fields: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        hint = hints.get(key, Any)
        check_field(cls.__name__, key, value, hint, source)
        # TOML has no tuples: accept lists for tuple-typed fields.
        if isinstance(value, list) and (typing.get_origin(hint) is tuple
                                        or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))):
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def load_toml(path: str | Path, sections: bool = True) -> dict[str, Any]:
    """Read a TOML file into a dict, with an error that names the file on bad syntax.

    With `sections` (the default, for config files) every top-level key must be a known namesae section table.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
    if sections:
        check_sections(data, path)
    return data


def check_sections(data: dict[str, Any], path: str | Path) -> None:
    """Refuse top-level keys that are not known namesae sections, and sections that are not tables."""
    unknown = sorted(k for k in data if k not in KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known sections: {sorted(KNOWN_SECTIONS)} "
                          "(fix the spelling, or put fields under their [section])")
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{key}] must be a table of fields, got {type(value).__name__}")


def config_of_result(cls: type[C], data: Any, path: str | Path, fix: str) -> C:
    """Config dataclass `cls` from the `config` field of result file `path`, refused with one line naming the
    file, the field and `fix`."""
    try:
        return config_from_dict(cls, data, f"{path}: field 'config'")
    except ConfigError as err:
        raise ConfigError(f"{err}; {fix}") from None


def load_config(cls: type[C], path: str | Path, section: str | None = None) -> C:
    """Load config dataclass `cls` from a TOML file, optionally from one `[section]` of it."""
    data = load_toml(path)
    source = str(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section [{section}]")
        data = data[section]
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: [{section}] must be a table of fields")
        source = f"{path} [{section}]"
    return config_from_dict(cls, data, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Turn a config dataclass into a JSON/TOML-ready dict (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
