"""Edits on SAE codes as data: frozen dataclasses applied in order, parsed from JSON / TOML with clear errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from namesae.errors import ConfigError, NamesaeError
from namesae.io import read_json_input

Encode = Callable[[Tensor], Tensor]  # [n, d] -> [n, d_sae]
Decode = Callable[[Tensor], Tensor]  # [n, d_sae] -> [n, d]
REF_KINDS = ("self", "row", "rows", "name", "image", "prompt", "embedding", "codes")


# ---- references to codes (for transfers) -------------------------------------------------------------------
@dataclass(frozen=True)
class CodeRef:
    """Where a transfer's codes come from: the edited codes themselves, store rows, a name, an image, ..."""

    kind: str  # one of REF_KINDS
    value: Any = None  # row index, list of rows, name, image path, prompt, embedding list or codes mapping/list

    def __post_init__(self) -> None:
        if self.kind not in REF_KINDS:
            raise ConfigError(f"code reference kind {self.kind!r} is unknown; use one of {REF_KINDS}")

    def to_json(self) -> Any:
        """JSON form, the inverse of `parse_ref`."""
        return "self" if self.kind == "self" else {self.kind: self.value}


SELF = CodeRef("self")


def _codes_json(codes: Tensor) -> dict[str, Any]:
    """Sparse JSON form of a code vector (non-zero entries) for metadata."""
    flat = codes.detach().float().reshape(-1, codes.shape[-1]).mean(0).cpu()
    nz = torch.nonzero(flat).flatten().tolist()
    return {"codes": {str(j): round(float(flat[j]), 6) for j in nz}}


# ---- edits ---------------------------------------------------------------------------------------------------
def _index(features: Sequence[int], d_sae: int, what: str) -> Tensor:
    idx = torch.as_tensor(list(features), dtype=torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= d_sae):
        bad = [int(j) for j in idx if not 0 <= int(j) < d_sae]
        raise NamesaeError(f"{what}: feature id(s) {bad[:5]} out of range; the SAE has {d_sae} features (0..{d_sae - 1})")
    return idx


class _ColumnEdit:
    """What the feature and group edits share: `op` (set, add, scale, zero) changes the chosen features' codes by
    the op's number, the edit's field that `OPS[op]` names (value, amount or factor; zero has none)."""

    op: ClassVar[str]

    def _number(self) -> dict[str, float]:
        """The op's number as its JSON field ({} for zero)."""
        return {} if OPS[self.op] is None else {OPS[self.op]: getattr(self, OPS[self.op])}

    def _changed(self, codes: Tensor, features: Sequence[int], what: str) -> Tensor:
        """A copy of the codes [n, d_sae] with the op applied to the features' columns."""
        out = codes.clone()
        idx = _index(features, codes.shape[1], what)
        number = 0.0 if self.op == "zero" else float(getattr(self, OPS[self.op]))
        if self.op == "add":
            out[:, idx] += number
        elif self.op == "scale":
            out[:, idx] *= number
        else:
            out[:, idx] = number
        return out


class _FeatureEdit(_ColumnEdit):
    """An op on one feature."""

    feature: int

    def apply(self, codes: Tensor) -> Tensor:  # [n, d_sae] -> [n, d_sae]
        """Codes with the op applied to the feature (the input is not modified)."""
        return self._changed(codes, [self.feature], self.op)

    def to_json(self) -> dict[str, Any]:
        """JSON form, the inverse of `parse_edit`."""
        return {"op": self.op, "feature": self.feature, **self._number()}


class _GroupEdit(_ColumnEdit):
    """An op on every feature of a group, with the group's name (`label`) for metadata."""

    features: tuple[int, ...]
    label: str | None

    def apply(self, codes: Tensor) -> Tensor:  # [n, d_sae] -> [n, d_sae]
        """Codes with the op applied to the group's features (the input is not modified)."""
        return self._changed(codes, self.features, f"{self.op} group")

    def to_json(self) -> dict[str, Any]:
        """JSON form, the inverse of `parse_edit`."""
        return {"op": self.op, "features": list(self.features), **self._number(), **_label(self.label)}


@dataclass(frozen=True)
class SetFeature(_FeatureEdit):
    """Set one feature's activation to a value."""

    op: ClassVar[str] = "set"
    feature: int
    value: float


