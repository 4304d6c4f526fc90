"""A static HTML report of a run: index with scorecard and metrics, a page per name and per feature, plots.

The report reads a run directory. `run.json` in it (written by `namesae demo`; optional) maps artefacts to paths
relative to the run directory; without it the default names below are looked up. Every artefact is optional: the
report shows what exists. All text from the data (names, labels, prompts) is HTML-escaped by jinja2's autoescape.

emergence.json and scorecard.json are read through their owners' loaders (`EmergenceResult.load`,
`namesae.scorecard.load_scorecard`), so a file of another format is refused with one line rather than half drawn.

The site is written to a temporary folder beside `--out` and renamed into place (`namesae.io.atomic_dir`; files
and folders get the umask's modes, 0644 / 0755 under umask 022). An existing `--out` is replaced
only when it is a namesae report (it holds the marker file `.namesae-report` that every report writes); any other
non-empty folder, the run folder itself and any folder above it are refused. Image paths from the image store
are followed only inside the store's folder (after resolving `..` and symlinks); others are skipped with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.io import atomic_dir, atomic_write_json, confined_file, read_json
from namesae.report import pages, plots
from namesae.report.glossary import GLOSSARY, define
from namesae.report.pictures import group_label
from namesae.runs import RunManifest, read_run
from namesae.scorecard import ScorecardFile, load_scorecard
from namesae.steer.icons import IconIndex, RowImages

if TYPE_CHECKING:  # namesae.emergence imports torch: loaded only when a run has emergence.json
    from namesae.emergence.result import EmergenceResult

log = logging.getLogger(__name__)

DEFAULT_ARTEFACTS = {
    "scorecard": "scorecard.json",
    "metrics": "sae/metrics.json",
    "identity": "identity.json",
    "features": "features.json",
    "groups": "groups.json",
    "emergence": "emergence/emergence.json",
    "truth": "world/truth.json",
    "basis": "basis.json",
    "search": "search.json",
    "image_store": "world/image.h5",
    "sae": "sae",
    "icons": "icons/icons.json",
    "row_images": "row_images/row_images.json",
}
REPORT_MARKER = ".namesae-report"
_FIX = "re-run the step that wrote it"
# The phase colours and labels of namesae.emergence.plots (kept in step by tests/test_house.py; not imported from
# there because namesae.emergence loads torch).
PHASE_COLOURS = {0: "#d9d9d9", 1: "#9ecae1", 2: "#fdd0a2", 3: "#74c476", 4: "#de2d26"}
PHASE_LABELS = {0: "undecided / missing", 1: "1 name parts", 2: "2 attributes stable", 3: "3 identity stable",
                4: "4 overfit"}
REPORT_FORMAT = "namesae-report"
SCALAR_FIELDS = ("n_rows", "dedicated", "dedication", "part_composition", "trace", "logdet", "cos_mean",
                 "cos_min", "cos_max", "dse")


@dataclass(frozen=True)
class ReportResult:
    """Where the report was written and what it holds."""

    index: Path
    n_name_pages: int
    n_feature_pages: int
    plots: list[str]


def _loaded(path: Path, module: str, name: str, missing: Any) -> Any:
    """A result file read by its owner's loader (`missing` when the file is absent); as a dict for the pages
    when the result type has `to_dict` and the caller asked for a dict (missing == {})."""
    if not path.is_file():
        return missing
    import importlib

    result = getattr(importlib.import_module(module), name).load(path)
    return result.to_dict() if isinstance(missing, dict) else result


def _groups_file(path: Path) -> dict[str, Any]:
    """groups.json (either layout, read by its owner) as {"names": {name: {"groups": [...]}}} for the pages."""
    if not path.is_file():
        return {}
    from namesae.groups.result import groupings_of

    return {"names": {name: g.to_dict() for name, g in groupings_of(path).items()}}


def _merged(manifest: RunManifest, prefix: str, default: Path, owner: Any) -> dict[str, Any]:
    """Every artefact `prefix` / `prefix.*` (e.g. basis.paint, basis.pairs), read by its owner (BasisFile,
    SearchFile), merged into one object."""
    found = {k: a.path for k, a in manifest.with_prefix(prefix).items() if a.path.is_file()}
    if not found:
        return owner.load(default).data if default.is_file() else {}
    if list(found) == [prefix]:
        return owner.load(found[prefix]).data
    return {key: owner.load(path).data for key, path in sorted(found.items())}


def feature_id(item: Any) -> int | None:
    """The feature index of a feature reference (an int or a dict with 'feature'/'id')."""
    if isinstance(item, (int, np.integer)):
        return int(item)
    if isinstance(item, dict):
        for key in ("feature", "id", "index"):
            if isinstance(item.get(key), (int, np.integer)):
                return int(item[key])
    return None


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("namesae.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = pages.rounded
    env.filters["fid"] = feature_id
    env.globals["phase_colours"] = PHASE_COLOURS  # the phase map's colours, as in emergence's PNG
    return env


class _Run:
    """The artefacts of one run directory, loaded once."""

    def __init__(self, run_dir: Path) -> None:
        if not run_dir.is_dir():
            raise NamesaeError(f"{run_dir}: run directory not found; pass the --out folder of a namesae run")
        manifest = read_run(run_dir)
        self.dir = run_dir
        self.paths = {k: manifest.path(k) or run_dir / v for k, v in DEFAULT_ARTEFACTS.items()}
        self.dino_store = manifest.path("dino_store")
        self.scorecard: ScorecardFile | None = (load_scorecard(self.paths["scorecard"])
                                                if self.paths["scorecard"].is_file() else None)
        # Every result file is read through the loader of the module that owns its format (one-line refusals).
        self.metrics = _loaded(self.paths["metrics"], "namesae.sae.metrics", "SAEMetrics", {})
        identity = _loaded(self.paths["identity"], "namesae.identity.result", "IdentityResult", None)
        self.identity = [r.to_dict() for r in identity.records] if identity is not None else []
        self.identity_summary: dict[str, dict[str, Any]] = {}
        if identity is not None:
            self.identity_summary = {k: v for k, v in (("absorption", identity.absorption),
                                                       ("seed_stability", identity.seed_stability)) if v}
            self.identity_summary["rule"] = {"rule": identity.config.rule}
        features = _loaded(self.paths["features"], "namesae.features.result", "FeaturesResult", None)
        self.features = [f.to_dict() for f in features.features] if features is not None else []
        self.groups = _groups_file(self.paths["groups"])
        self.emergence: EmergenceResult | None = None
        if self.paths["emergence"].is_file():
            from namesae.emergence.result import EmergenceResult

            self.emergence = EmergenceResult.load(self.paths["emergence"])
        from namesae.basis.result import BasisFile
        from namesae.search.result import SearchFile

        self.basis = _merged(manifest, "basis", self.paths["basis"], BasisFile)
        self.search = _merged(manifest, "search", self.paths["search"], SearchFile)
        self.icons = IconIndex.load(self.paths["icons"].parent) if self.paths["icons"].is_file() else None
        self.row_images = RowImages.load(self.paths["row_images"]) if self.paths["row_images"].is_file() else None
        self.steer = [_loaded(a.path, "namesae.steer.record", "SteerRecord", {}) | {"_dir": str(a.path.parent)}
                      for _, a in sorted(manifest.with_prefix("steer").items()) if a.path.is_file()]
        truth = read_json(self.paths["truth"], "", _FIX) if self.paths["truth"].is_file() else {}
        self.truth = {str(r["name"]): r for r in truth.get("names", []) if isinstance(r, dict) and "name" in r} \
            if isinstance(truth, dict) else {}
        if not self.identity and not self.features and self.scorecard is None:
            raise NamesaeError(f"{run_dir}: no identity.json, features.json or scorecard.json found; "
                               "run `namesae identity`/`features` (or `namesae demo`) first")


def _name_groups(groups: Any, name: str) -> list[dict]:
    if isinstance(groups, dict):
        entry = groups.get("names", {}).get(name) if isinstance(groups.get("names"), dict) else groups.get(name)
        if isinstance(entry, dict):
            return [g for g in entry.get("groups", []) if isinstance(g, dict)]
        if isinstance(entry, list):
            return [g for g in entry if isinstance(g, dict)]
    return []


def entries_with(data: Any, key: str, value: Any, where: str = "") -> list[tuple[str, dict]]:
    """Every mapping inside a JSON document whose `key` equals `value`, with the path of sections leading to it
    (e.g. ("demo_sae / triggers", {...})); lists of numbers inside an entry are left out."""
    found: list[tuple[str, dict]] = []
    if isinstance(data, dict):
        if data.get(key) == value and not isinstance(data.get(key), bool):
            found.append((where, {k: v for k, v in data.items()
                                  if k != key and not (isinstance(v, list) and len(v) > 8)}))
        for k, v in data.items():
            if isinstance(v, (dict, list)):
                found += entries_with(v, key, value, f"{where} / {k}" if where else str(k))
    elif isinstance(data, list):
        for item in data:
            found += entries_with(item, key, value, where)
    return found


def _image_rows(store_path: Path, rendered: RowImages | None = None
                ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str], dict[int, dict[str, Any]]]:
    """Images per name (captioned: row, path, prompt, seed), each name's medoid image, and every row's image.

    The store's own image files are used (only those inside the store's folder: a path that leads outside it is
    skipped with a warning); a store without them uses the rows `namesae icons` decoded (row_images.json).
    """
    from namesae.store import EmbeddingStore

    if not store_path.is_file():
        return {}, {}, {}
    root = store_path.parent.resolve()
    with EmbeddingStore.open(store_path) as store:
        images = store.images
        if images is None and rendered is None:
            return {}, {}, {}
        seeds, prompts = store.seeds, store.prompts
        by_name: dict[str, list[dict[str, Any]]] = {}
        by_row: dict[int, dict[str, Any]] = {}
        medoids: dict[str, str] = {}
        outside: list[str] = []
        for name, rows in store.name_index().items():
            found = {}
            for r in rows:
                r = int(r)
                path = None
                if images is not None and images[r]:
                    path, leaves = confined_file(root, str(images[r]))
                    if leaves:
                        outside.append(str(images[r]))
                if path is None and rendered is not None:
                    path = rendered.file(r)  # None when absent or outside its folder
                if path is not None:
                    found[r] = path
                    by_row[r] = {"row": r, "path": str(path), "name": name, "prompt": str(prompts[r]),
                                 "seed": int(seeds[r]) if seeds is not None else None}
            rows = list(found)
            if not rows:
                continue
            by_name[name] = [by_row[r] for r in rows]
            x = store.read_rows(rows)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            medoids[name] = str(found[rows[int(np.argmax((x @ x.T).sum(axis=1)))]])
    if outside:
        log.warning("%s: skipped %d image path(s) that lead outside the store's folder %s (e.g. %r)",
                    store_path, len(outside), root, outside[0])
    return by_name, medoids, by_row


def name_rigidity(store_path: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(names, mean unit image embedding per name, mean within-name pairwise cosine) of a store's image rows."""
    from namesae.store import EmbeddingStore

    if store_path is None or not store_path.is_file():
        return None
    with EmbeddingStore.open(store_path) as store:
        rows = store.select(kind="image")
        if len(rows) == 0:
            return None
        x = store.read_rows(rows)
        names = store.names[rows].astype(str)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    uniq, inverse = np.unique(names, return_inverse=True)
    means = np.zeros((len(uniq), x.shape[1]))
    np.add.at(means, inverse, x)
    counts = np.bincount(inverse)
    means /= counts[:, None]
    # Mean pairwise cosine within a name equals (|sum|^2 - m) / (m (m - 1)) for unit rows.
    sums_sq = (means * counts[:, None]) ** 2
    within = np.where(counts > 1, (sums_sq.sum(1) - counts) / np.maximum(counts * (counts - 1), 1), np.nan)
    return uniq, means, within


