"""The ordered series an emergence analysis runs over, read from a spec file or a folder convention.

A series is an ordered list of points; each point is an embedding store, the SAE that reads it (given, or trained
from a shared `[train]` config) and optionally a text store (scenario agreement, name-part composition) and a
vocabulary store holding the attribute-ladder prompts (attribute std). The axis names what orders the points
(`samples_seen`, `width`, `step`, ...) and each point records its value on it.

Spec file (TOML or JSON; relative paths are relative to the file):

    axis = "samples_seen"            # what orders the points (required with [[points]])
    store = "image.h5"               # defaults for every point (optional): store, text_store, vocab
    prior_names = "prior_names.txt"  # optional: reference names of attribute_std (one per line or JSON list)
    frequencies = "freq.csv"         # optional: name,frequency (CSV with header) or JSON {name: frequency}
    truth = "world/truth.json"       # optional: a synthetic world's truth; `namesae emergence` scores the run
                                     # against it (namesae.synth.score.emergence) and plots its frequencies
    [train]                          # optional: TrainConfig fields; trains an SAE for each point without `sae`
    [[points]]                       # one table per point, in order
    label = "s13b"; value = 1.3e10; store = "ckpt1/image.h5"; sae = "ckpt1/sae"; text_store = ...; vocab = ...

Shorthands instead of [[points]]:
    widths = [32, 64, 128]           # one store, one SAE per dictionary size trained with [train]
                                     # (axis "width"; the size goes into TrainConfig field `width_field`, "d_sae")
    sae_run = "runs/sae"             # one training run: its checkpoints DIR/checkpoints/step_XXXXXX/ and its final
                                     # SAE (axis "step"); store defaults to the one in DIR/namesae.json

Folder conventions (`--series DIR`):
    an SAE training run (DIR/checkpoints/step_XXXXXX/): as `sae_run = DIR`, the store read from DIR/namesae.json
    (no text store or vocabulary: phases need a spec file that names them).
A synthetic world's progression (DIR/truth.json + DIR/progression/) is a series through
`namesae.synth.score.emergence.load_series`, which reads everything this module reads as well.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesae.config import load_toml
from namesae.errors import ConfigError

STEP_DIR = re.compile(r"^step_(\d+)$")
POINT_KEYS = {"label", "value", "store", "sae", "text_store", "vocab", "train"}
TOP_KEYS = {"axis", "store", "text_store", "vocab", "prior_names", "frequencies", "truth", "train", "points",
            "widths", "width_field", "sae_run"}


@dataclass(frozen=True)
class SeriesPoint:
    """One point of a series: a store and the SAE over it (or how to train one), and its place on the axis."""

    label: str
    value: float
    store: Path
    sae: Path | None = None
    """SAE checkpoint folder; None: train one with the series' train config (plus `train`)."""
    text_store: Path | None = None
    vocab: Path | None = None
    train: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields that override the series' [train] for this point (e.g. the width)."""


