"""The identity analysis of a store end to end and its output files (scored against a planted truth in
`namesae.synth.score.identity`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.features import (
    FeatureConfig,
    FeatureStats,
    compute_feature_stats,
    factorize_names,
    labels_from_store,
    same_encoder,
)
from namesae.identity.analysis import (
    IdentityConfig,
    add_z_scores,
    identity_records,
    image_measures,
    merge_image_measures,
    part_absorption,
)
from namesae.identity.attributes import (
    Ladder,
    LadderEmbeddings,
    embed_ladders,
    ladders_from_rows,
    load_ladders,
)
from namesae.identity.composition import part_compositions
from namesae.identity.result import IdentityResult
from namesae.names import text_lines
from namesae.store import EmbeddingStore

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE

log = logging.getLogger(__name__)


def text_means(store: EmbeddingStore, progress: bool = False) -> dict[str, np.ndarray]:
    """Mean embedding of each name's text rows (one streaming pass)."""
    from tqdm.auto import tqdm

    rows = store.select(kind="text")
    if rows.size == 0:
        return {}
    ids, uniq = factorize_names(store.names[rows])
    sums = np.zeros((len(uniq), store.dim))
    step = 16384
    for start in tqdm(range(0, rows.size, step), desc="text means", disable=not progress):
        chunk = rows[start:start + step]
        np.add.at(sums, ids[start:start + step], store.read_rows(chunk))
    sums /= np.bincount(ids, minlength=len(uniq))[:, None]
    return {name: sums[i] for i, name in enumerate(uniq)}


def ladder_embeddings(ladders: Sequence[Ladder], image_store: EmbeddingStore,
                      sources: Sequence[EmbeddingStore] = (),
                      encode_text: Callable[[list[str]], Any] | None = None) -> tuple[list[LadderEmbeddings], list[str]]:
    """Ladder prompt embeddings from a text encoder function, else from stores holding the prompts as rows."""
    if encode_text is not None:
        return embed_ladders(ladders, encode_text), []
    remaining = list(ladders)
    found: list[LadderEmbeddings] = []
    for src in sources:
        if not same_encoder(src.space, image_store.space) or src.dim != image_store.dim:
            raise SpaceMismatchError(f"{src.path}: ladder prompts embedded in {src.space!r}, not the image store's "
                                     f"encoder {image_store.space!r}; embed them with the same encoder")
        got, _ = ladders_from_rows(remaining, src.prompts, src.read_rows)
        found.extend(got)
        done = {g.ladder.name for g in got}
        remaining = [lad for lad in remaining if lad.name not in done]
    return found, [lad.name for lad in remaining]


def run_identity(
    sae: TrainedSAE | None,
    store: EmbeddingStore,
    config: IdentityConfig | None = None,
    feature_config: FeatureConfig | None = None,
    image_store: EmbeddingStore | None = None,
    text_store: EmbeddingStore | None = None,
    vocab: EmbeddingStore | None = None,
    ladders: Sequence[Ladder] | None = None,
    ladder_store: EmbeddingStore | None = None,
    encode_text: Callable[[list[str]], Any] | None = None,
    prior_names: Sequence[str] = (),
    stats: FeatureStats | None = None,
    progress: bool = False,
) -> IdentityResult:
    """Identity analysis of every name in `store` (the SAE's store): features, rigidity, parts, attributes, z.

    `sae` may be None when `stats` is given and there is no `vocab` to label features with."""
    config = config or IdentityConfig()
    notes: list[str] = []
    if stats is None:
        stats = compute_feature_stats(sae, store, feature_config, progress=progress)
    if vocab is not None and stats.labels is None:
        stats.labels = labels_from_store(sae, vocab, center=(feature_config or FeatureConfig()).label_center)
    records = identity_records(stats, config)
    absorption = part_absorption(stats, records)

    image_store = image_store or store
    image = None
    if image_store.select(kind="image").size == 0:
        notes.append(f"rigidity and attributes unavailable: {image_store.path} has no image rows")
    else:
        ladder_embs: list[LadderEmbeddings] = []
        wanted = load_ladders() if ladders is None else list(ladders)
        sources = [s for s in (ladder_store, text_store, vocab) if s is not None]
        if wanted and (encode_text is not None or sources):
            ladder_embs, missing = ladder_embeddings(wanted, image_store, sources, encode_text)
            if missing:
                notes.append(f"attributes unavailable for ladder(s) {missing}: their prompts are in no given store")
        elif wanted:
            notes.append("attributes unavailable: no ladder store or text encoder given")
        image = image_measures(image_store, config, ladder_embs, names=[r.name for r in records],
                               progress=progress)
        if image.sigma is None:
            notes.append("dse unavailable: no name has two distinct image rows to set sigma")
        short = [r.name for r in records if image.n_image_rows.get(r.name, 0) < 2]
        if short:
            notes.append(f"rigidity unavailable for {len(short)} name(s) with fewer than 2 image rows")
    merge_image_measures(records, image)

    text_store = text_store or (store if store.select(kind="text").size else None)
    if text_store is None:
        notes.append("part_composition unavailable: no text rows (pass a text store)")
    else:
        means = text_means(text_store, progress)
        template = means.get(config.template_name)
        if template is None:
            notes.append(f"part_composition without a template: no text rows named {config.template_name!r}")
        comp = part_compositions([r.name for r in records], means.get, template)
        for rec in records:
            rec.part_composition = comp.get(rec.name)

    used = add_z_scores(records, prior_names)
    for note in notes:
        log.info("identity: %s", note)
    return IdentityResult(records, config, notes, image.sigma if image else None, used, absorption)


