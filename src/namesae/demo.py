"""`namesae demo`: the whole pipeline on the built-in synthetic name world, scored against its planted truth.

Steps (each writes into the run folder, default `runs/demo`):
  1. world/       `namesae synth`: stores (image, text, vocab, progression) and truth.json
  2. sae/         `namesae train` on the world's image store (SAELens format, metrics.json on held-out rows)
  3. features.json, identity.json/.csv   `namesae features` / `namesae identity` with the world's vocabulary
  4. groups.json  `namesae groups` for every dedicated name, plus the planted-concepts benchmark of the method
  5. emergence/   `namesae emergence` over the world's progression (one small SAE per checkpoint)
  6. steer/       zero each found identity's features: does the name move toward its parts? (+ tiny decoder images)
  7. basis/search scores with the world's toy text encoder
  8. icons/, row_images/   `namesae icons` with the tiny decoder (+ the decoded rows embedded by a tiny DINOv2)
  9. report/      `namesae report`
Every score is computed from the outputs of these steps and compared with truth.json only at scoring time.
The scorecard (`scorecard.json`) is a list of lines with stable keys, documented in the README.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesae.config import config_from_dict, load_toml
from namesae.errors import ConfigError
from namesae.io import atomic_write_json
from namesae.scorecard import ScorecardLine, save_scorecard

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE

log = logging.getLogger(__name__)

SECTIONS = ("demo", "synth", "train", "emergence_train", "features", "identity", "groups", "emergence")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo itself (TOML section `[demo]`); each stage has its own section."""

    group_cases: int = 200
    """Planted embeddings on which the grouping method is scored (c = 2..6 concepts each)."""
    basis_k: int = 4
    """Most terms in a name-basis painting."""
    steer_images: bool = True
    """Render original and edited images of one dedicated name with a tiny Kandinsky 2.2 decoder."""
    report: bool = True
    """Write the HTML report."""
    progress: bool = True
    """Show progress bars."""
    stability_seeds: int = 2
    """SAEs trained with other seeds (1, 2, ...) for the seed-stability lines; 0 skips them."""
    absorption: bool = True
    """Score absorption on a second small world whose name parts own features (see `ABSORPTION_WORLD`)."""
    icons: int = 64
    """Feature icons drawn by the tiny decoder for the report (identity features first; 0 draws none)."""
    group_icons: int = 32
    """Group icons drawn for the report (the names' feature groups, in name order)."""
    rows_per_name: int = 2
    """Image rows per name decoded by the tiny decoder, so the report shows generations and top images."""

    def __post_init__(self) -> None:
        if isinstance(self.stability_seeds, bool) or not isinstance(self.stability_seeds, int) or \
                self.stability_seeds < 0:
            raise ConfigError(f"stability_seeds must be an integer >= 0, got {self.stability_seeds!r}")
        if int(self.group_cases) < 1:
            raise ConfigError(f"group_cases must be >= 1, got {self.group_cases!r}")
        if int(self.basis_k) < 1:
            raise ConfigError(f"basis_k must be >= 1, got {self.basis_k!r}")


@dataclass(frozen=True)
class DemoSettings:
    """Every stage's config for one demo run."""

    demo: Any
    synth: Any
    train: Any
    emergence_train: dict[str, Any]
    features: Any
    identity: Any
    groups: Any
    emergence: Any


def demo_settings(data: dict[str, Any] | None = None, source: str = "<defaults>") -> DemoSettings:
    """Build the demo's settings from a TOML-like mapping of sections (missing sections take defaults)."""
    from namesae.emergence import emergence_config_from_dict
    from namesae.features import FeatureConfig
    from namesae.groups import GroupConfig
    from namesae.identity import IdentityConfig
    from namesae.sae import TrainConfig
    from namesae.synth import SynthConfig

    data = dict(data or {})
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    train = data.get("train", DEFAULT_TRAIN)
    emergence_train = data.get("emergence_train", DEFAULT_EMERGENCE_TRAIN)
    config_from_dict(TrainConfig, emergence_train, f"{source} [emergence_train]")  # validate now, not at step 5
    return DemoSettings(
        demo=config_from_dict(DemoConfig, data.get("demo", {}), f"{source} [demo]"),
        synth=config_from_dict(SynthConfig, data.get("synth", {}), f"{source} [synth]"),
        train=config_from_dict(TrainConfig, train, f"{source} [train]"),
        emergence_train=dict(emergence_train),
        features=config_from_dict(FeatureConfig, data.get("features", {}), f"{source} [features]"),
        identity=config_from_dict(IdentityConfig, data.get("identity", {}), f"{source} [identity]"),
        groups=config_from_dict(GroupConfig, data.get("groups", {}), f"{source} [groups]"),
        emergence=emergence_config_from_dict(data.get("emergence", {}), f"{source} [emergence]"),
    )


