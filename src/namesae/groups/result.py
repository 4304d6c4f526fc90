"""The groups' result file, groups.json: a run's name groups or one embedding's groups, saved and loaded.

groups.json, format version 1, comes in two layouts, each with its own typed result:

- `GroupsResult`, the groups of many names (`namesae demo`, `namesae.groups(...)` in a notebook)::

    {"format_version": 1, "config": {...},          # every GroupConfig field; then any meta fields
     "names": {"Ben Mami": {"name": "Ben Mami", "n_rows": 16, "stability": 0.93, "row_k": [3, 2, ...],
                            "select": "concepts", "k": 3, "k_mass": 4, "n_active": 21, "total_mass": 1.2,
                            "objective": 0.81, "groups": [GROUP, ...]}, ...}}

- `EmbeddingGroups`, the groups of one store row or one name's mean code (`namesae groups --out`)::

    {"format_version": 1, "sae": "...", "store": "...", "row": 7 | null, "name": "Ben Mami" | null,
     "row_name": ..., "prompt": ..., "kind": ...,   # the row's (null for a name)
     "n_rows": 16, "stability": 0.93 | null, "row_k": [...] | null,
     "select": ..., "k": ..., "k_mass": ..., "n_active": ..., "total_mass": ..., "objective": ...,
     "groups": [{"group": 1, **GROUP}, ...], "config": {...}}

GROUP: {"features": [ids, heaviest first], "weights": [w_j = f_j |d_j|], "mass_share", "coherence", "label",
"label_share", "label_score", "stability", and "centroid" [d] when written with centroids}. Numbers are rounded
to 6 decimals; an objective that is undefined (no active feature) is null. Each loader refuses the other layout
with one line that names the loader to use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from namesae.config import config_of_result, config_to_dict
from namesae.errors import NamesaeError
from namesae.groups.api import FeatureGroup, Grouping
from namesae.groups.config import GroupConfig
from namesae.groups.name import NameGroups
from namesae.io import atomic_write_csv, atomic_write_json, check_fields, read_json, require_format

GROUPS_FORMAT_VERSION = 1
"""Version of groups.json that `GroupsResult.save` / `EmbeddingGroups.save` write and their loaders read."""
_FIX = "re-run `namesae groups --out` (or `namesae demo`) to rewrite it"
_MISSING = "run `namesae groups --out` (or `namesae demo`) first"

_GROUP = {"features": "[int]", "weights": "[num]", "mass_share": "num", "coherence": "num", "label": "str?",
          "label_share": "num?", "label_score": "num?", "stability": "num?", "centroid": "[num]"}
_GROUPING = {"select": "str", "k": "int", "k_mass": "int", "n_active": "int", "total_mass": "num",
             "objective": "num?", "groups": "[obj]"}
_NAME = {"name": "str?", "n_rows": "int", "stability": "num?", "row_k": "[int]"}
_EMBEDDING = {"sae": "str?", "store": "str?", "row": "int?", "name": "str?", "row_name": "str?", "prompt": "str?",
              "kind": "str?", "n_rows": "int", "stability": "num?", "row_k": "ints?", "config": "obj"}
_INTS = {"ints?": ("a list of integers or null", lambda v: v is None or (
    isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)))}


def _grouping(data: Mapping[str, Any], path: Path, where: str) -> Grouping:
    """A Grouping from its JSON record, checked field by field."""
    check_fields(data, _GROUPING, path, _FIX, where)
    groups = []
    for i, g in enumerate(data["groups"]):
        check_fields(g, _GROUP, path, _FIX, f"{where}groups[{i}].", optional=("centroid",))
        centroid = np.asarray(g["centroid"], dtype=np.float32) if "centroid" in g else None
        groups.append(FeatureGroup(list(g["features"]), [float(w) for w in g["weights"]], g["mass_share"],
                                   g["coherence"], centroid, g["label"], g["label_share"], g["label_score"],
                                   g["stability"]))
    objective = float("nan") if data["objective"] is None else data["objective"]
    return Grouping(data["select"], data["k"], data["k_mass"], data["n_active"], data["total_mass"], objective,
                    groups)


def _layout(data: Any, path: str | Path, needs: str, other: str, hint: str) -> Path:
    """The path of a groups.json of this format version holding field `needs`; the other layout (field `other`
    alone) is refused with one line ending in `hint`."""
    path = Path(path)
    require_format(data, path, "groups", GROUPS_FORMAT_VERSION, _FIX)
    if needs not in data and other in data:
        raise NamesaeError(f"{path}: field {needs!r} is missing: {hint}")
    return path


class _GroupsFile:
    """`save` and `load` of one groups.json layout, through the class's `to_dict` and `from_dict`."""

    def to_dict(self, centroids: bool = False) -> dict[str, Any]:
        """The JSON content of groups.json."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Any, path: str | Path = "<groups.json>") -> Self:
        """The result from the content of groups.json, checked field by field."""
        raise NotImplementedError

    def save(self, path: str | Path, centroids: bool = False) -> Path:
        """Write groups.json atomically (centroids only when asked for)."""
        return atomic_write_json(path, self.to_dict(centroids))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a groups.json of this layout; a file that does not fit is refused with one line."""
        return cls.from_dict(read_json(path, _MISSING, _FIX), path)