def load_prior_names(path: str | Path) -> list[str]:
    """Prior (low-bias) names from a text file (one per line, # comments) or a JSON list of names."""
    path = Path(path)
    if not path.is_file():
        raise NamesaeError(f"{path}: prior names file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise NamesaeError(f"{path}: invalid JSON ({err})") from None
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise NamesaeError(f"{path}: expected a JSON list of names")
        return data
    return text_lines(text)


def add_seed_stability(result: IdentityResult, reference: Any, others: Sequence[Any], store: EmbeddingStore,
                       feature_config: FeatureConfig | None = None, progress: bool = False) -> dict[str, Any]:
    """Identity verdicts of the same store under SAEs of other seeds, matched to the reference SAE's features;
    fills each record's `seed_stability` and the result's summary, and returns the summary."""
    from namesae.identity.stability import seed_stability, verdicts_of

    verdicts = [verdicts_of(result.records)]
    directions = [np.asarray(reference.decoder_directions())]
    for sae in others:
        stats = compute_feature_stats(sae, store, feature_config, progress=progress)
        verdicts.append(verdicts_of(identity_records(stats, result.config)))
        directions.append(np.asarray(sae.decoder_directions()))
    stability = seed_stability(verdicts, directions)
    for rec in result.records:
        rec.seed_stability = stability.per_name.get(rec.name)
    result.seed_stability = stability.summary
    return stability.summary


@dataclass
class IdentityRun:
    """What `run_identity_files` made: the analysis, the feature statistics it used and the files written."""

    result: IdentityResult
    stats: FeatureStats
    paths: list[Path]
    space: str
    """The main store's space."""


def run_identity_files(sae: Path, store: Path, out: Path, *, config: Path | None = None, kind: str | None = None,
                       tau_p: float | None = None, tau_r: float | None = None, rule: str | None = None,
                       prior_names: Path | None = None, image_store: Path | None = None,
                       text_store: Path | None = None, vocab: Path | None = None, ladders: Path | None = None,
                       ladder_store: Path | None = None, seed_saes: Sequence[Path] = (),
                       write_features: bool = False, progress: bool = False, device: str = "cpu") -> IdentityRun:
    """`namesae identity` without the command line: settings from the [identity] and [features] sections of
    `config` and the given overrides, every input loaded and checked before the work, identity.json/.csv (and
    with `write_features` features.json/.csv) written into `out`."""
    from namesae.config import config_from
    from namesae.devices import resolve_device
    from namesae.features.result import write_features as write_feature_files
    from namesae.identity.result import write_identity
    from namesae.sae import load_sae

    device = resolve_device(device)
    fcfg = config_from(FeatureConfig, "features", config, {"kind": kind})
    icfg = config_from(IdentityConfig, "identity", config, {"tau_p": tau_p, "tau_r": tau_r, "rule": rule})
    prior = load_prior_names(prior_names) if prior_names is not None else []
    lads = load_ladders(ladders)
    model = load_sae(sae, device=device)
    seeds = [load_sae(p, device=device) for p in seed_saes]  # refused before any work, not after
    with ExitStack() as stack:
        def opened(path: Path | None) -> EmbeddingStore | None:
            return stack.enter_context(EmbeddingStore.open(path)) if path is not None else None

        main = opened(store)
        stats = compute_feature_stats(model, main, fcfg, progress=progress)
        result = run_identity(model, main, icfg, fcfg, image_store=opened(image_store),
                              text_store=opened(text_store), vocab=opened(vocab), ladders=lads,
                              ladder_store=opened(ladder_store), prior_names=prior, stats=stats,
                              progress=progress)
        if seeds:
            add_seed_stability(result, model, seeds, main, fcfg, progress=progress)
        meta = {"sae": str(sae), "store": str(store)}
        paths = list(write_identity(result, out, meta))
        if write_features:
            paths += list(write_feature_files(stats, out, main, meta))
        return IdentityRun(result, stats, paths, main.space)