def _dino_clip_plot(run: _Run, identity: list[dict], out: Path) -> list[str]:
    """Per name, rigidity (mean within-name cosine) in DINOv2 space against CLIP space, when both stores exist."""
    clip, dino = name_rigidity(run.paths["image_store"]), name_rigidity(run.dino_store)
    if clip is None or dino is None:
        return []
    c, d = dict(zip(clip[0], clip[2])), dict(zip(dino[0], dino[2]))
    names = [n for n in sorted(set(c) & set(d)) if np.isfinite(c[n]) and np.isfinite(d[n])]
    if len(names) < 3:
        return []
    dedicated = {str(r.get("name")) for r in identity if r.get("dedicated")}
    plots.scatter_plot(np.array([c[n] for n in names]), np.array([d[n] for n in names]), out / "rigidity_dino_clip.png",
                       "rigidity in CLIP space (mean within-name cosine)",
                       "rigidity in DINOv2 space (mean within-name cosine)",
                       "Rigidity of names' generations: DINOv2 against CLIP",
                       highlight=np.array([n in dedicated for n in names]), annotate=names)
    return ["rigidity_dino_clip.png"]


def _embedding_map(store_path: Path, out: Path, medoids: dict[str, str] | None = None, seed: int = 0,
                   max_thumbnails: int = 40) -> list[str]:
    """t-SNE maps of per-name mean image embeddings: coloured by name with medoid thumbnails (when images exist),
    by within-name similarity, and by the first name's US peak decade (when at least 5 names are known)."""
    found = name_rigidity(store_path)
    if found is None or len(found[0]) < 5:
        return []
    uniq, means, within = found
    from sklearn.manifold import TSNE

    coords = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(uniq) - 1) / 3),
                  random_state=seed).fit_transform(means)
    path = plots.scatter_plot(coords[:, 0], coords[:, 1], out / "map_within_similarity.png", "t-SNE 1",
                              "t-SNE 2", "Names' mean image embeddings (t-SNE)", colour=within,
                              colour_label="mean within-name cosine")
    made = [path.name]
    with_images = [i for i, n in enumerate(uniq) if medoids and n in medoids]
    if with_images:
        # Thumbnails that do not overlap: greedy, in a seeded random order, each at least a tenth of the map's
        # extent away from those already placed.
        span = float(np.ptp(coords, axis=0).max()) or 1.0
        placed: list[int] = []
        for i in np.random.default_rng(seed).permutation(with_images):
            if len(placed) == max_thumbnails:
                break
            if all(np.linalg.norm(coords[i] - coords[j]) >= 0.1 * span for j in placed):
                placed.append(int(i))
        thumbs = {i: medoids[uniq[i]] for i in placed}
        made.append(plots.thumbnail_map(coords, out / "map_names.png", "Names (colour) and their medoid generations",
                                        thumbs, colour=np.arange(len(uniq)) % 20, categorical=True).name)
    from namesae.names import peak_decade

    decade = np.array([peak_decade(str(n)) or np.nan for n in uniq], dtype=float)
    if np.isfinite(decade).sum() >= 5:
        known = np.isfinite(decade)
        made.append(plots.scatter_plot(coords[known, 0], coords[known, 1], out / "map_decade.png", "t-SNE 1",
                                       "t-SNE 2", "Names by the US peak decade of their first name",
                                       colour=decade[known], colour_label="peak decade (US births)").name)
    return made


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, max_feature_pages: int = 2000
                 ) -> ReportResult:
    """Write the static HTML report of a run directory; returns where the index is."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    if run_dir.is_dir():
        check_report_out(out, run_dir)  # what atomic_dir replaces is empty or a namesae report: nothing else goes
    run = _Run(run_dir)
    with atomic_dir(out) as stage:
        result = _write_site(run, stage, max_feature_pages)
        atomic_write_json(stage / REPORT_MARKER, {"format": REPORT_FORMAT, "run": str(run.dir.resolve())})
    return ReportResult(out / "index.html", result.n_name_pages, result.n_feature_pages, result.plots)


def _empty(folder: Path) -> bool:
    return next(folder.iterdir(), None) is None


def is_report(folder: Path) -> bool:
    """Whether a folder is a site namesae wrote (it holds the `.namesae-report` marker)."""
    return (folder / REPORT_MARKER).is_file() and not (folder / REPORT_MARKER).is_symlink()


def check_report_out(out: Path, run_dir: Path) -> None:
    """Refuse a --out that the report must not replace: the run folder or one above it, a file, or a non-empty
    folder that is not a namesae report."""
    target, run = out.resolve(), run_dir.resolve()
    if run == target or run.is_relative_to(target):
        raise NamesaeError(f"--out {out}: is the run folder {run_dir} or a folder above it, and the report replaces "
                           f"its --out; use a new folder such as {run_dir / 'report'}")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise NamesaeError(f"--out {out}: exists and is not a folder; use a new folder for the report")
        if not _empty(out) and not is_report(out):
            raise NamesaeError(f"--out {out}: is a non-empty folder that is not a namesae report (no "
                               f"{REPORT_MARKER}); nothing was deleted; use a new or empty folder")


def _alive(feat: dict) -> bool:
    count = feat.get("fire_count")
    return not isinstance(count, (int, float)) or count > 0


def _copy_icons(run: _Run, out: Path) -> tuple[dict[int, str], dict[str, str]]:
    """Copy the run's icons into the site (icons/); feature id -> and group label -> site-relative file."""
    import shutil

    if run.icons is None:
        return {}, {}
    (out / "icons").mkdir()
    feats, groups = {}, {}
    for table, entries, lookup in ((feats, run.icons.features, run.icons.feature_file),
                                   (groups, run.icons.groups, run.icons.group_file)):
        for key in entries:
            src = lookup(key)
            if src is not None and src.is_file():
                shutil.copyfile(src, out / "icons" / src.name)
                table[key] = "icons/" + src.name
    return feats, groups