def load_demo_settings(path: str | Path | None) -> DemoSettings:
    """The demo's settings from a TOML file such as configs/demo.toml (defaults without a file)."""
    if path is None:
        return demo_settings()
    return demo_settings(load_toml(path), str(path))


# The SAE the demo trains on the world's image rows: small enough for a laptop CPU, wide enough (8x) that every
# planted identity direction can own a feature. JumpReLU, because on this world it recovers the planted identities
# most reliably (measured over seeds 0-2, 3000 steps: JumpReLU l0 0.005 finds 32/31/29 of 32 dedicated names at
# precision 1.0; TopK k=16 21/32, BatchTopK k=10 28/32/28; see the README's notes on the demo SAE). DeepMind's step
# L0 without straight-through to the input, as measured there; the library's JumpReLU default (tanh, Anthropic's
# setup) is what trains at CLIP sizes.
DEFAULT_TRAIN: dict[str, Any] = {
    "architecture": "jumprelu", "expansion_factor": 8.0, "l0_coefficient": 0.005, "batch_size": 512, "steps": 3000,
    "lr": 1e-3, "seed": 0, "jumprelu_sparsity_loss": "step", "jumprelu_ste_to_input": False,
}
DEFAULT_EMERGENCE_TRAIN: dict[str, Any] = {**DEFAULT_TRAIN, "steps": 1500}
# The absorption world: a quarter of first names and surnames own a feature of their own, carried by half of the
# full names that contain them; wide enough (d = 128) that every identity direction is orthogonal to the others.
ABSORPTION_WORLD: dict[str, Any] = {"dim": 128, "n_first": 24, "n_last": 24, "n_full": 120, "n_dedicated": 24,
                                    "dedicated_part_fraction": 0.25, "progression": False}


