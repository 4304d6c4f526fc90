"""The feature statistics' result file, features.json (+ features.csv): typed per-feature records, save and load.

`namesae features` (and `namesae identity --write-features`) compute `namesae.features.FeatureStats` and write
`FeaturesResult.from_stats(stats, store)`; readers go through `FeaturesResult.load`. Format version 1::

    {"format_version": 1,
     "sae": "runs/sae", "store": "...", "vocab": "..." | null,   # meta: whatever the writer passed
     "d_sae": 512, "n_rows": 4096, "n_names": 256,
     "config": {...},                           # every FeatureConfig field
     "checksum": "<sha256>",                    # over the rest of the document (`namesae.io.sealed`)
     "features": [                              # one record per feature, one line each
       {"feature": 0, "frequency": 0.01, "fire_count": 41, "mean_activation": 0.5, "max_activation": 0.9,
        "mass": 20.5, "n_names": 3,
        "label": "age:child", "label_cosine": 0.8, "runner_up": "age:teen", "label_margin": 0.1,  # with a vocab
        "top_names": [{"name": "Ada", "mass": 12.0, "precision": 0.6, "recall": 0.9}],   # by mass (mass share)
        "top_rows": [{"row": 17, "activation": 0.9, "name": "Ada", "prompt": "a photo of Ada"}],
        "histogram_values": [0.41, 0.52]}]}      # a uniform sample of the feature's firing activations

NaN and infinities are written as null (a single-phrase vocabulary has no runner-up: label_margin null).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesae.config import config_of_result, config_to_dict
from namesae.io import (
    CHECKSUM_KEY,
    atomic_write_text,
    check_fields,
    check_sealed,
    csv_frame_text,
    read_json,
    require_format,
    rows_json_text,
)

if TYPE_CHECKING:
    from namesae.features import FeatureConfig, FeatureStats
    from namesae.store import EmbeddingStore

FEATURES_FORMAT_VERSION = 1
"""Version of features.json that `FeaturesResult.save` writes and `FeaturesResult.load` reads."""
_FIX = "re-run `namesae features` to rewrite it"


@dataclass(frozen=True)
class TopName:
    """A name on which a feature puts much of its mass."""

    name: str
    mass: float
    """mass(j, n): the sum of the feature's activations over the name's rows."""
    precision: float
    """The mass share mass(j, n) / sum_n' mass(j, n')."""
    recall: float
    """The fraction of the name's rows on which the feature fires."""


@dataclass(frozen=True)
class TopRow:
    """A store row on which a feature fires strongly."""

    row: int
    activation: float
    name: str | None = None
    prompt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry as written in features.json (name and prompt only when known)."""
        return {k: v for k, v in ((f.name, getattr(self, f.name)) for f in fields(self))
                if v is not None or k in ("row", "activation")}


@dataclass(frozen=True)
class FeatureRecord:
    """One feature's statistics over a store, with its zero-shot label when a vocabulary was given."""

    feature: int
    frequency: float
    """Fraction of rows on which the feature fires."""
    fire_count: int
    mean_activation: float
    """Mean activation over the rows where it fires (0 for a dead feature)."""
    max_activation: float
    mass: float
    """Sum of the feature's activations over every row."""
    n_names: int
    """Names on which it fires at all."""
    top_names: tuple[TopName, ...] = field(default=(), repr=False)
    top_rows: tuple[TopRow, ...] = field(default=(), repr=False)
    histogram_values: tuple[float, ...] = field(default=(), repr=False)
    label: str | None = None
    """The vocabulary phrase label closest in cosine to the decoder direction (None: no vocabulary)."""
    label_cosine: float | None = None
    runner_up: str | None = None
    label_margin: float | None = None
    """label_cosine minus the runner-up's cosine (None with a single-phrase vocabulary)."""

    def to_dict(self) -> dict[str, Any]:
        """The record as written in features.json (label fields only when the feature has a label)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _STATS}
        if self.label is not None:
            out.update({k: getattr(self, k) for k in _LABEL})
        out["top_names"] = [{f.name: getattr(t, f.name) for f in fields(t)} for t in self.top_names]
        out["top_rows"] = [t.to_dict() for t in self.top_rows]
        out["histogram_values"] = list(self.histogram_values)
        return out


@dataclass
class FeaturesResult:
    """Per-feature statistics of an SAE over a store: the content of features.json."""

    features: list[FeatureRecord]
    d_sae: int
    n_rows: int
    """Store rows the statistics were accumulated over."""
    n_names: int
    config: FeatureConfig
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the result came from (sae, store, vocab), written at the top of features.json."""

    @classmethod
    def from_stats(cls, stats: FeatureStats, store: EmbeddingStore | None = None,
                   meta: Mapping[str, Any] | None = None) -> FeaturesResult:
        """The result of feature statistics; with `store`, the top rows carry their name and prompt."""
        from namesae.io import json_ready

        records = json_ready(stats.records(store.names if store is not None else None,
                                           store.prompts if store is not None else None))
        return cls([_record(r, f"features[{i}].", Path("<features>"), check=False) for i, r in enumerate(records)],
                   stats.d_sae, stats.n_rows, len(stats.names), stats.config, dict(meta or {}))

    def __repr__(self) -> str:
        """A one-line summary (the records are many)."""
        alive = sum(r.fire_count > 0 for r in self.features)
        return (f"FeaturesResult({self.d_sae} features ({alive} fire), {self.n_rows} rows, {self.n_names} names, "
                f"{'labelled' if any(r.label is not None for r in self.features) else 'unlabelled'})")

    def by_feature(self) -> dict[int, FeatureRecord]:
        """Records keyed by feature id."""
        return {r.feature: r for r in self.features}

    def labels(self) -> dict[int, tuple[str, float | None]]:
        """(label, label cosine) of every labelled feature (the `labels` argument of `namesae.groups`)."""
        return {r.feature: (r.label, r.label_cosine) for r in self.features if r.label is not None}

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of features.json without its checksum."""
        return {"format_version": FEATURES_FORMAT_VERSION, **self.meta, "d_sae": self.d_sae, "n_rows": self.n_rows,
                "n_names": self.n_names, "config": config_to_dict(self.config),
                "features": [r.to_dict() for r in self.features]}

    def save(self, path: str | Path) -> Path:
        """Write features.json atomically, sealed with a checksum, one feature per line."""
        head = self.to_dict()
        rows = head.pop("features")
        return atomic_write_text(path, rows_json_text(head, "features", rows))

    @classmethod
    def load(cls, path: str | Path) -> FeaturesResult:
        """Read a features.json that `save` wrote; a file that does not fit is refused with one line."""
        return features_from_dict(read_json(path, "run `namesae features` first", _FIX), path)


def write_features(stats: FeatureStats, out_dir: str | Path, store: EmbeddingStore | None = None,
                   meta: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write features.json (`FeaturesResult.save`) and features.csv (one row per feature) into out_dir."""
    out = Path(out_dir)
    json_path = FeaturesResult.from_stats(stats, store, meta).save(out / "features.json")
    return json_path, atomic_write_text(out / "features.csv", csv_frame_text(stats.frame()))


