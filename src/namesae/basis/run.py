"""`namesae basis vocab | paint | pairs | axes` as library calls: each writes its files and returns them.

The text encoder is handed in (`namesae.inputs.TextInputs`: a model, or a synthetic world's toy encoder whose
names are then the default vocabulary), so the basis never imports the world.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from namesae.basis.result import BasisFile
from namesae.basis.targets import TargetSpec, check_same_encoder
from namesae.basis.vocabulary import Vocabulary
from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.io import atomic_write_csv

R = TypeVar("R")


class TextSource(Protocol):
    """The text side a basis command is handed (`namesae.inputs.TextInputs`)."""

    def encoder(self) -> Any:
        """Load the text encoder."""

    def world_names(self, kind: str) -> list[str]:
        """Default names of one kind (a synthetic world's; none otherwise)."""


@dataclass(frozen=True)
class BasisRun(Generic[R]):
    """What a basis command made: its result, the record written as JSON, the files, and (paint, pairs) where
    the target came from."""

    result: R
    record: dict[str, Any]
    paths: list[Path]
    target: str | None = None


@dataclass(frozen=True)
class VocabRun:
    """What `run_vocab` made: the vocabulary, the store it was cached in and its terms of each kind."""

    vocabulary: Vocabulary
    path: Path
    counts: dict[str, int]


def run_vocab(text: TextSource, out: Path, first: Path | None = None, last: Path | None = None,
              full: Path | None = None, first_top: int | None = None, last_top: int | None = None,
              phrases: Path | None = None, template: str = "a photo of {name}",
              filler: str = "a person") -> VocabRun:
    """Embed a vocabulary (first names, surnames, full names from files and the shipped lists, default: the
    world's first names and surnames; attribute phrases) in `template` and cache it as store `out`."""
    from namesae.basis.vocabulary import DEFAULT_PHRASES, build_vocabulary, write_vocabulary
    from namesae.names import builtin_names, check_template, load_names, read_lines

    check_template(template)
    terms: dict[str, list[str]] = {"first": [], "last": [], "full": []}
    for kind, path in (("first", first), ("last", last), ("full", full)):
        if path is not None:
            terms[kind] += load_names(path)
    if first_top:
        terms["first"] += builtin_names("first", top=first_top)
    if last_top:
        terms["last"] += builtin_names("surnames", top=last_top)
    if not any(terms.values()):
        terms["first"], terms["last"] = text.world_names("first"), text.world_names("last")
    terms = {k: list(dict.fromkeys(v)) for k, v in terms.items() if v}
    terms["phrase"] = read_lines(phrases) if phrases is not None else list(DEFAULT_PHRASES)
    encoder = text.encoder()
    voc = build_vocabulary(encoder, terms, template, filler)
    path = write_vocabulary(voc, out, normalized=encoder.normalized)
    counts = {k: sum(x == k for x in voc.kinds) for k in ("first", "last", "full", "phrase")}
    return VocabRun(voc, path, counts)


def _vocab_and_target(text: TextSource, vocab: Path, target: TargetSpec) -> tuple[Vocabulary, Any, Any, str]:
    """The vocabulary (read first: no encoder loads for a missing one), the encoder, the target and its words."""
    from namesae.basis.vocabulary import read_vocabulary

    voc = read_vocabulary(vocab)
    encoder = text.encoder()
    check_same_encoder(f"vocabulary {vocab}", voc.space, encoder)
    embedding, what = target.resolve(encoder)
    return voc, encoder, embedding, what


def run_paint(text: TextSource, vocab: Path, target: TargetSpec, out: Path, k: int = 4,
              exclude: Sequence[str] = (), choose: str = "reencoded") -> BasisRun[Any]:
    """Paint the target as at most `k` terms of the vocabulary, re-encoded; writes paint.json and paint.csv (the
    greedy path) into `out`."""
    from namesae.basis.paint import paint

    voc, encoder, embedding, what = _vocab_and_target(text, vocab, target)
    result = paint(embedding, voc, encoder, k=k, exclude=exclude, choose=choose)
    record = {"target": what, "vocab": str(vocab), "k": k, "exclude": list(exclude), **result.to_dict()}
    paths = [BasisFile("paint", record).save(out / "paint.json"),
             atomic_write_csv(out / "paint.csv", [vars(s) for s in result.path],
                              ["n_terms", "prompt", "cosine", "reencoded_cosine", "reencoded_centered_cosine"])]
    return BasisRun(result, record, paths, what)


def run_pairs(text: TextSource, vocab: Path, target: TargetSpec, out: Path, top: int = 10, reencode: int = 50,
              exclude: Sequence[str] = ()) -> BasisRun[Any]:
    """The best (first name, surname) pairs for the target, the best `reencode` re-encoded and re-ranked; writes
    pairs.json and pairs.csv into `out`."""
    from namesae.basis.paint import best_pairs

    voc, encoder, embedding, what = _vocab_and_target(text, vocab, target)
    result = best_pairs(embedding, voc, encoder, top=top, reencode=reencode, exclude=exclude)
    record = {"target": what, "vocab": str(vocab), **result.to_dict()}
    paths = [BasisFile("pairs", record).save(out / "pairs.json"),
             atomic_write_csv(out / "pairs.csv", [vars(p) for p in result.pairs],
                              ["first", "last", "prompt", "predicted_centered_cosine", "reencoded_cosine",
                               "reencoded_centered_cosine"])]
    return BasisRun(result, record, paths, what)


def run_axes(store: Path, out: Path, names: Path | None = None, kind: str | None = None, n_axes: int = 8,
             vocab: Path | None = None, walk: Sequence[int] = (), steps: int = 9, span: float = 2.0,
             top: int = 3, device: str = "cpu") -> BasisRun[Any]:
    """PCA axes over the full names of `store` (one mean per name), every name's coordinates, and walks along
    axes `walk` naming the nearest first names and surnames of `vocab`; writes axes.json and axes.csv. `device`
    is checked and accepted so one --device fits every command (the PCA runs in numpy on the CPU)."""
    from namesae.basis.axes import fit_name_axes, walk_axis
    from namesae.basis.vocabulary import read_vocabulary
    from namesae.devices import resolve_device
    from namesae.features import same_encoder
    from namesae.names import read_lines
    from namesae.store import EmbeddingStore

    resolve_device(device)
    if walk and vocab is None:
        raise NamesaeError("--walk needs --vocab (a vocabulary with first names and surnames)")
    with EmbeddingStore.open(store) as s:
        index = s.name_index()
        wanted = read_lines(names) if names is not None else [n for n in index if " " in n.strip()]
        missing = [n for n in wanted if n not in index]
        if missing:
            raise NamesaeError(f"{store}: names {missing[:5]} have no rows")
        kinds = s.kinds
        means = []
        for n in wanted:
            rows = index[n] if kind is None else index[n][kinds[index[n]] == kind]
            if len(rows) == 0:
                raise NamesaeError(f"{store}: name {n!r} has no rows of kind {kind!r}")
            means.append(s.read_rows(rows).mean(0))
        space = s.space
    result = fit_name_axes(np.stack(means) if means else np.zeros((0, 1)), wanted, n_axes)
    record: dict[str, Any] = {"store": str(store), "n_names": len(wanted), "explained": result.explained,
                              "scale": result.scale, "walks": []}
    if walk:
        voc = read_vocabulary(vocab)
        if not same_encoder(voc.space, space):
            raise SpaceMismatchError(f"vocabulary {vocab} ({voc.space}) and store {store} ({space}) come from "
                                     f"different encoders")
        for a in walk:
            record["walks"].append({"axis": a, "steps": [vars(st) for st in walk_axis(result, a, voc, span, steps,
                                                                                       top)]})
    rows = [{"name": n, **{f"axis_{i}": float(c) for i, c in enumerate(result.coords[j])}}
            for j, n in enumerate(wanted)]
    record = {**record, "coordinates": rows}
    paths = [BasisFile("axes", record).save(out / "axes.json"),
             atomic_write_csv(out / "axes.csv", rows, ["name", *[f"axis_{i}" for i in range(len(result.axes))]])]
    return BasisRun(result, record, paths)
