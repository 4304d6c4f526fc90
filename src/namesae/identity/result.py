"""The identity analysis's result and its file format, identity.json (+ identity.csv): typed records, save and load.

`IdentityResult` (what `run_identity` returns) holds one `IdentityRecord` per name. A record's
`identity_features` are plain feature ids, best first; `identity_feature_details` holds the same features with
their precision and recall, and `top_features` the features carrying most of the name's activation mass.

identity.json, format version 1 (`IdentityResult.save` writes it, `IdentityResult.load` reads it back)::

    {"format_version": 1,
     "sae": "runs/sae", "store": "...",          # meta: whatever the writer passed (`IdentityResult.meta`)
     "config": {...},                            # every IdentityConfig field
     "dse_sigma": 0.3 | null, "prior_names": [...], "notes": [...],
     "absorption": {...},                        # summary of the part absorption over the records
     "seed_stability": {...} | null,             # summary over SAEs of other seeds (null: not measured)
     "fields": ["name", ..., "z_trace", ...],    # the record fields, as identity.csv's columns
     "checksum": "<sha256>",                     # over the rest of the document (`namesae.io.sealed`)
     "names": [                                  # one record per name, one line each
       {"name": "Ben Mami", "n_rows": 16, "dedicated": true, "dedication": 0.94,
        "identity_features": [{"feature": 7, "precision": 0.97, "recall": 0.97, "mass_precision": 0.9,
                               "label": "...", "label_margin": 0.1}],   # the details; label only with labels
        "top_features": [{"feature": 7, "share": 0.4, "precision": ..., "recall": ..., "mass_precision": ...,
                          "n_names": 1, "identity": true, "label": ..., "label_margin": ...}],
        "part_composition": 0.8 | null, "trace": ..., "logdet": ..., "cos_mean": ..., "cos_min": ...,
        "cos_max": ..., "dse": ...,              # null where unavailable
        "attributes": {"age": {"mean": 41.0, "std": 3.2}, ...}, "n_image_rows": 16,
        "absorption": [{"part", "feature", "activation_ratio", "fire_ratio", "absorption"}],
        "seed_stability": {...} | null, "z_trace": ..., ...}]}

The file keeps each name's detailed identity features under `identity_features` (the ids are their `feature`
fields). NaN and infinities are written as null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesae.config import config_of_result, config_to_dict
from namesae.io import (
    CHECKSUM_KEY,
    atomic_write_csv,
    atomic_write_text,
    check_fields,
    check_sealed,
    json_ready,
    read_json,
    require_format,
    rows_json_text,
)

if TYPE_CHECKING:
    import pandas as pd

    from namesae.identity.config import IdentityConfig

IDENTITY_FORMAT_VERSION = 1
"""Version of identity.json that `IdentityResult.save` writes and `IdentityResult.load` reads."""
_FIX = "re-run `namesae identity` (or `namesae demo`) to rewrite it"


class _FeatureEntry:
    """What a name's feature entries (IdentityFeature, TopFeature) share: their form in identity.json."""

    label: str | None

    def to_dict(self) -> dict[str, Any]:
        """The entry as written in identity.json (label fields only when the feature has a label)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if self.label is not None or f.name not in ("label", "label_margin")}


@dataclass(frozen=True)
class IdentityFeature(_FeatureEntry):
    """One identity feature of a name: precision and recall under the identity rule, and its label if known."""

    feature: int
    precision: float
    """precision(j, n) under the configured rule (`IdentityConfig.rule`)."""
    recall: float
    """recall(j, n) under the configured rule."""
    mass_precision: float
    """The mass-share precision mass(j, n) / sum_n' mass(j, n'), whatever the rule."""
    label: str | None = None
    """Zero-shot label of the feature (None: no vocabulary was given)."""
    label_margin: float | None = None
    """Cosine of the label minus that of the runner-up (None: no vocabulary, or a single phrase)."""


@dataclass(frozen=True)
class TopFeature(_FeatureEntry):
    """A feature carrying much of a name's activation mass (for a compositional name: a shared feature)."""

    feature: int
    share: float
    """mass(j, n) / sum_j' mass(j', n): the feature's share of the name's activation mass."""
    precision: float
    recall: float
    mass_precision: float
    n_names: int
    """Names on which the feature fires at all."""
    identity: bool
    """Whether the feature is one of the name's identity features."""
    label: str | None = None
    label_margin: float | None = None