@dataclass(frozen=True)
class AddFeature(_FeatureEdit):
    """Add an amount to one feature's activation."""

    op: ClassVar[str] = "add"
    feature: int
    amount: float  # negative subtracts


@dataclass(frozen=True)
class ScaleFeature(_FeatureEdit):
    """Multiply one feature's activation by a factor."""

    op: ClassVar[str] = "scale"
    feature: int
    factor: float  # 0 switches the feature off, like ZeroFeature


@dataclass(frozen=True)
class ZeroFeature(_FeatureEdit):
    """Switch one feature off."""

    op: ClassVar[str] = "zero"
    feature: int


@dataclass(frozen=True)
class SetGroup(_GroupEdit):
    """Set every feature of a group to a value."""

    op: ClassVar[str] = "set"
    features: tuple[int, ...]
    value: float
    label: str | None = None  # the group's name, for metadata


@dataclass(frozen=True)
class AddGroup(_GroupEdit):
    """Add an amount to every feature of a group."""

    op: ClassVar[str] = "add"
    features: tuple[int, ...]
    amount: float  # negative subtracts
    label: str | None = None


@dataclass(frozen=True)
class ScaleGroup(_GroupEdit):
    """Multiply every feature of a group by a factor."""

    op: ClassVar[str] = "scale"
    features: tuple[int, ...]
    factor: float  # 0 switches the group off, like ZeroGroup
    label: str | None = None


@dataclass(frozen=True)
class ZeroGroup(_GroupEdit):
    """Switch every feature of a group off."""

    op: ClassVar[str] = "zero"
    features: tuple[int, ...]
    label: str | None = None


@dataclass(frozen=True)
class Transfer:
    """f' = f + alpha (f_B - f_A) on the chosen features (all when None); A defaults to the edited codes."""

    alpha: float
    target: CodeRef | Tensor  # B: a reference, or codes [d_sae] / [n, d_sae]
    source: CodeRef | Tensor = SELF  # A: "self" (the codes being edited), a reference, or codes
    features: tuple[int, ...] | None = None
    label: str | None = None

    def apply(self, codes: Tensor) -> Tensor:  # [n, d_sae] -> [n, d_sae]
        """Codes moved by alpha times the difference B - A on the chosen features."""
        target = self._codes(self.target, codes, "to")
        source = self._codes(self.source, codes, "from")
        delta = float(self.alpha) * (target - source)
        out = codes.clone()
        if self.features is None:
            return out + delta
        idx = _index(self.features, codes.shape[1], "transfer")
        out[:, idx] += delta[:, idx]
        return out

    @staticmethod
    def _codes(ref: CodeRef | Tensor, codes: Tensor, side: str) -> Tensor:
        if isinstance(ref, CodeRef):
            if ref.kind == "self":
                return codes
            if ref.kind == "codes":
                return codes_of_ref(ref, codes.shape[1]).to(codes).expand(codes.shape[0], -1)
            raise NamesaeError(f"transfer '{side}' reference {ref.to_json()} is not resolved; call resolve_edits "
                               f"(the CLI does) or pass codes as a tensor")
        ref = torch.as_tensor(ref, dtype=codes.dtype, device=codes.device)
        if ref.shape[-1] != codes.shape[1]:
            raise NamesaeError(f"transfer '{side}' codes have {ref.shape[-1]} features; the SAE has {codes.shape[1]}")
        return ref.reshape(-1, codes.shape[1]).expand(codes.shape[0], -1) if ref.ndim == 1 or ref.shape[0] == 1 \
            else ref

    def to_json(self) -> dict[str, Any]:
        """JSON form, the inverse of `parse_edit` (resolved codes are written sparsely)."""
        out: dict[str, Any] = {"op": "transfer", "alpha": self.alpha}
        for key, ref in (("to", self.target), ("from", self.source)):
            out[key] = ref.to_json() if isinstance(ref, CodeRef) else _codes_json(torch.as_tensor(ref))
        if self.features is not None:
            out["features"] = list(self.features)
        return out | _label(self.label)