def _steer_for(run: _Run, name: str, depth_out: Path, out: Path) -> list[dict[str, Any]]:
    """The steering results of a name: its side-by-side image (copied into the site) and its edits."""
    import shutil

    found = []
    for i, rec in enumerate(run.steer):
        source = rec.get("source") if isinstance(rec.get("source"), dict) else {}
        if source.get("kind") != "name" or source.get("value") != name:
            continue
        files = rec.get("files") if isinstance(rec.get("files"), dict) else {}
        grid = Path(rec["_dir"]) / str(files.get("side_by_side", "side_by_side.png"))
        image = None
        if grid.is_file():
            (out / "steer").mkdir(exist_ok=True)
            target = out / "steer" / f"s{i:03d}.png"
            shutil.copyfile(grid, target)
            image = os.path.relpath(target, depth_out)
        found.append({"image": image, "edits": pages.edit_text(rec.get("edits") or []),
                      "seeds": rec.get("seeds"), "summary": rec.get("summary") or {}})
    return found


def _write_site(run: _Run, out: Path, max_feature_pages: int) -> ReportResult:
    env = _environment()
    (out / "names").mkdir(parents=True)
    (out / "features").mkdir()
    (out / "plots").mkdir()
    (out / "style.css").write_text(env.get_template("style.css").render(), encoding="utf-8")

    identity = sorted(run.identity, key=lambda r: str(r.get("name", "")))
    name_pages = {str(r.get("name")): f"names/n{i:05d}.html" for i, r in enumerate(identity)}
    features = sorted(run.features, key=lambda r: feature_id(r) if feature_id(r) is not None else -1)
    n_dead = sum(not _alive(f) for f in features)
    features = [f for f in features if feature_id(f) is not None and _alive(f)][:max_feature_pages]
    feature_pages = {feature_id(f): f"features/f{feature_id(f):06d}.html" for f in features}
    images, medoids, row_images = _image_rows(run.paths["image_store"], run.row_images)
    owners = pages.identity_owners(identity)
    titles = {feature_id(f): pages.feature_title(f, owners.get(feature_id(f), [])) for f in features}
    icons, group_icons = _copy_icons(run, out)

    plot_files = _site_plots(run, identity, out / "plots", medoids)

    def rel(path: str) -> str:
        return os.path.relpath(path, out / "names")

    common = {"glossary": GLOSSARY, "define": define, "titles": titles}
    series = run.emergence.by_name() if run.emergence is not None else {}
    tau = run.emergence.config.tau_p * run.emergence.config.tau_r if run.emergence is not None else None
    for rec in identity:
        name = str(rec.get("name"))
        emerg, curve = _emergence_entry(run.emergence, series.get(name), tau)
        attrs = rec.get("attributes") if isinstance(rec.get("attributes"), dict) else {}
        groups = _name_groups(run.groups, name)
        page = env.get_template("name.html").render(
            title=name, root="..", rec=rec, scalars=[(k, rec.get(k)) for k in SCALAR_FIELDS if k in rec],
            zscores=sorted((k, v) for k, v in rec.items() if k.startswith("z_")),
            attributes=pages.attribute_rows(attrs), feature_pages={k: "../" + v for k, v in feature_pages.items()},
            groups=[{**g, "icon": "../" + group_icons[label] if label in group_icons else None}
                    for g, label in ((g, group_label(name, i)) for i, g in enumerate(groups, 1))],
            emergence=emerg, curve=curve,
            truth=run.truth.get(name), medoid=rel(medoids[name]) if name in medoids else None,
            basis=pages.basis_entries([entry for _, entry in entries_with(run.basis, "name", name)]),
            images=[{**im, "src": rel(im["path"])} for im in images.get(name, [])[:16]],
            absorption=[a for a in rec.get("absorption") or [] if isinstance(a, dict)],
            name_pages={k: "../" + v for k, v in name_pages.items()},
            seed_stability=rec.get("seed_stability") if isinstance(rec.get("seed_stability"), dict) else None,
            icons={k: "../" + v for k, v in icons.items()}, steer=_steer_for(run, name, out / "names", out),
            **common,
        )
        (out / name_pages[name]).write_text(page, encoding="utf-8")

    for feat in features:
        fid = feature_id(feat)
        acts = feat.get("histogram_values") or feat.get("activations") or []
        top_images = [{**row_images[r["row"]], "activation": r.get("activation"),
                       "src": os.path.relpath(row_images[r["row"]]["path"], out / "features")}
                      for r in feat.get("top_rows") or [] if isinstance(r, dict) and r.get("row") in row_images]
        page = env.get_template("feature.html").render(
            title=f"feature {fid}: {titles[fid].text}", root="..", feat=feat, fid=fid, ftitle=titles[fid],
            stats=[(k, v) for k, v in feat.items() if isinstance(v, (int, float, str, bool)) and k != "feature"],
            histogram=plots.svg_histogram(np.asarray(acts, dtype=float)) if acts else "",
            name_pages={k: "../" + v for k, v in name_pages.items()},
            search=[(where, entry) for where, entry in entries_with(run.search, "feature", fid)
                    if "planted_dictionary" not in where],
            icon="../" + icons[fid] if fid in icons else None, top_images=top_images[:16], **common,
        )
        (out / feature_pages[fid]).write_text(page, encoding="utf-8")

    (out / "glossary.html").write_text(env.get_template("glossary.html").render(
        title="glossary", root=".", terms=sorted(GLOSSARY.items(), key=lambda kv: kv[1][0].lower()),
        label_margin=pages.LABEL_MARGIN, label_cosine=pages.LABEL_COSINE, **common), encoding="utf-8")
    index = env.get_template("index.html").render(
        title="namesae report", root=".", scorecard=run.scorecard, metrics=_flatten(run.metrics),
        phase_table=_phase_table(run.emergence, name_pages), phase_labels=PHASE_LABELS,
        identity_summary=run.identity_summary,
        identity=identity, name_pages=name_pages, features=features, feature_pages=feature_pages,
        plots=plot_files, run_dir=str(run.dir), icons=icons, n_dead=n_dead, **common,
    )
    (out / "index.html").write_text(index, encoding="utf-8")
    return ReportResult(out / "index.html", len(identity), len(features), plot_files)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, scalar) rows for a table."""
    rows: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            rows.extend(_flatten(value, f"{prefix}{key}."))
    elif isinstance(data, list):
        more = f", … ({len(data)} in all)" if len(data) > 12 else ""
        rows.append((prefix.rstrip("."), ", ".join(pages.rounded(v) for v in data[:12]) + more))
    else:
        rows.append((prefix.rstrip("."), data))
    return rows


def _site_plots(run: _Run, identity: list[dict], out: Path, medoids: dict[str, str]) -> list[str]:
    """The site's large figures; each is drawn only when its data exists."""
    made: list[str] = []
    names = [str(r.get("name")) for r in identity]

    def column(key: str) -> np.ndarray:
        return np.array([r.get(key) if isinstance(r.get(key), (int, float)) else np.nan for r in identity],
                        dtype=float)

    dedicated = np.array([bool(r.get("dedicated")) for r in identity])
    trace, dedication = column("trace"), column("dedication")
    # Two measures that are not tied: for unit-norm rows the mean pairwise cosine is a function of tr(Σ), so the
    # second axis is the diffusion spectral entropy (or the log-det when DSE is missing).
    second, second_label = column("dse"), "diffusion spectral entropy"
    if not np.isfinite(second).any():
        second, second_label = column("logdet"), "log det(Σ + εI)"
    ok = np.isfinite(trace) & np.isfinite(second)
    if ok.sum() >= 3:
        plots.scatter_plot(trace[ok], second[ok], out / "diversity.png", "total variance tr(Σ)",
                           second_label, "Diversity of names' generations", colour=dedication[ok],
                           colour_label="dedication", highlight=dedicated[ok],
                           annotate=[n for n, k in zip(names, ok) if k])
        made.append("diversity.png")
    freq = np.array([run.truth.get(n, {}).get("frequency", np.nan) or np.nan for n in names], dtype=float)
    ok = np.isfinite(freq) & np.isfinite(dedication) & (freq > 0)
    if ok.sum() >= 3:
        plots.scatter_plot(freq[ok], dedication[ok], out / "dedication_vs_frequency.png", "name frequency",
                           "dedication", "Dedication against name frequency", highlight=dedicated[ok], logx=True)
        made.append("dedication_vs_frequency.png")
    if run.emergence is not None and run.emergence.names and run.emergence.labels:
        from namesae.emergence.plots import plot_dedication_curves, plot_phase_map

        cfg = run.emergence.config
        plot_phase_map(run.emergence, out / "phase_map.png", max_names=cfg.max_map_names)
        plot_dedication_curves(run.emergence, out / "dedication_curves.png", list(cfg.curve_names) or None,
                               cfg.max_curve_names, tau=cfg.tau_p * cfg.tau_r)
        made += ["phase_map.png", "dedication_curves.png"]
    made.extend(_dino_clip_plot(run, identity, out))
    made.extend(_embedding_map(run.paths["image_store"], out, medoids))
    return made