@dataclass
class GroupsResult(_GroupsFile):
    """Feature groups of many names (each the grouping of the name's mean code, with its stability)."""

    names: dict[str, NameGroups]
    config: GroupConfig
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the result came from (e.g. sae, store), written at the top of groups.json."""

    def __repr__(self) -> str:
        """A one-line summary (the groupings are many)."""
        return f"GroupsResult({len(self.names)} names, select {self.config.select!r})"

    def to_dict(self, centroids: bool = False) -> dict[str, Any]:
        """The JSON content of groups.json (centroids only when asked for)."""
        return {"format_version": GROUPS_FORMAT_VERSION, **self.meta, "config": config_to_dict(self.config),
                "names": {name: g.to_dict(centroids) for name, g in self.names.items()}}

    @classmethod
    def from_dict(cls, data: Any, path: str | Path = "<groups.json>") -> GroupsResult:
        """A GroupsResult from the content of groups.json (the names layout), checked field by field."""
        path = _layout(data, path, "names", "groups", "this file holds one embedding's groups (`namesae groups "
                       "--out`); read it with EmbeddingGroups.load")
        check_fields(data, {"config": "obj", "names": "obj"}, path, _FIX)
        config = config_of_result(GroupConfig, data["config"], path, _FIX)
        names = {}
        for name, rec in data["names"].items():
            where = f"names[{json.dumps(name)}]."
            if not isinstance(rec, dict):
                raise NamesaeError(f"{path}: field {where[:-1]!r} must be an object, got {rec!r:.80}; {_FIX}")
            check_fields(rec, _NAME, path, _FIX, where)
            names[name] = NameGroups(rec["name"], _grouping(rec, path, where), rec["n_rows"], rec["stability"],
                                     list(rec["row_k"]))
        meta = {k: v for k, v in data.items() if k not in ("format_version", "config", "names")}
        return cls(names, config, meta)


CSV_FIELDS = ("group", "feature", "weight", "group_mass_share", "group_coherence", "group_label")
"""Columns of groups.csv: one row per (group, feature)."""


@dataclass
class EmbeddingGroups(_GroupsFile):
    """Feature groups of one embedding: a store row, or a name's mean code with the groups' stability."""

    grouping: Grouping
    config: GroupConfig
    n_rows: int
    """Rows grouped: 1 for a row, the name's rows for a name."""
    row: int | None = None
    """The store row (None: a name's mean code)."""
    name: str | None = None
    """The name whose mean code was grouped (None: a row)."""
    row_name: str | None = None
    prompt: str | None = None
    kind: str | None = None
    """The row's name, prompt and kind; for a name, `kind` is the kind its rows were filtered by (or None)."""
    stability: float | None = None
    """For a name: pooled stability of its groups across its rows (None without co-active pairs)."""
    row_k: list[int] | None = None
    """For a name: the number of groups of each of its rows."""
    sae: str | None = None
    store: str | None = None

    def to_dict(self, centroids: bool = False) -> dict[str, Any]:
        """The JSON content of groups.json (and of `namesae groups --json`); groups numbered from 1."""
        grouping = self.grouping.to_dict(centroids)
        grouping["groups"] = [{"group": i + 1, **g} for i, g in enumerate(grouping["groups"])]
        return {"format_version": GROUPS_FORMAT_VERSION, "sae": self.sae, "store": self.store, "row": self.row,
                "name": self.name, "row_name": self.row_name, "prompt": self.prompt, "kind": self.kind,
                "n_rows": self.n_rows,
                "stability": None if self.stability is None else round(self.stability, 6), "row_k": self.row_k,
                **grouping, "config": config_to_dict(self.config)}

    def save_csv(self, path: str | Path) -> Path:
        """Write groups.csv atomically: one row per (group, feature), `CSV_FIELDS`."""
        rows = [dict(zip(CSV_FIELDS, (g["group"], f, w, g["mass_share"], g["coherence"],
                                      "" if g["label"] is None else g["label"])))
                for g in self.to_dict()["groups"] for f, w in zip(g["features"], g["weights"])]
        return atomic_write_csv(path, rows, CSV_FIELDS)

    def table(self) -> str:
        """The groups as a readable table (what `namesae groups` prints)."""
        payload = self.to_dict()
        who = f"row {payload['row']} ({payload['row_name']!r}, {payload['kind']})" if payload["row"] is not None \
            else f"name {payload['name']!r} (mean code of {payload['n_rows']} rows)"
        head = (f"{who}: {payload['n_active']} active features -> {payload['k']} groups (select="
                f"{payload['select']}; mass rule k={payload['k_mass']}, objective {payload['objective']})")
        if payload.get("stability") is not None:
            head += f"; stability across rows {payload['stability']:.3f}"
        lines = [head, f"{'group':>5}  {'mass':>6}  {'coher.':>6}  {'stab.':>6}  {'n':>4}  {'label':<24}  "
                       "top features"]
        for g in payload["groups"]:
            stab = "" if g["stability"] is None else f"{g['stability']:.3f}"
            label = "" if g["label"] is None else f"{g['label']} ({g['label_share']:.2f})"
            top = ", ".join(str(f) for f in g["features"][:8]) + (", ..." if len(g["features"]) > 8 else "")
            lines.append(f"{g['group']:>5}  {g['mass_share']:>6.3f}  {g['coherence']:>6.3f}  {stab:>6}  "
                         f"{len(g['features']):>4}  {label[:24]:<24}  {top}")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: Any, path: str | Path = "<groups.json>") -> EmbeddingGroups:
        """An EmbeddingGroups from the content of groups.json (the one-embedding layout), checked field by field."""
        path = _layout(data, path, "groups", "names", "this file holds the groups of many names; read it with "
                       "GroupsResult.load")
        check_fields(data, _EMBEDDING, path, _FIX, kinds=_INTS)
        for i, g in enumerate(data.get("groups") or []):
            if isinstance(g, dict) and g.get("group") != i + 1:
                raise NamesaeError(f"{path}: field 'groups[{i}].group' must be {i + 1}, got {g.get('group')!r:.40}; "
                                   f"{_FIX}")
        grouping = _grouping(data, path, "")
        config = config_of_result(GroupConfig, data["config"], path, _FIX)
        return cls(grouping, config, data["n_rows"], data["row"], data["name"], data["row_name"],
                   data["prompt"], data["kind"], data["stability"],
                   None if data["row_k"] is None else list(data["row_k"]), data["sae"], data["store"])


def groupings_of(path: str | Path) -> dict[str, Grouping]:
    """The groupings a groups.json holds, by name, whichever layout it has: every name of a `GroupsResult`, or
    the one name (or row name) of an `EmbeddingGroups`."""
    from namesae.io import read_json

    data = read_json(path, "run `namesae groups --out` or `namesae demo`", _FIX)
    if isinstance(data, dict) and "names" in data:
        return {name: rec.grouping for name, rec in GroupsResult.load(path).names.items()}
    one = EmbeddingGroups.load(path)
    return {str(one.name or one.row_name or f"row {one.row}"): one.grouping}