@dataclass
class IdentityRecord:
    """Everything measured for one name; `to_dict` gives the stable identity.json / identity.csv fields."""

    name: str
    n_rows: int
    dedicated: bool
    dedication: float
    identity_features: tuple[int, ...] = ()
    """The name's identity features as feature ids, best (highest precision x recall) first; given
    `identity_feature_details`, they follow from it."""
    top_features: tuple[TopFeature, ...] = field(default=(), repr=False)
    identity_feature_details: tuple[IdentityFeature, ...] = field(default=(), repr=False)
    """The identity features with their precision, recall and label, in the order of `identity_features`."""
    part_composition: float | None = None
    trace: float | None = None
    logdet: float | None = None
    cos_mean: float | None = None
    cos_min: float | None = None
    cos_max: float | None = None
    dse: float | None = None
    n_image_rows: int = 0
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Per ladder (age, gender, ...): the attribute summary of the name's image rows (mean / mode, std, p_*)."""
    z: dict[str, float | None] = field(default_factory=dict, repr=False)
    """z-score of each measure against the prior names (written as z_<measure>)."""
    absorption: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Per dedicated name part: part, feature, activation_ratio, fire_ratio, absorption (see `analysis`)."""
    seed_stability: dict[str, Any] | None = field(default=None, repr=False)
    """Over SAEs of other seeds (`namesae.identity.stability`): seed_agreement, matched_cosine, ... (None: not
    measured)."""

    def __post_init__(self) -> None:
        ids = tuple(d.feature for d in self.identity_feature_details)
        if not self.identity_features:
            self.identity_features = ids
        elif tuple(self.identity_features) != ids:
            raise ValueError(f"{self.name}: identity_features {tuple(self.identity_features)} differ from the ids of "
                             f"identity_feature_details {ids}; give the details (the ids follow from them)")
        self.identity_features = tuple(int(j) for j in self.identity_features)
        self.top_features = tuple(self.top_features)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready fields (identity features in detail), z-scores flattened to z_<measure>."""
        out: dict[str, Any] = {k: getattr(self, k) for k in FIELDS}
        out["identity_features"] = [d.to_dict() for d in self.identity_feature_details]
        out["top_features"] = [t.to_dict() for t in self.top_features]
        out.update({f"z_{k}": v for k, v in self.z.items()})
        return out


FIELDS = ("name", "n_rows", "dedicated", "dedication", "identity_features", "top_features", "part_composition",
          "trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse", "attributes", "n_image_rows", "absorption",
          "seed_stability")
"""The record fields of identity.json and identity.csv, in order (then the z_<measure> fields)."""


