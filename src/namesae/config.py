"""Frozen dataclass configs loaded from TOML, with unknown keys refused.

`config_from(cls, section, path, overrides)` is the one loader of the command line: a TOML file's `[section]`,
then `--set field=value` overrides (values in TOML syntax) or command-line option values, validated once; a bad
value is refused in one line naming its source: the override that gave it, else the file and the field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
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
    if dataclasses.is_dataclass(hint):
        return f"a table of {hint.__name__} fields"
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
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return True  # a nested table, built field by field (`_values`)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not model: the dataclass's own validation decides


def check_field(cls_name: str, key: str, value: Any, hint: Any, source: str,
                fix: str = "fix it in the config") -> None:
    """Refuse a value whose type does not fit its field (ConfigError naming file, field, expected type)."""
    if not _fits(value, hint):
        raise ConfigError(f"{source}: field {key!r} of {cls_name} must be {_type_name(hint)}, got {value!r} "
                          f"({type(value).__name__}); {fix}")


def _nested_source(source: str, key: str) -> str:
    """The source of a nested table: "f.toml [emergence]" -> "f.toml [emergence.phases]"."""
    return f"{source[:-1]}.{key}]" if source.endswith("]") else f"{source} [{key}]"


def _values(cls: type, data: Any, source: str, fix: str = "fix it in the config") -> dict[str, Any]:
    """The fields of `data` checked against dataclass `cls` (unknown fields and mistyped values refused), TOML
    lists turned into tuples for tuple fields and nested tables into their dataclasses."""
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
        check_field(cls.__name__, key, value, hint, source, fix)
        # TOML has no tuples: accept lists for tuple-typed fields.
        if isinstance(value, list) and (typing.get_origin(hint) is tuple
                                        or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))):
            value = tuple(value)
        elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, _nested_source(source, key))
        values[key] = value
    return values


def _construct(cls: type[C], values: dict[str, Any]) -> C:
    """`cls(**values)`, its validation errors as one ConfigError line (without a source)."""
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(str(err)) from None
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from None


def config_from_dict(cls: type[C], data: dict[str, Any], source: str = "<dict>") -> C:
    """Build config dataclass `cls` from a mapping, refusing unknown fields and mistyped values clearly."""
    values = _values(cls, data, source)
    try:
        return _construct(cls, values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`field=value` pairs with TOML values (`k=16`, `kinds=["image"]`, `engine="saelens"` or `engine=saelens`)."""
    return {key: value for key, value, _ in _set_items(items)}


def _set_items(items: Sequence[str]) -> list[tuple[str, Any, str]]:
    """(field, value, "--set field=value") of each `--set` item; a bare word is taken as a string."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected field=value")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value  # a bare word: take it as a string
        out.append((key.strip(), parsed, f"--set {item}"))
    return out


def _option_items(options: Mapping[str, Any], flags: Mapping[str, str]) -> list[tuple[str, Any, str]]:
    """(field, value, "--flag value") of each command-line option that was given (None: not given)."""
    out = []
    for key, value in options.items():
        if value is None:
            continue
        flag = flags.get(key, "--" + key.replace("_", "-"))
        if isinstance(value, bool):
            label = flag if value else flag.replace("--", "--no-", 1)
        elif isinstance(value, (tuple, list)):
            label = " ".join(f"{flag} {v}" for v in value)
        else:
            label = f"{flag} {value}"
        out.append((key, value, label))
    return out


def section_table(section: str, path: str | Path | None, required: bool = False) -> dict[str, Any]:
    """The `[section]` table of TOML file `path` (empty without a file, or without the section unless
    `required`)."""
    if path is None:
        return {}
    data = load_toml(path)
    if section not in data:
        if required:
            raise ConfigError(f"{path}: missing section [{section}]")
        return {}
    return dict(data[section])


def config_values(section: str, path: str | Path | None = None, overrides: Sequence[str] = (),
                  required: bool = False) -> dict[str, Any]:
    """The `[section]` mapping of a TOML file (optional) with `--set` overrides applied, not yet validated (a
    sweep's base)."""
    return {**section_table(section, path, required), **parse_overrides(overrides)}


def config_from(cls: type[C], section: str, path: str | Path | None = None,
                overrides: Sequence[str] | Mapping[str, Any] = (), *, required: bool = False,
                flags: Mapping[str, str] | None = None, missing: str | None = None) -> C:
    """Config dataclass `cls` from the `[section]` of TOML file `path` (optional; `required`: the section must be
    there) with overrides applied over it: `--set field=value` strings (values in TOML syntax), or a mapping of
    command-line option values by field (None: not given; `flags` names an option that is not `--field-name`).

    A bad value is refused in one ConfigError line naming the culprit: `--set field=value` (or `--flag value`)
    when an override gave it, else the file, section and field. `missing`: the line to refuse with when a field
    that has no default was given neither in the file nor as an override."""
    data = section_table(section, path, required)
    source = f"{path} [{section}]" if path is not None else f"{cls.__name__} defaults"
    if isinstance(overrides, Mapping):
        items = _option_items(overrides, flags or {})
    else:
        items = _set_items(overrides)
    values = _values(cls, data, source)
    for key, value, label in items:
        values.update(_values(cls, {key: value}, label, "fix the value on the command line"))
    if missing is not None and any(f.name not in values and f.default is dataclasses.MISSING
                                   and f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls)):
        raise ConfigError(missing)
    try:
        return _construct(cls, values)
    except ConfigError as err:
        # The culprits: the overrides without which it validates; none such: the file (or all the overrides).
        culprits = [label for i, (_, _, label) in enumerate(items)
                    if _builds(cls, data, source, items[:i] + items[i + 1:])]
        if not culprits and (path is not None or not items):
            culprits = [source]
        where = " ".join(culprits or [label for _, _, label in items])
        raise ConfigError(f"{where}: {err}") from None


def _builds(cls: type, data: dict[str, Any], source: str, items: list[tuple[str, Any, str]]) -> bool:
    """Whether `cls` validates from the file's values with these overrides (finding the override to blame)."""
    values = _values(cls, data, source)
    for key, value, label in items:
        values.update(_values(cls, {key: value}, label))
    try:
        _construct(cls, values)
    except ConfigError:
        return False
    return True


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
    if section is None:
        return config_from_dict(cls, load_toml(path), str(path))
    return config_from(cls, section, path, required=True)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Turn a config dataclass into a JSON/TOML-ready dict (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