def codes_of_ref(ref: CodeRef, d_sae: int) -> Tensor:
    """The code vector [d_sae] a `{"codes": ...}` reference spells out (dense list or sparse {id: value})."""
    codes = torch.zeros(d_sae)
    if isinstance(ref.value, Mapping):
        idx = _index([int(k) for k in ref.value], d_sae, "codes reference")
        codes[idx] = torch.tensor([float(v) for v in ref.value.values()])
    else:
        if len(ref.value) != d_sae:
            raise NamesaeError(f"codes reference has {len(ref.value)} values; the SAE has {d_sae} features")
        codes = torch.tensor([float(v) for v in ref.value])
    return codes


def _label(label: str | None) -> dict[str, str]:
    return {} if label is None else {"label": label}


Edit = SetFeature | AddFeature | ScaleFeature | ZeroFeature | SetGroup | AddGroup | ScaleGroup | ZeroGroup | Transfer


def apply_edits(codes: Tensor, edits: Sequence[Edit]) -> Tensor:
    """Codes after every edit in order (stacked); the input is not modified."""
    out = codes
    for edit in edits:
        out = edit.apply(out)
    return out


def edits_to_json(edits: Sequence[Edit]) -> list[dict[str, Any]]:
    """The edits as JSON-ready objects, parseable back with `parse_edits`."""
    return [e.to_json() for e in edits]


# ---- parsing ---------------------------------------------------------------------------------------------------
OPS = {"set": "value", "add": "amount", "scale": "factor", "zero": None, "transfer": "alpha"}
_TARGET_KEYS = ("feature", "features", "group")


def _number(item: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in item:
        if default is not None:
            return default
        raise ConfigError(f"{where}: missing field '{key}'")
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: field '{key}' must be a finite number, got {value!r}")
    return float(value)


def _feature_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: feature ids are non-negative integers, got {value!r}")
    return int(value)


def _targets(item: Mapping[str, Any], where: str, groups: Mapping[str, Sequence[int]] | None,
             required: bool) -> tuple[int | None, tuple[int, ...] | None, str | None]:
    """(single feature, group features, group label) from exactly one of feature / features / group."""
    given = [k for k in _TARGET_KEYS if k in item]
    if len(given) > 1:
        raise ConfigError(f"{where}: give one of 'feature', 'features', 'group', not {given}")
    if not given:
        if required:
            raise ConfigError(f"{where}: missing 'feature' (an id), 'features' (a list of ids) or 'group' (a label)")
        return None, None, None
    key = given[0]
    if key == "feature":
        return _feature_id(item["feature"], f"{where} field 'feature'"), None, None
    value = item[key]
    label = None
    if key == "group" and isinstance(value, str):
        if not groups or value not in groups:
            known = sorted(groups)[:10] if groups else []
            raise ConfigError(f"{where}: group {value!r} is unknown; known groups: {known} (pass a groups file, or "
                              f"list the ids with 'features')")
        label, value = value, groups[value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: field '{key}' must be a non-empty list of feature ids, got {value!r}")
    return None, tuple(_feature_id(v, f"{where} field '{key}'") for v in value), label


def parse_ref(value: Any, where: str) -> CodeRef:
    """A code reference from its JSON form ("self", {"row": 3}, {"name": "Vicki"}, {"codes": {...}}, ...)."""
    if value == "self":
        return SELF
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(f"{where}: a reference is \"self\" or one of "
                          f"{[{k: '...'} for k in REF_KINDS[1:]]}, got {value!r}")
    (kind, ref), = value.items()
    if kind not in REF_KINDS[1:]:
        raise ConfigError(f"{where}: reference kind {kind!r} is unknown; use one of {REF_KINDS}")
    checks = {
        "row": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "rows": lambda v: isinstance(v, list) and v and all(isinstance(i, int) and i >= 0 for i in v),
        "name": lambda v: isinstance(v, str) and v.strip(),
        "image": lambda v: isinstance(v, str) and v,
        "prompt": lambda v: isinstance(v, str) and v,
        "embedding": lambda v: isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v),
        "codes": lambda v: (isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v))
        or (isinstance(v, Mapping) and all(str(k).isdigit() and isinstance(x, (int, float)) for k, x in v.items())),
    }
    if not checks[kind](ref):
        raise ConfigError(f"{where}: bad value for reference {kind!r}: {ref!r}")
    return CodeRef(kind, tuple(ref) if kind == "rows" else ref)