def _emergence_entry(result: EmergenceResult | None, series: Any, tau: float | None = None
                     ) -> tuple[dict[str, Any] | None, str]:
    """A name page's emergence section (index, change point, phase per point) and its inline dedication curve."""
    if result is None or series is None:
        return None, ""
    change = series.change.index
    entry = {"emergence_index": series.emergence_index, "emergence_value": series.emergence_value,
             "change_point": change, "change_value": series.change_value, "axis": result.axis,
             "points": [{"label": label, "value": value, "phase": phase, "dedication": ded}
                        for label, value, phase, ded in zip(result.labels, result.values, series.phase,
                                                            series.dedication)]}
    curve = plots.svg_curve(result.values, [np.nan if d is None else d for d in series.dedication],
                            marker=series.emergence_value, x_label=result.axis, y_label="dedication", threshold=tau)
    return entry, curve


def _phase_table(result: EmergenceResult | None, name_pages: dict[str, str]) -> dict[str, Any] | None:
    """The index's phase map as a table: a row per name (the phase map's names and order), a cell per point."""
    if result is None or not result.names or not result.labels:
        return None
    from namesae.emergence.plots import map_names

    table = result.by_name()
    names = map_names(result, result.config.max_map_names)
    return {"axis": result.axis, "points": list(zip(result.labels, result.values)),
            "rows": [{"name": n, "page": name_pages.get(n), "phases": [p or 0 for p in table[n].phase]}
                     for n in names],
            "n_names": len(result.names)}