@dataclass(frozen=True)
class Series:
    """An ordered series of points with its axis and the optional inputs shared by all points."""

    axis: str
    points: tuple[SeriesPoint, ...]
    train: dict[str, Any] | None = None
    prior_names: Path | None = None
    frequencies: Path | None = None
    truth: Path | None = None
    source: str = "<series>"

    def __post_init__(self) -> None:
        if not isinstance(self.axis, str) or not self.axis:
            raise ConfigError(f"{self.source}: 'axis' must name what orders the points (e.g. samples_seen)")
        if len(self.points) < 2:
            raise ConfigError(f"{self.source}: a series needs at least 2 points, got {len(self.points)}; for one "
                              "SAE use `namesae identity`")
        labels = [p.label for p in self.points]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{self.source}: point labels repeat: {labels}")
        values = [p.value for p in self.points]
        if any(not math.isfinite(v) for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
            raise ConfigError(f"{self.source}: point values on axis '{self.axis}' must be finite and strictly "
                              f"increasing in the listed order, got {values}")
        for p in self.points:
            if p.sae is None and self.train is None:
                raise ConfigError(f"{self.source}: point '{p.label}' has no 'sae' and the series no [train] "
                                  "config to train one; give either")


def _path(value: Any, base: Path, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path string, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def series_from_dict(data: dict[str, Any], base: Path, source: str) -> Series:
    """A Series from a parsed spec (see the module docstring); paths relative to `base`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a series spec must be a table/object")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(TOP_KEYS)}")
    forms = [k for k in ("points", "widths", "sae_run") if k in data]
    if len(forms) != 1:
        raise ConfigError(f"{source}: give exactly one of 'points', 'widths' or 'sae_run', got {forms or 'none'}")
    train = data.get("train")
    if train is not None and not isinstance(train, dict):
        raise ConfigError(f"{source}: [train] must be a table of TrainConfig fields")
    defaults = {k: _path(data.get(k), base, f"{source}: '{k}'") for k in ("store", "text_store", "vocab")}
    form = forms[0]
    if form == "points":
        if "axis" not in data:
            raise ConfigError(f"{source}: 'axis' is required with [[points]] (e.g. axis = \"samples_seen\")")
        items = data["points"]
        if not isinstance(items, list):
            raise ConfigError(f"{source}: 'points' must be a list of tables")
        points = []
        for i, item in enumerate(items):
            where = f"{source}: points[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{where} must be a table")
            bad = sorted(set(item) - POINT_KEYS)
            if bad:
                raise ConfigError(f"{where}: unknown field(s) {bad}; known fields: {sorted(POINT_KEYS)}")
            if "value" not in item:
                raise ConfigError(f"{where}: missing 'value' (the point's place on axis '{data['axis']}')")
            value = _number(item["value"], f"{where}.value")
            store = _path(item.get("store"), base, f"{where}.store") or defaults["store"]
            if store is None:
                raise ConfigError(f"{where}: missing 'store' (and no series-wide 'store')")
            overrides = item.get("train", {})
            if not isinstance(overrides, dict):
                raise ConfigError(f"{where}.train must be a table")
            points.append(SeriesPoint(
                label=str(item.get("label", f"{i:02d}")), value=value, store=store,
                sae=_path(item.get("sae"), base, f"{where}.sae"),
                text_store=_path(item.get("text_store"), base, f"{where}.text_store") or defaults["text_store"],
                vocab=_path(item.get("vocab"), base, f"{where}.vocab") or defaults["vocab"], train=overrides))
        axis = data["axis"]
    elif form == "widths":
        widths = data["widths"]
        if not isinstance(widths, list) or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                                   for w in widths):
            raise ConfigError(f"{source}: 'widths' must list positive integers, got {widths!r}")
        if defaults["store"] is None:
            raise ConfigError(f"{source}: 'widths' needs the series-wide 'store' the SAEs are trained on")
        if train is None:
            raise ConfigError(f"{source}: 'widths' needs a [train] config to train one SAE per width")
        field_name = data.get("width_field", "d_sae")
        points = [SeriesPoint(label=f"w{w}", value=float(w), store=defaults["store"],
                              text_store=defaults["text_store"], vocab=defaults["vocab"], train={field_name: w})
                  for w in widths]
        axis = data.get("axis", "width")
    else:
        run = _path(data["sae_run"], base, f"{source}: 'sae_run'")
        store = defaults["store"] or run_store(run)
        if store is None:
            raise ConfigError(f"{source}: 'sae_run' needs the series-wide 'store' its SAE reads ({run}/namesae.json "
                              "does not name one)")
        points = [SeriesPoint(label=f"step_{step:06d}", value=float(step), store=store, sae=path,
                              text_store=defaults["text_store"], vocab=defaults["vocab"])
                  for step, path in run_checkpoints(run)]
        axis = data.get("axis", "step")
    return Series(axis=axis, points=tuple(points), train=train,
                  prior_names=_path(data.get("prior_names"), base, f"{source}: 'prior_names'"),
                  frequencies=_path(data.get("frequencies"), base, f"{source}: 'frequencies'"),
                  truth=_path(data.get("truth"), base, f"{source}: 'truth'"), source=source)


def _run_info(run: Path) -> dict[str, Any]:
    path = run / "namesae.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def run_store(run: Path) -> Path | None:
    """The store an SAE run was trained on, as recorded in its namesae.json (None if unknown or gone)."""
    store = _run_info(run).get("store", {})
    path = store.get("path") if isinstance(store, dict) else None
    return Path(path) if isinstance(path, str) and Path(path).is_file() else None


def run_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint of an SAE run: DIR/checkpoints/step_XXXXXX/, then the final SAE in DIR
    when it is finished and later than the last checkpoint."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        raise ConfigError(f"{run}: no checkpoints/ folder of step_XXXXXX checkpoints (train with checkpoint_every)")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name)))
    if not found:
        raise ConfigError(f"{folder}: no step_XXXXXX checkpoint folders")
    info = _run_info(run)
    step = info.get("step")
    if info.get("complete") and isinstance(step, int) and step > found[-1][0]:
        found.append((step, run))
    return found


def load_series(spec: str | Path, train: dict[str, Any] | None = None) -> Series:
    """A Series from a spec file (TOML/JSON) or a folder convention; `train` fills or overrides [train]."""
    path = Path(spec)
    if path.is_dir():
        if (path / "truth.json").is_file() and (path / "progression").is_dir():
            raise ConfigError(f"{path}: a synthetic world; its progression is read as a series by "
                              "namesae.synth.score.emergence.load_series (`namesae emergence --series` reads both)")
        if (path / "checkpoints").is_dir():
            return series_from_dict({"sae_run": str(path.resolve()), **({"train": train} if train else {})},
                                    path, str(path))
        raise ConfigError(f"{path}: not a series folder (a synthetic world with progression/, or a spec file)")
    if not path.is_file():
        raise ConfigError(f"{path}: series spec not found (a .toml/.json file or a folder)")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
    else:
        data = load_toml(path, sections=False)
        data = data.get("series", data) if isinstance(data.get("series"), dict) else data
    if train is not None:
        data = {**data, "train": {**(data.get("train") or {}), **train}}
    return series_from_dict(data, path.parent, str(path))


def load_frequencies(path: str | Path) -> dict[str, float]:
    """Name frequencies from a CSV with columns name,frequency or a JSON object {name: frequency}."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: frequencies file not found")
    out: dict[str, float] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object {{name: frequency}}")
        items = data.items()
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"name", "frequency"} <= set(reader.fieldnames):
                raise ConfigError(f"{path}: CSV needs a header with columns 'name' and 'frequency'")
            items = [(row["name"], row["frequency"]) for row in reader]
    for name, value in items:
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: frequency of {name!r} is not a number: {value!r}") from None
    return out
