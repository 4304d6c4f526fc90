"""`namesae search drive | cancel | contrast` as library calls: each writes its JSON and CSV and returns them.

The text encoder and the features are handed in (`namesae.inputs.TextInputs`, `FeatureInputs`: a model or SAE,
or a synthetic world standing in for them), so the search never imports the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.io import atomic_write_csv
from namesae.search.cancel import AntiPatternSearch
from namesae.search.contrast import Contrast
from namesae.search.prompts import RankedPrompt, TokenSearch
from namesae.search.result import SearchFile
from namesae.search.target import Codes, FeatureTarget


class FeatureCodes(NamedTuple):
    """Codes of every feature of a dictionary: `codes` [n, d] -> [n, d_sae], its space (None: any) and labels."""

    codes: Codes
    d_sae: int
    space: str | None
    labels: Sequence[str] | None


class TextSource(Protocol):
    """The text side a search is handed (`namesae.inputs.TextInputs`)."""

    def encoder(self) -> Any:
        """Load the text encoder."""

    def world_names(self, kind: str) -> list[str]:
        """Default names of one kind (a synthetic world's; none otherwise)."""

    def world_templates(self) -> list[str]:
        """Default templates (a synthetic world's; none otherwise)."""


class FeatureSource(Protocol):
    """The features a search is handed (`namesae.inputs.FeatureInputs`)."""

    device: str

    def target(self, features: str, encoder: Any) -> FeatureTarget:
        """The FeatureTarget of feature ids (or labels) `features`, checked against `encoder`."""

    def codes(self) -> FeatureCodes:
        """Codes of every feature."""


@dataclass(frozen=True)
class DriveRun:
    """What `run_drive` made: the ranked corpus, the token searches from its best prompts, the files written."""

    target: FeatureTarget
    ranked: list[RankedPrompt]
    searches: list[TokenSearch]
    n_corpus: int
    paths: list[Path]


@dataclass(frozen=True)
class CancelRun:
    """What `run_cancel` made: the anti-pattern search and the files written."""

    target: FeatureTarget
    result: AntiPatternSearch
    paths: list[Path]


@dataclass(frozen=True)
class ContrastRun:
    """What `run_contrast` made: the contrast, the two sets in words, its rows (labelled by a planted
    dictionary's labels, when it has them) and the files written."""

    result: Contrast
    descriptions: tuple[str, str]
    rows: list[dict[str, Any]]
    labelled: bool
    paths: list[Path]


def search_tokens(tokens: Path | None, encoder: Any) -> list[str]:
    """The words and phrases a search may insert: file `tokens` (one per line), else the encoder's own (the toy
    encoder's)."""
    from namesae.names import read_lines

    if tokens is not None:
        words = read_lines(tokens)
        if not words:
            raise NamesaeError(f"{tokens}: no tokens (one word or phrase per line)")
        return words
    if hasattr(encoder, "search_tokens"):
        return encoder.search_tokens()
    raise NamesaeError("--tokens FILE is required: the words and phrases the search may insert (one per line)")


def run_drive(text: TextSource, features: FeatureSource, feature_ids: str, out: Path, names: Path | None = None,
              templates: Sequence[str] = (), phrases: Path | None = None, tokens: Path | None = None,
              top: int = 20, improve: int = 1, steps: int = 3, beam: int = 1, ops: Sequence[str] = (),
              batch: int = 1024) -> DriveRun:
    """What drives a feature: every corpus prompt (names x templates, phrases) ranked by its activation, the best
    `improve` improved by token search; writes drive.json and ranking.csv into `out`."""
    from namesae.names import load_names, read_lines, resolve_templates
    from namesae.search.prompts import corpus_prompts, improve_prompt, rank_prompts

    encoder = text.encoder()
    target = features.target(feature_ids, encoder)
    name_list = load_names(names) if names is not None else []
    world_templates = text.world_templates()
    if names is None:
        name_list = text.world_names("full")
    default = world_templates or ["portrait", "scenario", "style"]
    tpls = resolve_templates(templates or default) if name_list else []
    corpus = corpus_prompts(name_list, tpls, read_lines(phrases) if phrases is not None else ())
    if not corpus:
        raise NamesaeError("the corpus is empty: give --names (and --templates) or --phrases")
    words = search_tokens(tokens, encoder)
    ranked = rank_prompts(corpus, encoder, target, batch=batch)
    searches = [improve_prompt(r.prompt, words, encoder, target, steps=steps, beam=beam,
                               ops=tuple(ops) if ops else ("substitute", "insert"), batch=batch)
                for r in ranked[:improve]]
    record = {"features": list(target.features), "label": target.label, "n_corpus": len(corpus),
              "n_tokens": len(words), "ranked": [vars(r) for r in ranked[:top]],
              "searches": [s.to_dict() for s in searches]}
    paths = [SearchFile("drive", record).save(out / "drive.json"),
             atomic_write_csv(out / "ranking.csv", [vars(r) for r in ranked], ["prompt", "activation"])]
    return DriveRun(target, ranked, searches, len(corpus), paths)


def run_cancel(text: TextSource, features: FeatureSource, feature_ids: str, prompt: str, out: Path,
               tokens: Path | None = None, steps: int = 1, positions: str = "end", min_rest_cosine: float = 0.9,
               top: int = 10) -> CancelRun:
    """Additions to `prompt` that suppress the features while keeping the rest of the embedding close; writes
    cancel.json and cancel.csv into `out`."""
    from namesae.search.cancel import find_cancellers

    encoder = text.encoder()
    target = features.target(feature_ids, encoder)
    result = find_cancellers(prompt, search_tokens(tokens, encoder), encoder, target, steps=steps,
                             positions=positions, min_rest_cosine=min_rest_cosine, top=top)
    fields = ["addition", "prompt", "activation", "drop", "drop_fraction", "cosine", "rest_cosine"]
    paths = [SearchFile("cancel", {"features": list(target.features), "label": target.label,
                                   **result.to_dict()}).save(out / "cancel.json"),
             atomic_write_csv(out / "cancel.csv", [vars(a) for a in result.ranked], fields)]
    return CancelRun(target, result, paths)


def _describe(names: Sequence[str] | None, kind: str | None, prompt: str | None) -> str:
    """A row set in words: "names ['Ada'] & kind image & prompt ~ 'beach'"."""
    return " & ".join(x for x in (f"names {names}" if names else "", f"kind {kind}" if kind else "",
                                  f"prompt ~ {prompt!r}" if prompt else "") if x)


def run_contrast(features: FeatureSource, store: Path, out: Path, a_name: Sequence[str] | None = None,
                 a_kind: str | None = None, a_prompt: str | None = None, b_name: Sequence[str] | None = None,
                 b_kind: str | None = None, b_prompt: str | None = None, top: int = 50, n_boot: int = 1000,
                 ci: float = 0.95, seed: int = 0) -> ContrastRun:
    """Features ranked by effect size (Cohen's d, bootstrap CI) between two row sets of `store`; writes
    contrast.json and contrast.csv into `out`."""
    from namesae.devices import resolve_device
    from namesae.features import same_encoder
    from namesae.search.contrast import contrast_store, select_rows
    from namesae.store import EmbeddingStore

    resolve_device(features.device)
    if not 0 < ci < 1:
        raise NamesaeError(f"--ci must be in (0, 1), got {ci}")
    if not (a_name or a_kind or a_prompt) or not (b_name or b_kind or b_prompt):
        raise NamesaeError("define both sets: --a-name/--a-kind/--a-prompt and --b-name/--b-kind/--b-prompt")
    codes, d_sae, space, labels = features.codes()
    with EmbeddingStore.open(store) as s:
        if space is not None and not same_encoder(space, s.space):
            raise SpaceMismatchError(f"store {store} ({s.space}) is not in the SAE's space ({space})")
        rows_a = select_rows(s, a_name, a_kind, a_prompt)
        rows_b = select_rows(s, b_name, b_kind, b_prompt)
        desc = [_describe(a_name, a_kind, a_prompt), _describe(b_name, b_kind, b_prompt)]
        result = contrast_store(codes, s, rows_a, rows_b, d_sae, top=top, n_boot=n_boot, ci=ci, seed=seed,
                                label_a=desc[0], label_b=desc[1])
    rows = [{**vars(r), **({"label": labels[r.feature]} if labels else {})} for r in result.rows]
    fields = ["feature", *(["label"] if labels else []), "mean_a", "mean_b", "diff", "cohen_d", "ci_low", "ci_high",
              "active_a", "active_b"]
    paths = [SearchFile("contrast", {"store": str(store), **result.to_dict(), "rows": rows}).save(out / "contrast.json"),
             atomic_write_csv(out / "contrast.csv", rows, fields)]
    return ContrastRun(result, (desc[0], desc[1]), rows, bool(labels), paths)
