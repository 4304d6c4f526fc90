"""Run an emergence analysis over a series (train SAEs where asked, measure every point) and write its files."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from namesae.config import config_from_dict, config_to_dict
from namesae.emergence.config import EmergenceConfig
from namesae.emergence.families import name_links, unit_rows
from namesae.emergence.measures import grouped_stats, phase_inputs
from namesae.emergence.result import (
    EMERGENCE_FORMAT_VERSION,
    SUMMARY_FIELDS,
    EmergenceResult,
    PointMeasurement,
    assemble,
    measure_point,
)
from namesae.emergence.series import Series, SeriesPoint, load_frequencies
from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.io import atomic_write_json, atomic_write_text, csv_text, json_ready

log = logging.getLogger(__name__)

FORMAT_VERSION = EMERGENCE_FORMAT_VERSION  # emergence.json's format is owned by emergence.result
CURVE_FIELDS = ("name", "point", "label", "value", "present", "dedication", "dedicated", "phase", "best_feature",
                "best_precision", "best_recall", "identity_feature", "n_identity_features", "scenario_coverage",
                "scenario_agreement", "scenario_cos_ratio", "cross_scenario_cos", "same_scenario_cos",
                "attribute_consistency", "attribute_std", "part_composition", "reasons", "missing")
FAMILY_FIELDS = ("name", "point", "label", "value", "feature", "identity", "parent", "parent_cosine", "linked",
                 "parent_precision", "parent_recall", "parent_n_names", "previous_feature",
                 "parent_is_previous_feature", "dedicated_before", "dedicated_after", "split", "siblings")
TRAIN_MARK = "emergence_train.json"


def ensure_sae(point: SeriesPoint, series: Series, out_dir: Path, progress: bool = False) -> Path:
    """The point's SAE folder: the given one, or one trained under out_dir/saes/<label> (reused when the same
    store and config ask again, resumed when a run was cut off, retrained when the config changed)."""
    if point.sae is not None:
        return point.sae
    from namesae.sae import TrainConfig, train_sae

    fields = {**(series.train or {}), **point.train}
    cfg = config_from_dict(TrainConfig, fields, f"{series.source} [train] (point '{point.label}')")
    target = out_dir / "saes" / point.label
    mark = json.loads(json.dumps({"store": str(point.store), "train": config_to_dict(cfg)}))
    mark_path = target / TRAIN_MARK
    previous = None
    if mark_path.is_file():
        try:
            previous = json.loads(mark_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = None
    if previous == mark and (target / "namesae.json").is_file():
        log.info("emergence: reusing the SAE of point %s in %s", point.label, target)
        return target
    # Our own folder: a finished SAE of another store or config is replaced; an unfinished run of this one resumes.
    overwrite = (previous is not None and previous != mark) or (target / "namesae.json").is_file()
    log.info("emergence: training an SAE for point %s on %s", point.label, point.store)
    mark_path.unlink(missing_ok=True)
    train_sae(point.store, cfg, target, progress=progress, overwrite=overwrite)
    atomic_write_json(mark_path, mark)
    return target


def _frequencies(series: Series, given: Mapping[str, float] | None) -> dict[str, float]:
    if given is not None:
        return dict(given)
    if series.frequencies is not None:
        return load_frequencies(series.frequencies)
    return {}


def _open(stack: ExitStack, path: Path | None, where: str) -> Any:
    """An opened store (closed with the stack), errors prefixed with the series point; None for no path."""
    from namesae.store import EmbeddingStore

    if path is None:
        return None
    try:
        return stack.enter_context(EmbeddingStore.open(path))
    except NamesaeError as err:
        raise type(err)(f"{where}: {err}") from None


def check_series(series: Series, config: EmergenceConfig) -> list[int]:
    """Open every point's stores before any training: each must exist, its text store and vocabulary must come
    from its encoder, and all points must share one dimension unless mixed_dims. Returns each point's dim."""
    from namesae.features import same_encoder

    dims: list[int] = []
    for i, point in enumerate(series.points):
        where = f"series point '{point.label}' (#{i})"
        if point.sae is not None and not Path(point.sae).is_dir():
            raise NamesaeError(f"{where}: SAE folder {point.sae} not found")
        with ExitStack() as stack:
            store = _open(stack, point.store, where)
            for extra in (_open(stack, point.text_store, where), _open(stack, point.vocab, where)):
                if extra is not None and (extra.dim != store.dim or not same_encoder(extra.space, store.space)):
                    raise SpaceMismatchError(f"{where}: {extra.path}: space {extra.space!r} (dim {extra.dim}) is not "
                                             f"the encoder of {store.path} ({store.space!r}, dim {store.dim})")
            if dims and store.dim != dims[0] and not config.mixed_dims:
                raise SpaceMismatchError(
                    f"{where}: store {store.path} has dim {store.dim} but point '{series.points[0].label}' has dim "
                    f"{dims[0]}; a series normally stays in one embedding size — set mixed_dims = true in "
                    "[emergence] to compare models of different sizes (dedication is measured within each point)")
            dims.append(store.dim)
    return dims