@dataclass
class Scorecard:
    """The demo's scorecard: lines in a stable order, step timings and where things were written."""

    lines: list[ScorecardLine] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: Any, at_least: float | None = None, at_most: float | None = None,
            what: str = "") -> None:
        """Record a measured value and, when a bound is given, whether it meets it."""
        target, passed = None, None
        if hasattr(value, "item"):  # numpy scalars: JSON-ready Python numbers, and bool comparisons
            value = value.item()
        number = value if isinstance(value, (int, float)) and not math.isnan(value) else None
        if at_least is not None:
            target, passed = f">= {at_least:g}", bool(number is not None and number >= at_least)
        elif at_most is not None:
            target, passed = f"<= {at_most:g}", bool(number is not None and number <= at_most)
        if isinstance(value, float):
            value = round(value, 4)
        self.lines.append(ScorecardLine(key, value, target, passed, what))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready scorecard."""
        return {"format_version": 1, "lines": [line.to_dict() for line in self.lines],
                "passed": sum(line.passed is True for line in self.lines),
                "failed": sum(line.passed is False for line in self.lines),
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}, "paths": self.paths}

    def table(self) -> str:
        """The scorecard as aligned text lines."""
        width = max((len(line.key) for line in self.lines), default=10)
        out = []
        for line in self.lines:
            mark = {True: "ok  ", False: "MISS", None: "    "}[line.passed]
            target = f"(target {line.target})" if line.target else ""
            out.append(f"{mark} {line.key:<{width}}  {line.value!s:<10} {target}")
        return "\n".join(out)


class _Steps:
    """Runs named steps, timing each."""

    def __init__(self, card: Scorecard) -> None:
        self.card = card

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        log.info("demo: %s ...", name)
        result = fn()
        self.card.seconds[name] = time.perf_counter() - start
        log.info("demo: %s done in %.1f s", name, self.card.seconds[name])
        return result


def run_demo(settings: DemoSettings | None = None, out: str | Path = "runs/demo") -> Scorecard:
    """Run the whole pipeline on a synthetic world under `out`; returns the scorecard (also scorecard.json)."""
    settings = settings or demo_settings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card = Scorecard()
    step = _Steps(card)
    progress = settings.demo.progress
    start = time.perf_counter()

    world_dir = step("synth", lambda: _synth(settings, out / "world", card))
    sae = step("train", lambda: _train(settings, world_dir, out / "sae", card, progress))
    identity = step("identity", lambda: _identity(settings, sae, world_dir, out, card, progress))
    if settings.demo.stability_seeds:
        step("seed_stability", lambda: _seed_stability(settings, sae, world_dir, identity, out, card, progress))
    if settings.demo.absorption:
        step("absorption", lambda: _absorption(settings, out / "absorption", card, progress))
    step("groups", lambda: _groups(settings, sae, world_dir, identity, out, card))
    step("emergence", lambda: _emergence(settings, world_dir, out / "emergence", card, progress))
    step("steer", lambda: _steer(settings, sae, world_dir, identity, out / "steer", card))
    step("basis_search", lambda: _basis_search(settings, sae, world_dir, out, card))

    manifest = {"world": "world", "image_store": "world/image.h5", "text_store": "world/text.h5",
                "truth": "world/truth.json", "sae": "sae", "metrics": "sae/metrics.json", "steer": "steer/steer.json",
                "features": "features.json", "identity": "identity.json", "groups": "groups.json",
                "emergence": "emergence/emergence.json", "basis": "basis.json", "search": "search.json",
                "scorecard": "scorecard.json"}
    from namesae.runs import record_artefact, record_decoder

    for key, rel in manifest.items():
        record_artefact(out / rel, key, run=out, command="namesae demo")
    if settings.demo.steer_images:
        record_decoder(out, "kandinsky22", f"tiny:{out / 'steer' / 'tiny_kandinsky22'}")
        if settings.demo.icons:
            step("icons", lambda: _icons(settings, out, card, progress))
    card.seconds["total_before_report"] = time.perf_counter() - start
    card.paths = {k: str(out / v) for k, v in manifest.items()}
    save_scorecard(card, out / "scorecard.json")
    if settings.demo.report:
        from namesae.report import build_report

        result = step("report", lambda: build_report(out, out / "report"))
        card.paths["report"] = str(result.index)
    card.seconds["total"] = time.perf_counter() - start
    save_scorecard(card, out / "scorecard.json")
    return card


def _synth(settings: DemoSettings, world_dir: Path, card: Scorecard) -> Path:
    from namesae.synth import build_world, summary, write_world

    world = build_world(settings.synth)
    write_world(world, world_dir)
    info = summary(world)
    card.add("world.names", sum(info["names"].values()), what="first names, surnames and full names")
    card.add("world.dedicated", info["dedicated"], what="full names planted with an identity direction")
    card.add("world.image_rows", info["rows"].get("image", 0))
    return world_dir


def _train(settings: DemoSettings, world_dir: Path, sae_dir: Path, card: Scorecard, progress: bool) -> Any:
    from namesae.sae import train_sae

    sae = train_sae(world_dir / "image.h5", settings.train, sae_dir, progress=progress, overwrite=True)
    metrics = json.loads((sae_dir / "metrics.json").read_text())
    card.add("sae.explained_variance", metrics["explained_variance"], at_least=0.9,
             what="1 - FVU on held-out image rows")
    card.add("sae.mean_l0", metrics["mean_l0"])
    card.add("sae.dead_fraction", metrics["dead_fraction"])
    return sae


def _identity(settings: DemoSettings, sae: TrainedSAE, world_dir: Path, out: Path, card: Scorecard,
              progress: bool) -> Any:
    from namesae.identity import load_prior_names, run_identity, write_features, write_identity
    from namesae.store import EmbeddingStore
    from namesae.synth import load_truth
    from namesae.synth.score.identity import score_identity

    prior_path = world_dir / "prior_names.txt"
    prior = load_prior_names(prior_path) if prior_path.is_file() else []
    with EmbeddingStore.open(world_dir / "image.h5") as image, EmbeddingStore.open(world_dir / "text.h5") as text, \
            EmbeddingStore.open(world_dir / "vocab.h5") as vocab:
        result = run_identity(sae, image, settings.identity, settings.features, text_store=text, vocab=vocab,
                              prior_names=prior, progress=progress)
        stats = getattr(result, "stats", None)
        write_identity(result, out)
        if stats is None:
            from namesae.features import compute_feature_stats, labels_from_store

            stats = compute_feature_stats(sae, image, settings.features)
            stats.labels = labels_from_store(sae, vocab)
        write_features(stats, out, image)
    score = score_identity(result.records, load_truth(world_dir))
    card.add("identity.dedicated_precision", score["precision"], at_least=0.9,
             what="found dedicated names that are planted dedicated")
    card.add("identity.dedicated_recall", score["recall"], at_least=0.9,
             what="planted dedicated names that are found")
    card.add("identity.rigidity_spearman", score["rigidity_spearman"], at_least=0.8,
             what=f"Spearman of {score['rigidity_measure']} with planted rigidity")
    return result


def _seed_stability(settings: DemoSettings, sae: TrainedSAE, world_dir: Path, identity: Any, out: Path,
                    card: Scorecard, progress: bool) -> None:
    import dataclasses

    from namesae.identity import add_seed_stability, write_identity
    from namesae.sae import train_sae
    from namesae.store import EmbeddingStore
    from namesae.synth import load_truth
    from namesae.synth.score.identity import score_seed_stability

    others = [train_sae(world_dir / "image.h5", dataclasses.replace(settings.train, seed=settings.train.seed + s),
                        out / f"sae_seed{settings.train.seed + s}", progress=progress, overwrite=True)
              for s in range(1, settings.demo.stability_seeds + 1)]
    with EmbeddingStore.open(world_dir / "image.h5") as image:
        summary = add_seed_stability(identity, sae, others, image, settings.features)
    write_identity(identity, out)
    score = score_seed_stability(identity.records, load_truth(world_dir))
    _add_lines(card, [
        ("stability.dedicated_in_every_seed", score["dedicated_in_every_seed"], 0.9,
         f"planted dedicated names found dedicated by all {summary['n_saes']} SAEs (seeds)"),
        ("stability.compositional_in_no_seed", score["compositional_in_no_seed"], 0.95,
         "planted compositional names found dedicated by none of the SAEs"),
        ("stability.matched_cosine", score["dedicated_matched_cosine"], 0.9,
         "planted dedicated names: decoder cosine of the identity feature and its Hungarian match"),
        ("stability.seed_agreement", summary["mean_seed_agreement"], None,
         "all names: share of SAEs agreeing with the majority verdict")])


def _add_lines(card: Scorecard, lines: list[tuple[str, Any, float | None, str]]) -> None:
    """Add (key, value, lower bound or None, what) lines in order."""
    for key, value, at_least, what in lines:
        card.add(key, value, at_least=at_least, what=what)

def _absorption(settings: DemoSettings, out: Path, card: Scorecard, progress: bool) -> None:
    import dataclasses

    from namesae.identity import run_identity, write_identity
    from namesae.sae import train_sae
    from namesae.store import EmbeddingStore
    from namesae.synth import SynthConfig, build_world, load_truth, write_world
    from namesae.synth.score.identity import score_absorption, score_identity

    world_dir = out / "world"
    write_world(build_world(SynthConfig(seed=settings.synth.seed, **ABSORPTION_WORLD)), world_dir)
    sae = train_sae(world_dir / "image.h5", dataclasses.replace(settings.train), out / "sae", progress=progress,
                    overwrite=True)
    with EmbeddingStore.open(world_dir / "image.h5") as image:
        result = run_identity(sae, image, settings.identity, settings.features, progress=progress)
    write_identity(result, out)
    truth = load_truth(world_dir)
    found = score_identity(result.records, truth)
    score = score_absorption(result.records, truth)
    _add_lines(card, [
        ("absorption.identity_f1", found["f1"], 0.9,
         "absorption world: dedicated detection F1 (full names and name parts with their own feature)"),
        ("absorption.coverage", score["absorption_coverage"], 0.9,
         "planted (full name, dedicated part) pairs whose part feature was found and measured"),
        ("absorption.carry_auc", score["absorption_carry_auc"], 0.9,
         "compositional full names: a carried part's feature fires more than a part shared by name only"),
        ("absorption.dedicated_carried", score["mean_absorption_carried_dedicated"], None,
         "dedicated full names: mean absorption of the parts they carry (1 = part feature silent)"),
        ("absorption.compositional_carried", score["mean_absorption_carried_compositional"], None,
         "compositional full names: mean absorption of the parts they carry (the no-absorption level)")])


def _groups(settings: DemoSettings, sae: TrainedSAE, world_dir: Path, identity: Any, out: Path,
            card: Scorecard) -> None:
    import numpy as np

    from namesae.groups import name_groups, score_groups_on_planted
    from namesae.sae import encode
    from namesae.store import EmbeddingStore

    planted = score_groups_on_planted(n_cases=settings.demo.group_cases, seed=settings.synth.seed,
                                      config=settings.groups)
    for mode in ("mass", "concepts"):
        card.add(f"groups.{mode}.purity_rate", planted[mode]["purity_ge_0.95"], at_least=0.95,
                 what=f"select={mode}: planted cases whose groups have mass-weighted purity >= 0.95")
    card.add("groups.concepts.k_and_ari_rate", planted["concepts"]["k_eq_c_and_ari_ge_0.9"], at_least=0.9,
             what="select=concepts: planted cases with k = c and adjusted Rand index >= 0.9")
    card.add("groups.mass.k_eq_c", planted["mass"]["k_eq_c"],
             what="select=mass: planted cases with k = c (the original rule over-splits concepts)")
    directions = sae.decoder_directions()
    names = [r.name for r in identity.records if r.dedicated]
    from namesae.groups.result import GroupsResult

    found = {}
    with EmbeddingStore.open(world_dir / "image.h5") as image:
        for name in names:
            codes = encode(sae, image.read_rows(image.rows_of(name)))
            found[name] = name_groups(codes, directions, settings.groups, name=name)
    stabilities = [r.to_dict()["stability"] for r in found.values() if r.stability is not None]  # as groups.json
    card.add("groups.name_stability_mean", float(np.mean(stabilities)) if stabilities else float("nan"),
             what="dedicated names: share of grouped feature pairs that fall together across the name's rows")
    GroupsResult(found, settings.groups).save(out / "groups.json")


def _emergence(settings: DemoSettings, world_dir: Path, out: Path, card: Scorecard, progress: bool) -> None:
    from namesae.emergence import run_emergence, write_emergence
    from namesae.synth.score.emergence import score_emergence, truth_frequencies, world_series

    series = world_series(world_dir, train=settings.emergence_train)
    result = run_emergence(series, settings.emergence, out_dir=out, frequencies=truth_frequencies(series),
                           progress=progress)
    score = score_emergence(result, world_dir / "truth.json")
    write_emergence(result, out, score=score)
    card.add("emergence.within_1", score["emergence_within_1"], at_least=0.9,
             what="dedicated names whose detected emergence index is within 1 of the planted onset")
    card.add("emergence.no_emergence_compositional", score["no_emergence_compositional"], at_least=0.95,
             what="compositional names that never emerge")
    card.add("emergence.phase_agreement", score["phase_agreement"], at_least=0.8,
             what="phase at the last checkpoint equals the planted phase")


def _steer(settings: DemoSettings, sae: TrainedSAE, world_dir: Path, identity: Any, out: Path,
           card: Scorecard) -> None:
    from namesae.synth.score.steer import score_identity_edits

    features = {r.name: list(r.identity_features) for r in identity.records if r.dedicated}
    score = score_identity_edits(sae, world_dir, features)
    card.add("steer.moved_to_parts", score.ablation.share_moved, at_least=0.9,
             what="found identities whose rows, identity features zeroed, end closer to their parts' compositional "
                  "prediction than to the name's own mean")
    card.add("steer.moved_to_parts_ceiling", score.ceiling,
             what="the same measure with each planted identity direction projected out exactly (scored with the "
                  "truth): what a perfect identity edit reaches in this world")
    card.add("steer.closer_to_parts", score.closer_to_parts,
             what="found identities whose rows, identity features zeroed, move closer (cosine) to their parts' "
                  "prediction than they were")
    card.add("steer.identity_removed", score.mean_identity_removed,
             what="mean share of the planted identity component that zeroing the found identity features removes "
                  "(the rest sits in shared features and in the kept reconstruction error)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "ablation.json", score.to_dict())
    if settings.demo.steer_images and features:
        name = next(iter(features))
        _steer_images(sae, world_dir, name, features[name], out)
        card.paths["steer_images"] = str(out / "side_by_side.png")


def _steer_images(sae: TrainedSAE, world_dir: Path, name: str, features: list[int], out: Path) -> None:
    """Steer one found identity as `namesae steer` does: its mean image embedding, identity features zeroed, decoded
    by a tiny random Kandinsky 2.2 built in the SAE's space (the images show the mechanics, not a face)."""
    from namesae.decoders import info_dict, load_decoder, quiet_loading, resolve_model
    from namesae.steer import ZeroGroup, sae_functions
    from namesae.steer.images import source_from_store, steer_images, write_steer_outputs
    from namesae.store import EmbeddingStore

    quiet_loading()
    model = resolve_model("kandinsky22", f"tiny:{out / 'tiny_kandinsky22'}", space=sae.space, dim=sae.d_in)
    decoder = load_decoder("kandinsky22", model)
    with EmbeddingStore.open(world_dir / "image.h5") as image:
        source = source_from_store(image, name=name)
    encode, decode = sae_functions(sae)
    edits = [ZeroGroup(tuple(features))]
    steered = steer_images(source.embedding, edits, encode, decode, decoder, [0, 1], scale=source.scale)
    meta = {"namesae": "demo steer", "sae": {"dir": str(sae.path), "space": sae.space, "d_in": sae.d_in,
                                             "d_sae": sae.d_sae},
            "decoder": info_dict(decoder.info, decoder.settings), "source": source.describe()}
    files = write_steer_outputs(out, steered, meta)
    log.info("demo steer: %s, identity features %s zeroed: %s", name, features, files.grid)