def run_features(sae: Path, store: Path, out: Path, vocab: Path | None = None, kind: str | None = None,
                 config: Path | None = None, progress: bool = False,
                 device: str = "cpu") -> tuple[FeatureStats, tuple[Path, Path]]:
    """`namesae features` without the command line: FeatureConfig from the [features] section of `config` (and
    `kind`), the statistics of `sae` over `store` (labelled from `vocab` when given), written into `out`."""
    from namesae.config import config_from
    from namesae.devices import resolve_device
    from namesae.features import FeatureConfig, compute_feature_stats, labels_from_store
    from namesae.sae import load_sae
    from namesae.store import EmbeddingStore

    device = resolve_device(device)
    cfg = config_from(FeatureConfig, "features", config, {"kind": kind})
    model = load_sae(sae, device=device)
    with EmbeddingStore.open(store) as s:
        stats = compute_feature_stats(model, s, cfg, progress=progress)
        if vocab is not None:
            with EmbeddingStore.open(vocab) as v:
                stats.labels = labels_from_store(model, v, center=cfg.label_center)
        paths = write_features(stats, out, s, meta={"sae": str(sae), "store": str(store),
                                                    "vocab": str(vocab) if vocab else None})
    return stats, paths


# ---- reading features.json ----------------------------------------------------------------------------------------
_HEAD = {"d_sae": "int", "n_rows": "int", "n_names": "int", "config": "obj", "features": "[obj]"}
_STATS = {"feature": "int", "frequency": "num", "fire_count": "int", "mean_activation": "num",
          "max_activation": "num", "mass": "num", "n_names": "int"}
_LABEL = {"label": "str", "label_cosine": "num?", "runner_up": "str", "label_margin": "num?"}
_LISTS = {"top_names": "[obj]", "top_rows": "[obj]", "histogram_values": "[num]"}
_TOP_NAME = {"name": "str", "mass": "num", "precision": "num", "recall": "num"}
_TOP_ROW = {"row": "int", "activation": "num", "name": "str", "prompt": "str"}


def _record(item: dict[str, Any], where: str, path: Path, check: bool = True) -> FeatureRecord:
    """A FeatureRecord from its features.json entry, checked field by field (unless `check` is off: records
    namesae has just computed)."""
    has_label = "label" in item
    if check:
        check_fields(item, {**_STATS, **(_LABEL if has_label else {}), **_LISTS}, path, _FIX, where)
    top_names = []
    for i, t in enumerate(item["top_names"]):
        if check:
            check_fields(t, _TOP_NAME, path, _FIX, f"{where}top_names[{i}].")
        top_names.append(TopName(**{k: t[k] for k in _TOP_NAME}))
    top_rows = []
    for i, t in enumerate(item["top_rows"]):
        if check:
            check_fields(t, _TOP_ROW, path, _FIX, f"{where}top_rows[{i}].", optional=("name", "prompt"))
        top_rows.append(TopRow(**{k: t[k] for k in _TOP_ROW if k in t}))
    return FeatureRecord(**{k: item[k] for k in _STATS}, **({k: item[k] for k in _LABEL} if has_label else {}),
                         top_names=tuple(top_names), top_rows=tuple(top_rows),
                         histogram_values=tuple(item["histogram_values"]))


def features_from_dict(data: Any, path: str | Path = "<features.json>") -> FeaturesResult:
    """A FeaturesResult from the content of features.json, checked field by field (one line per problem)."""
    from namesae.features import FeatureConfig

    path = Path(path)
    require_format(data, path, "features", FEATURES_FORMAT_VERSION, _FIX)
    check_fields(data, _HEAD, path, _FIX)
    config = config_of_result(FeatureConfig, data["config"], path, _FIX)
    records = [_record(item, f"features[{i}].", path) for i, item in enumerate(data["features"])]
    if CHECKSUM_KEY in data:
        check_sealed(data, path, _FIX)
    known = {"format_version", CHECKSUM_KEY, *_HEAD}
    return FeaturesResult(records, data["d_sae"], data["n_rows"], data["n_names"], config,
                          {k: v for k, v in data.items() if k not in known})