def parse_edit(item: Any, where: str = "edit", groups: Mapping[str, Sequence[int]] | None = None) -> Edit:
    """One edit from its JSON/TOML object; errors name `where` and the field."""
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: an edit is an object with 'op', got {item!r}")
    op = item.get("op")
    if op not in OPS:
        raise ConfigError(f"{where}: field 'op' must be one of {list(OPS)}, got {op!r}")
    allowed = {"op", *_TARGET_KEYS, "label"} | ({OPS[op]} if OPS[op] else set()) | \
        ({"to", "from"} if op == "transfer" else set())
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for op '{op}'; allowed: {sorted(allowed)}")
    feature, features, label = _targets(item, where, groups, required=op != "transfer")
    label = item.get("label", label)
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"{where}: field 'label' must be text, got {label!r}")
    if op == "transfer":
        if "to" not in item:
            raise ConfigError(f"{where}: a transfer needs 'to' (the codes B to move towards), e.g. {{\"name\": \"X\"}}")
        chosen = (feature,) if feature is not None else features
        return Transfer(_number(item, "alpha", where, default=1.0), parse_ref(item["to"], f"{where} field 'to'"),
                        parse_ref(item.get("from", "self"), f"{where} field 'from'"), chosen, label)
    value = None if op == "zero" else _number(item, OPS[op], where)
    if feature is not None:
        single = {"set": SetFeature, "add": AddFeature, "scale": ScaleFeature}
        return ZeroFeature(feature) if op == "zero" else single[op](feature, value)
    group = {"set": SetGroup, "add": AddGroup, "scale": ScaleGroup}
    return ZeroGroup(features, label) if op == "zero" else group[op](features, value, label)


def parse_edits(data: Any, source: str = "edits", groups: Mapping[str, Sequence[int]] | None = None) -> list[Edit]:
    """Edits from JSON/TOML data: a list of edit objects, or a mapping with an 'edits' / 'edit' list."""
    if isinstance(data, Mapping):
        keys = [k for k in ("edits", "edit") if k in data]
        if len(keys) != 1 or set(data) - {keys[0] if keys else ""}:
            raise ConfigError(f"{source}: expected a list of edits, or one key 'edits' (JSON) / [[edit]] tables "
                              f"(TOML) holding them; got keys {sorted(data)}")
        data = data[keys[0]]
    if not isinstance(data, list):
        raise ConfigError(f"{source}: expected a list of edits, got {type(data).__name__}")
    return [parse_edit(item, f"{source}: edit {i}", groups) for i, item in enumerate(data)]


def load_edits(spec: str | Path, groups: Mapping[str, Sequence[int]] | None = None) -> list[Edit]:
    """Edits from a .json / .toml file, or from inline JSON text (`'[{"op": "zero", "feature": 3}]'`)."""
    text = str(spec)
    path = Path(text)
    if text.lstrip()[:1] in ("[", "{"):
        try:
            return parse_edits(json.loads(text), "--edit (inline JSON)", groups)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--edit (inline JSON): invalid JSON at column {err.colno}: {err.msg}") from None
    if not path.is_file():
        raise ConfigError(f"{path}: edits file not found (give a .json or .toml file, or inline JSON)")
    if path.suffix.lower() == ".toml":
        from namesae.config import load_toml
        return parse_edits(load_toml(path, sections=False), str(path), groups)
    return parse_edits(read_json_input(path, "edits file not found", ConfigError), str(path), groups)


def load_groups(path: str | Path) -> dict[str, list[int]]:
    """Named feature groups from JSON: {label: [ids]} or a list of {"label"|"id", "features": [ids]} objects."""
    data = read_json_input(path, "groups file not found", ConfigError)
    if isinstance(data, Mapping) and "groups" in data:
        data = data["groups"]
    items = data.items() if isinstance(data, Mapping) else \
        [(str(g.get("label") or g.get("id", i)) if isinstance(g, Mapping) else str(i),
          g.get("features") if isinstance(g, Mapping) else None) for i, g in enumerate(data)] \
        if isinstance(data, list) else None
    if items is None:
        raise ConfigError(f"{path}: expected {{label: [feature ids]}} or a list of objects with 'features'")
    out: dict[str, list[int]] = {}
    for label, ids in items:
        if not isinstance(ids, list) or not all(isinstance(j, int) and not isinstance(j, bool) and j >= 0
                                                for j in ids):
            raise ConfigError(f"{path}: group {label!r} needs 'features', a list of non-negative feature ids")
        out[str(label)] = ids
    return out