def _icons(settings: DemoSettings, out: Path, card: Scorecard, progress: bool) -> None:
    """Feature and group icons and decoded world rows for the report, drawn by the demo's tiny decoder."""
    from namesae.report.pictures import draw_run_pictures

    d = settings.demo
    pictures = draw_run_pictures(out, icons=d.icons, group_icons=d.group_icons, rows_per_name=d.rows_per_name,
                                 progress=progress)
    card.paths["icons"] = str(pictures.icons.folder)
    if pictures.row_images is not None and pictures.row_images.rows:
        from namesae.report.pictures import embed_rendered_rows

        card.paths["dino_store"] = str(embed_rendered_rows(out))  # the report's DINOv2-vs-CLIP rigidity plot


def _basis_search(settings: DemoSettings, sae: TrainedSAE, world_dir: Path, out: Path,
                  card: Scorecard) -> None:
    from namesae.sae import encode
    from namesae.synth.score.basis import score_basis_on_world
    from namesae.synth.score.search import score_search_on_world, search_rates

    basis = score_basis_on_world(world_dir, k=settings.demo.basis_k)
    from namesae.basis.result import BasisFile

    BasisFile("world", basis).save(out / "basis.json")
    card.add("basis.compositional_cosine", basis["compositional"]["reencoded_cosine"],
             what="re-encoded cosine of compositional names painted from other names' parts")
    card.add("basis.dedicated_cosine", basis["dedicated"]["reencoded_cosine"],
             what="the same for dedicated names (should be lower)")
    card.add("basis.auc", basis["auc"], at_least=0.9,
             what="P(a compositional name paints better than a dedicated one)")
    card.add("basis.parts_recall_top3", basis["compositional"]["parts_recall_top3"], at_least=0.8,
             what="compositional names painted with their own parts allowed: share of their planted parts among "
                  "the 3 largest terms")
    # The search methods are scored on the world's planted dictionary (what they can do), then through the demo
    # SAE's features (what this SAE supports: an image-space dictionary applied to text prompts).
    oracle = score_search_on_world(world_dir)
    through_sae = score_search_on_world(world_dir, codes=lambda x: encode(sae, x).numpy(),
                                        directions=sae.decoder_directions().numpy())
    from namesae.search.result import SearchFile

    SearchFile("world", {"planted_dictionary": oracle, "demo_sae": through_sae}).save(out / "search.json")
    for source, search, bound in (("search", oracle, 0.9), ("search.sae", through_sae, None)):
        rates, planted = search_rates(search), search["triggers"]["of"]
        card.add(f"{source}.trigger_rank1", rates["trigger_rank1"], at_least=bound,
                 what=f"planted trigger words ranked first for their style/scene feature ({planted} planted), "
                      + ("planted dictionary" if bound else "demo SAE's features"))
        card.add(f"{source}.triggers_found", rates["triggers_found"],
                 what="token search puts the planted trigger into the corpus's best prompt")
        card.add(f"{source}.anti_pattern_rate", rates["anti_pattern_rate"], at_least=bound,
                 what="anti-pattern cases whose best addition lowers the feature >= 80% at cosine >= 0.9")
        card.add(f"{source}.cancellers_found", rates["cancellers_found"],
                 what="the best addition is the planted canceller word")
        card.add(f"{source}.contrast_found", rates["contrast_found"], at_least=1.0 if bound else None,
                 what="beach vs office contrast ranks scene:beach first and scene:office last")