def run_emergence(series: Series, config: EmergenceConfig | None = None, out_dir: str | Path = ".",
                  frequencies: Mapping[str, float] | None = None, progress: bool = False,
                  device: str = "cpu") -> EmergenceResult:
    """Measure dedication and phases of every name at every point of the series; SAEs trained under out_dir/saes
    (on their [train] device), then loaded on `device` for encoding."""
    from tqdm.auto import tqdm

    from namesae.identity import load_prior_names
    from namesae.sae import check_space, load_sae

    config = config or EmergenceConfig()
    out = Path(out_dir)
    check_series(series, config)
    prior = load_prior_names(series.prior_names) if series.prior_names is not None else []
    points: list[PointMeasurement] = []
    links: list[dict[str, Any] | None] = []
    prev: dict[str, Any] | None = None
    unlinked: list[str] = []
    for i, point in enumerate(tqdm(series.points, desc="emergence", unit="point", disable=not progress)):
        where = f"series point '{point.label}' (#{i})"
        sae_dir = ensure_sae(point, series, out, progress)
        sae = load_sae(sae_dir, device=device)
        with ExitStack() as stack:
            store, text, vocab = (_open(stack, p, where) for p in (point.store, point.text_store, point.vocab))
            try:
                check_space(sae, store)
            except SpaceMismatchError as err:
                raise SpaceMismatchError(f"{where}: {err}") from None
            grouped = grouped_stats(sae, store, config.kind, config.batch_rows, progress=progress)
            inputs = phase_inputs(store, text, [s for s in (vocab, text) if s is not None], grouped.names, prior,
                                  config.ladder_scale, config.template_name)
            info = {"store": str(point.store), "sae": str(sae_dir), "text_store": _str(point.text_store),
                    "vocab": _str(point.vocab), "space": store.space, "d_in": int(sae.d_in), "d_sae": int(sae.d_sae),
                    "n_rows": int(grouped.groups.n_rows)}
            dim, space = store.dim, getattr(sae, "space", None) or store.space
        measured = measure_point(i, point.label, point.value, grouped, inputs, config, info)
        points.append(measured)
        directions = unit_rows(sae.decoder_directions())
        link = None
        if prev is not None:
            if prev["space"] == space and prev["dim"] == dim:
                link = name_links(prev["features"], prev["stats"], prev["directions"], measured.features,
                                  directions, config.tau_p, config.link_min_cosine, config.rule, config.tau_r,
                                  config.min_gap)
            else:
                unlinked.append(f"{prev['label']} -> {point.label}")
        links.append(link)
        prev = {"label": point.label, "dim": dim, "space": space, "features": measured.features,
                "stats": grouped.by_name, "directions": directions}
        log.info("emergence: %s %s=%g: %d names, %d dedicated", point.label, series.axis, point.value,
                 measured.info["n_names"], measured.info["n_dedicated"])
    notes = []
    if unlinked:
        notes.append(f"no family links between SAEs of different spaces or dimensions (decoder directions are not "
                     f"comparable): {', '.join(unlinked)}")
    return assemble(points, links, series.axis, config, _frequencies(series, frequencies), notes)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _csv(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    return csv_text(({k: json.dumps(json_ready(v)) if isinstance(v, (list, dict)) else ("" if v is None else v)
                      for k, v in row.items()} for row in rows), fields)


def curve_rows(result: EmergenceResult) -> list[dict[str, Any]]:
    """One row per (name, point): the fields of curves.csv."""
    rows = []
    for n in result.names:
        for i, (label, value) in enumerate(zip(result.labels, result.values)):
            rec = n.points[i] or {}
            rows.append({"name": n.name, "point": i, "label": label, "value": value, "present": n.present[i],
                         **{k: rec.get(k) for k in CURVE_FIELDS[5:]}})
    return rows


def family_rows(result: EmergenceResult) -> list[dict[str, Any]]:
    """One row per (name, point with a family link into it): the fields of families.csv."""
    rows = []
    for n in result.names:
        for i, link in enumerate(n.links):
            if link and link.get("feature") is not None:
                rows.append({"name": n.name, "point": i, "label": result.labels[i], "value": result.values[i],
                             **link})
    return rows


def write_emergence(result: EmergenceResult, out_dir: str | Path, meta: Mapping[str, Any] | None = None,
                    score: Mapping[str, Any] | None = None, plots: bool = True) -> dict[str, Path]:
    """Write emergence.json, emergence.csv (per name), curves.csv (per name and point), families.csv (when links
    exist), score.json (when scored) and the plots into out_dir; returns the paths by key."""
    from namesae.emergence import plots as figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["json"] = result.save(out / "emergence.json", meta, score)
    paths["csv"] = out / "emergence.csv"
    atomic_write_text(paths["csv"], _csv([n.summary() for n in result.names], SUMMARY_FIELDS))
    paths["curves"] = out / "curves.csv"
    atomic_write_text(paths["curves"], _csv(curve_rows(result), CURVE_FIELDS))
    families = family_rows(result)
    if families:
        paths["families"] = out / "families.csv"
        atomic_write_text(paths["families"], _csv(families, FAMILY_FIELDS))
    if score is not None:
        paths["score"] = out / "score.json"
        atomic_write_json(paths["score"], dict(score))
    if plots:
        cfg = result.config
        paths["dedication_curves"] = figures.plot_dedication_curves(
            result, out / "dedication_curves.png", list(cfg.curve_names) or None, cfg.max_curve_names,
            tau=cfg.tau_p * cfg.tau_r)
        paths["phase_map"] = figures.plot_phase_map(result, out / "phase_map.png", max_names=cfg.max_map_names)
        freq = figures.plot_emergence_vs_frequency(result, out / "emergence_vs_frequency.png")
        if freq is not None:
            paths["emergence_vs_frequency"] = freq
    return paths