@dataclass
class IdentityResult:
    """Identity records of every name, with the settings and the notes of the run."""

    records: list[IdentityRecord]
    config: IdentityConfig
    notes: list[str] = field(default_factory=list)
    dse_sigma: float | None = None
    prior_names: list[str] = field(default_factory=list)
    absorption: dict[str, Any] = field(default_factory=dict)
    """Summary of `part_absorption` over the records."""
    seed_stability: dict[str, Any] | None = None
    """Summary of the seed stability over the SAEs of other seeds (None: not measured)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the result came from (e.g. sae, store), written at the top of identity.json."""

    def frame(self) -> pd.DataFrame:
        """One row per name with the scalar fields and z-scores (lists and dicts left out)."""
        import pandas as pd

        rows = []
        for rec in self.records:
            row = {k: v for k, v in rec.to_dict().items() if not isinstance(v, (list, dict))}
            row["n_identity_features"] = len(rec.identity_features)
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        """A one-line summary (the records are many)."""
        return (f"IdentityResult({len(self.records)} names, {len(self.dedicated())} dedicated, rule "
                f"{self.config.rule!r}, tau_p {self.config.tau_p}, tau_r {self.config.tau_r})")

    def by_name(self) -> dict[str, IdentityRecord]:
        """Records keyed by name."""
        return {r.name: r for r in self.records}

    def dedicated(self) -> list[IdentityRecord]:
        """The records of the dedicated names (those with at least one identity feature)."""
        return [r for r in self.records if r.dedicated]

    def to_dict(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON content of identity.json without its checksum; `meta` fields are added to the result's own."""
        rows = [r.to_dict() for r in self.records]
        z_keys = list(dict.fromkeys(k for row in rows for k in row if k.startswith("z_")))
        return {"format_version": IDENTITY_FORMAT_VERSION, **self.meta, **(meta or {}),
                "config": config_to_dict(self.config), "dse_sigma": self.dse_sigma,
                "prior_names": list(self.prior_names), "notes": list(self.notes), "absorption": self.absorption,
                "seed_stability": self.seed_stability, "fields": [*FIELDS, *z_keys], "names": rows}

    def save(self, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
        """Write identity.json atomically, sealed with a checksum, one record per line; `meta` fields (e.g. sae,
        store) are added to the result's own."""
        head = self.to_dict(meta)
        rows = head.pop("names")
        return atomic_write_text(path, rows_json_text(head, "names", rows))

    @classmethod
    def load(cls, path: str | Path) -> IdentityResult:
        """Read an identity.json that `save` wrote; a file that does not fit is refused with one line."""
        return identity_from_dict(read_json(path, "run `namesae identity` (or `namesae demo`) first", _FIX),
                                  path)


def write_identity(result: IdentityResult, out_dir: str | Path, meta: Mapping[str, Any] | None = None
                   ) -> tuple[Path, Path]:
    """Write identity.json (`IdentityResult.save`) and identity.csv (one row per name) into out_dir, atomically."""
    out = Path(out_dir)
    json_path = result.save(out / "identity.json", meta)
    rows = json_ready([r.to_dict() for r in result.records])
    columns = [*FIELDS, *dict.fromkeys(k for row in rows for k in row if k.startswith("z_"))]
    table = ({k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v) for k, v in row.items()}
             for row in rows)
    return json_path, atomic_write_csv(out / "identity.csv", table, columns)


# ---- reading identity.json ----------------------------------------------------------------------------------------
_HEAD = {"config": "obj", "dse_sigma": "num?", "prior_names": "[str]", "notes": "[str]", "absorption": "obj",
         "seed_stability": "obj?", "names": "[obj]"}
_RECORD = {"name": "str", "n_rows": "int", "dedicated": "bool", "dedication": "num", "identity_features": "[obj]",
           "top_features": "[obj]", "part_composition": "num?", "trace": "num?", "logdet": "num?",
           "cos_mean": "num?", "cos_min": "num?", "cos_max": "num?", "dse": "num?", "attributes": "obj",
           "n_image_rows": "int", "absorption": "[obj]", "seed_stability": "obj?"}
_LABEL = {"label": "str", "label_margin": "num?"}
_IDENTITY_FEATURE = {"feature": "int", "precision": "num", "recall": "num", "mass_precision": "num", **_LABEL}
_TOP_FEATURE = {"feature": "int", "share": "num", "precision": "num", "recall": "num", "mass_precision": "num",
                "n_names": "int", "identity": "bool", **_LABEL}


def _entries(items: list[dict[str, Any]], spec: Mapping[str, str], kind: type, where: str, path: Path) -> tuple:
    """Typed entries (IdentityFeature / TopFeature) of a record's feature list, each checked field by field."""
    out = []
    for i, item in enumerate(items):
        check_fields(item, spec, path, _FIX, f"{where}[{i}].", optional=_LABEL)
        out.append(kind(**{k: item[k] for k in spec if k in item}))
    return tuple(out)


def identity_from_dict(data: Any, path: str | Path = "<identity.json>") -> IdentityResult:
    """An IdentityResult from the content of identity.json, checked field by field (one line per problem)."""
    from namesae.identity.config import IdentityConfig

    path = Path(path)
    require_format(data, path, "identity", IDENTITY_FORMAT_VERSION, _FIX)
    check_fields(data, _HEAD, path, _FIX)
    config = config_of_result(IdentityConfig, data["config"], path, _FIX)
    records = []
    for i, rec in enumerate(data["names"]):
        where = f"names[{i}]."
        z_spec = {k: "num?" for k in rec if k.startswith("z_")}
        check_fields(rec, {**_RECORD, **z_spec}, path, _FIX, where)
        records.append(IdentityRecord(
            name=rec["name"], n_rows=rec["n_rows"], dedicated=rec["dedicated"], dedication=float(rec["dedication"]),
            identity_feature_details=_entries(rec["identity_features"], _IDENTITY_FEATURE, IdentityFeature,
                                              f"{where}identity_features", path),
            top_features=_entries(rec["top_features"], _TOP_FEATURE, TopFeature, f"{where}top_features", path),
            **{k: rec[k] for k in ("part_composition", "trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse",
                                   "n_image_rows", "absorption", "attributes", "seed_stability")},
            z={k[2:]: v for k, v in rec.items() if k.startswith("z_")}))
    if CHECKSUM_KEY in data:
        check_sealed(data, path, _FIX)
    known = {"format_version", CHECKSUM_KEY, "fields", *_HEAD}
    return IdentityResult(records, config, list(data["notes"]), data["dse_sigma"], list(data["prior_names"]),
                          data["absorption"], data["seed_stability"],
                          meta={k: v for k, v in data.items() if k not in known})
