"""`namesae basis`: paint a target from name parts and phrases, best (first, surname) pairs, name axes, scoring.

Sub-commands: vocab (embed and cache a vocabulary), paint, pairs, axes, score (on a synthetic world).
The helpers here (encoder and target options) are shared with `namesae search`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from namesae.cli.options import device_option

basis = typer.Typer(
    help="Name basis: paint an identity as a short prompt of name parts and attribute phrases (sparse "
         "non-negative OMP, re-encoded honestly), best (first, surname) pairs, PCA name axes.",
    no_args_is_help=True,
)

MODEL_HELP = ("open_clip model (ViT-H-14, ViT-bigG-14, ...) or a tiny offline model; must be the encoder of the "
              "vocabulary and of the target's store.")
WORLD_HELP = "A synthetic world folder (`namesae synth`): use its toy text encoder instead of --model."


# ---- shared helpers ------------------------------------------------------------------------------------------
def load_text_encoder(model: str | None, pretrained: str | None, world: Path | None, device: str = "cpu",
                      dtype: str = "float32") -> Any:
    """The text encoder of the command line: a world's toy encoder (--world) or an open_clip model (--model);
    `device` is checked first, also for the toy encoder (which runs on the CPU)."""
    from namesae.devices import resolve_device
    from namesae.errors import NamesaeError

    device = resolve_device(device)
    if (model is None) == (world is None):
        raise NamesaeError("give exactly one of --model (an open_clip or tiny model) or --world (a synthetic "
                           "world's toy encoder)")
    if world is not None:
        from namesae.synth.toy_encoder import load_toy_encoder

        return load_toy_encoder(world)
    from namesae.encoders import load_encoder

    return load_encoder(model, pretrained, device=device, dtype=dtype)


def check_same_encoder(what: str, space: str, encoder: Any) -> None:
    """Refuse an artefact embedded by another encoder than the one loaded (modality may differ)."""
    from namesae.errors import SpaceMismatchError
    from namesae.features import same_encoder

    if not same_encoder(space, encoder.space("text")):
        raise SpaceMismatchError(f"{what} lives in space {space!r} but the encoder writes "
                                 f"{encoder.space('text')!r}; use the encoder that embedded it")


def resolve_target(encoder: Any, store: Path | None = None, name: str | None = None, row: int | None = None,
                   kind: str | None = None, prompt: str | None = None, image: Path | None = None,
                   embedding: Path | None = None, tensor: str | None = None,
                   embedding_row: int | None = None) -> tuple[Any, str]:
    """The target embedding [d] and a description, from exactly one of: a name's mean (or a row) of a store, a
    prompt, an image file, or an embedding file (.safetensors, e.g. steer's embeddings.safetensors, or .json)."""
    from namesae.errors import NamesaeError

    given = [k for k, v in (("--name", name), ("--row", row), ("--prompt", prompt), ("--image", image),
                            ("--embedding", embedding)) if v is not None]
    if len(given) != 1:
        raise NamesaeError(f"give exactly one target: --name or --row (with --store), --prompt, --image or "
                           f"--embedding; got {given or 'none'}")
    if name is not None or row is not None:
        if store is None:
            raise NamesaeError(f"{given[0]} needs --store (the store holding the target's rows)")
        from namesae.store import EmbeddingStore

        with EmbeddingStore.open(store) as s:
            check_same_encoder(f"store {store}", s.space, encoder)
            if row is not None:
                if not 0 <= row < len(s):
                    raise NamesaeError(f"{store}: --row {row} is out of range (0..{len(s) - 1})")
                return s.read_rows([row])[0], f"row {row} of {store} ({s.names[row]!r}: {s.prompts[row]!r})"
            rows = s.select(kind=kind, names=[name])
            if len(rows) == 0:
                raise NamesaeError(f"{store}: no rows of name {name!r}" + (f" of kind {kind!r}" if kind else ""))
            return s.read_rows(rows).mean(0), f"mean of {len(rows)} rows of {name!r} in {store}"
    if prompt is not None:
        return encoder.encode_text([prompt])[0], f"prompt {prompt!r}"
    if image is not None:
        if not hasattr(encoder, "encode_images"):
            raise NamesaeError("--image needs an encoder with an image tower (--model); the toy encoder is text only")
        return encoder.encode_images([image])[0], f"image {image}"
    return _embedding_file(embedding, tensor, embedding_row), f"embedding {embedding}"


def _embedding_file(path: Path, tensor: str | None, row: int | None) -> Any:
    import numpy as np

    from namesae.errors import NamesaeError

    if not path.is_file():
        raise NamesaeError(f"{path}: embedding file not found")
    if path.suffix == ".json":
        try:
            x = np.asarray(json.loads(path.read_text(encoding="utf-8")), dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise NamesaeError(f"{path}: not a JSON list of numbers ({err})") from None
    elif path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise NamesaeError(f"{path}: not a readable safetensors file ({err})") from None
        key = tensor or ("edited" if "edited" in tensors else next(iter(tensors)) if len(tensors) == 1 else None)
        if key not in tensors:
            raise NamesaeError(f"{path}: pick a tensor with --tensor, one of {sorted(tensors)}")
        x = tensors[key].astype(np.float32)
    else:
        raise NamesaeError(f"{path}: use a .safetensors or .json embedding file")
    if x.ndim == 2:
        if row is not None:
            if not 0 <= row < len(x):
                raise NamesaeError(f"{path}: --embedding-row {row} is out of range (0..{len(x) - 1})")
            x = x[row]
        else:
            x = x.mean(0)  # rows of one steered embedding (one per seed) are averaged
    if x.ndim != 1:
        raise NamesaeError(f"{path}: expected one embedding [d] or rows [n, d], got shape {tuple(x.shape)}")
    return x


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (`namesae.io.atomic_write_json`)."""
    from namesae.io import atomic_write_json

    return atomic_write_json(path, data)


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Path:
    """Write a CSV table atomically (fields in the given order)."""
    from namesae.io import atomic_write_text, csv_text

    return atomic_write_text(path, csv_text(rows, fields))


def read_lines(path: Path) -> list[str]:
    """Non-empty lines of a text file, '#' comments skipped (names and phrases lists)."""
    from namesae.errors import NamesaeError

    if not path.is_file():
        raise NamesaeError(f"{path}: file not found")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()
            and not ln.lstrip().startswith("#")]


# ---- vocab ---------------------------------------------------------------------------------------------------
@basis.command("vocab")
def vocab(
    out: Path = typer.Option(..., "--out", help="Vocabulary store to write (HDF5; reused by paint/pairs/axes)."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag or checkpoint (seed<N> for tiny)."),
    world: Path = typer.Option(None, "--world", help=WORLD_HELP + " Default terms: its first names and surnames."),
    first: Path = typer.Option(None, "--first", help="First names, one per line (or .csv/.json name list)."),
    last: Path = typer.Option(None, "--surnames", help="Surnames, one per line (or .csv/.json name list)."),
    full: Path = typer.Option(None, "--full", help="Full names, one per line (or .csv/.json name list)."),
    first_top: int = typer.Option(None, "--first-top", help="Add the shipped US first names of rank <= N."),
    last_top: int = typer.Option(None, "--surnames-top", help="Add the N most common shipped US surnames."),
    phrases: Path = typer.Option(None, "--phrases", help="Attribute phrases, one per line (default: the "
                                 "built-in age/gender/ethnicity/hair/body/glasses/expression phrases)."),
    template: str = typer.Option("a photo of {name}", "--template", help="Template the terms are embedded in."),
    filler: str = typer.Option("a person", "--filler", help="Fills the template for phrases and the reference."),
    device: str = device_option("for the text encoder (--model; the toy encoder of --world runs on the CPU)"),
    dtype: str = typer.Option("float32", "--dtype", help="Encoder precision: float32, float16, bfloat16."),
) -> None:
    """Embed a basis vocabulary once (first names, surnames, full names, attribute phrases, each in the
    template) with the encoder that will re-encode the paintings, and cache it as a store."""
    from namesae.basis import DEFAULT_PHRASES, build_vocabulary, write_vocabulary
    from namesae.names import builtin_names, check_template, load_names

    check_template(template)
    terms: dict[str, list[str]] = {"first": [], "last": [], "full": []}
    for kind, path in (("first", first), ("last", last), ("full", full)):
        if path is not None:
            terms[kind] += load_names(path)
    if first_top:
        terms["first"] += builtin_names("first", top=first_top)
    if last_top:
        terms["last"] += builtin_names("surnames", top=last_top)
    if world is not None and not any(terms.values()):
        from namesae.synth import load_truth

        recs = load_truth(world)["names"]
        terms["first"] = [r["name"] for r in recs if r["kind"] == "first"]
        terms["last"] = [r["name"] for r in recs if r["kind"] == "last"]
    terms = {k: list(dict.fromkeys(v)) for k, v in terms.items() if v}
    terms["phrase"] = read_lines(phrases) if phrases is not None else list(DEFAULT_PHRASES)
    encoder = load_text_encoder(model, pretrained, world, device, dtype)
    voc = build_vocabulary(encoder, terms, template, filler)
    path = write_vocabulary(voc, out, normalized=encoder.normalized)
    counts = {k: sum(x == k for x in voc.kinds) for k in ("first", "last", "full", "phrase")}
    typer.echo(f"basis vocab: {len(voc)} terms {counts} in space {voc.space}")
    from namesae.cli.options import record

    record(next((p for p in [path] if str(p).endswith(".json")), path), "vocab")
    typer.echo(f"wrote {path}")


# ---- paint / pairs -------------------------------------------------------------------------------------------
@basis.command("paint")
def paint(
    vocab: Path = typer.Option(..., "--vocab", help="Vocabulary store written by `namesae basis vocab`."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for paint.json and paint.csv (the greedy path)."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag or checkpoint (seed<N> for tiny)."),
    world: Path = typer.Option(None, "--world", help=WORLD_HELP),
    store: Path = typer.Option(None, "--store", help="Store holding the target (with --name or --row)."),
    name: str = typer.Option(None, "--name", help="Target: the mean embedding of this name's rows in --store."),
    row: int = typer.Option(None, "--row", help="Target: one row of --store."),
    kind: str = typer.Option(None, "--kind", help="With --name: only rows of this kind (text or image)."),
    prompt: str = typer.Option(None, "--prompt", help="Target: this prompt, encoded."),
    image: Path = typer.Option(None, "--image", help="Target: this image file, encoded by --model's image tower."),
    embedding: Path = typer.Option(None, "--embedding", help="Target: an embedding file (.safetensors, e.g. "
                                   "steer's embeddings.safetensors, or a .json list)."),
    tensor: str = typer.Option(None, "--tensor", help="With --embedding: the tensor (default 'edited')."),
    embedding_row: int = typer.Option(None, "--embedding-row", help="With --embedding: one row (default: mean)."),
    k: int = typer.Option(4, "--k", help="At most this many terms."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Repeatable: terms the painting may not use (e.g. "
                                      "the target's own first name and surname)."),
    choose: str = typer.Option("reencoded", "--choose", help="reencoded: the step of the greedy path whose "
                               "re-encoded prompt is closest to the target; full: every chosen term."),
    device: str = device_option("for the text encoder (--model; the toy encoder of --world runs on the CPU)"),
) -> None:
    """Paint a target as at most K terms (non-negative OMP over the vocabulary's offsets from the bare template),
    render it as a prompt ("a photo of Vicki Sullivan, elderly"), re-encode it and report both cosines."""
    from namesae.basis import paint as paint_target
    from namesae.basis import read_vocabulary

    voc = read_vocabulary(vocab)
    encoder = load_text_encoder(model, pretrained, world, device)
    check_same_encoder(f"vocabulary {vocab}", voc.space, encoder)
    target, what = resolve_target(encoder, store, name, row, kind, prompt, image, embedding, tensor, embedding_row)
    result = paint_target(target, voc, encoder, k=k, exclude=exclude or (), choose=choose)
    record = {"target": what, "vocab": str(vocab), "k": k, "exclude": exclude or [], **result.to_dict()}
    paths = [write_json(out / "paint.json", record),
             write_csv(out / "paint.csv", [vars(s) for s in result.path],
                       ["n_terms", "prompt", "cosine", "reencoded_cosine", "reencoded_centered_cosine"])]
    typer.echo(f"target: {what}")
    typer.echo(f"painting: {result.prompt!r}  terms: " +
               ", ".join(f"{t.term} ({t.kind}, {t.weight:.3f})" for t in result.terms))
    typer.echo(f"cosine: combination {result.cosine:.4f} (centered {result.centered_cosine:.4f}); re-encoded "
               f"{result.reencoded_cosine:.4f} (centered {result.reencoded_centered_cosine:.4f})")
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "basis.paint")
    for path in paths:
        typer.echo(f"wrote {path}")


@basis.command("pairs")
def pairs(
    vocab: Path = typer.Option(..., "--vocab", help="Vocabulary store with first names and surnames."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for pairs.json and pairs.csv."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag or checkpoint (seed<N> for tiny)."),
    world: Path = typer.Option(None, "--world", help=WORLD_HELP),
    store: Path = typer.Option(None, "--store", help="Store holding the target (with --name or --row)."),
    name: str = typer.Option(None, "--name", help="Target: the mean embedding of this name's rows in --store."),
    row: int = typer.Option(None, "--row", help="Target: one row of --store."),
    kind: str = typer.Option(None, "--kind", help="With --name: only rows of this kind (text or image)."),
    prompt: str = typer.Option(None, "--prompt", help="Target: this prompt, encoded."),
    image: Path = typer.Option(None, "--image", help="Target: this image file, encoded by --model's image tower."),
    embedding: Path = typer.Option(None, "--embedding", help="Target: an embedding file (.safetensors or .json)."),
    tensor: str = typer.Option(None, "--tensor", help="With --embedding: the tensor (default 'edited')."),
    embedding_row: int = typer.Option(None, "--embedding-row", help="With --embedding: one row (default: mean)."),
    top: int = typer.Option(10, "--top", help="Pairs to report."),
    reencode: int = typer.Option(50, "--reencode", help="Best predicted pairs to re-encode and re-rank."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Repeatable: names or 'First Last' pairs to skip."),
    device: str = device_option("for the text encoder (--model; the toy encoder of --world runs on the CPU)"),
) -> None:
    """The best (first name, surname) pairs for a target: the whole grid scored in batches (additive model,
    cosine orthogonal to the bare template), the best re-encoded as "a photo of First Last" and re-ranked."""
    from namesae.basis import best_pairs, read_vocabulary

    voc = read_vocabulary(vocab)
    encoder = load_text_encoder(model, pretrained, world, device)
    check_same_encoder(f"vocabulary {vocab}", voc.space, encoder)
    target, what = resolve_target(encoder, store, name, row, kind, prompt, image, embedding, tensor, embedding_row)
    result = best_pairs(target, voc, encoder, top=top, reencode=reencode, exclude=exclude or ())
    rows = [vars(p) for p in result.pairs]
    paths = [write_json(out / "pairs.json", {"target": what, "vocab": str(vocab), **result.to_dict()}),
             write_csv(out / "pairs.csv", rows, ["first", "last", "prompt", "predicted_centered_cosine",
                                                 "reencoded_cosine", "reencoded_centered_cosine"])]
    typer.echo(f"target: {what}; {result.n_scored} pairs scored")
    for p in result.pairs[:5]:
        typer.echo(f"  {p.first} {p.last}: re-encoded {p.reencoded_cosine:.4f} "
                   f"(predicted centered {p.predicted_centered_cosine:.4f})")
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "basis.pairs")
    for path in paths:
        typer.echo(f"wrote {path}")


# ---- axes ----------------------------------------------------------------------------------------------------
@basis.command("axes")
def axes(
    store: Path = typer.Option(..., "--store", help="Store with rows of well-known full names (one mean per name)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for axes.json and axes.csv (coordinates)."),
    names: Path = typer.Option(None, "--names", help="Only these names of the store (one per line); default: "
                               "every name with a space in it (full names)."),
    kind: str = typer.Option(None, "--kind", help="Only rows of this kind (text or image)."),
    n_axes: int = typer.Option(8, "--n-axes", help="Number of PCA axes."),
    vocab: Path = typer.Option(None, "--vocab", help="Vocabulary store (first names, surnames) for --walk."),
    walk: list[int] = typer.Option(None, "--walk", help="Repeatable: walk along this axis (needs --vocab)."),
    steps: int = typer.Option(9, "--steps", help="Points of a walk."),
    span: float = typer.Option(2.0, "--span", help="A walk goes from -span to +span standard deviations."),
    top: int = typer.Option(3, "--top", help="Nearest first names / surnames per point."),
    device: str = device_option("(checked and accepted so one --device fits every command; the PCA "
                                "runs in numpy on the CPU)"),
) -> None:
    """PCA axes over full-name embeddings, every name's coordinates, and walks along axes reporting the first
    names and surnames nearest each step (which name parts move along an axis)."""
    import numpy as np

    from namesae.basis import fit_name_axes, read_vocabulary, walk_axis
    from namesae.devices import resolve_device
    from namesae.errors import NamesaeError, SpaceMismatchError
    from namesae.features import same_encoder
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
    paths = [write_json(out / "axes.json", {**record, "coordinates": rows}),
             write_csv(out / "axes.csv", rows, ["name", *[f"axis_{i}" for i in range(len(result.axes))]])]
    typer.echo(f"axes: {len(result.axes)} axes over {len(wanted)} names; explained variance "
               + ", ".join(f"{e:.3f}" for e in result.explained))
    for w in record["walks"]:
        ends = w["steps"][0]["nearest"], w["steps"][-1]["nearest"]
        typer.echo(f"  axis {w['axis']}: " + " ... ".join(
            "/".join(t for t, _ in e.get("first", [])[:2]) + " " + "/".join(t for t, _ in e.get("last", [])[:2])
            for e in ends))
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "basis.axes")
    for path in paths:
        typer.echo(f"wrote {path}")


# ---- score on a synthetic world ------------------------------------------------------------------------------
@basis.command("score")
def score(
    world: Path = typer.Option(..., "--world", help="A synthetic world folder (`namesae synth`)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for basis_score.json."),
    k: int = typer.Option(4, "--k", help="At most this many terms per painting."),
    target: str = typer.Option("text", "--target", help="text: each full name's text row; image: the mean of "
                               "its image rows."),
    device: str = device_option("(checked and accepted so one --device fits every command; the toy "
                                "encoder and the fits run on the CPU)"),
) -> None:
    """Paint every full name of a synthetic world from other names' parts and phrases (toy encoder): compositional
    names should be painted well (high re-encoded cosine), dedicated names poorly. Writes basis_score.json."""
    from namesae.devices import resolve_device
    from namesae.synth.score.basis import score_basis_on_world

    resolve_device(device)
    result = score_basis_on_world(world, k=k, target=target)
    path = write_json(out / "basis_score.json", {"world": str(world), **result})
    c, d = result["compositional"], result["dedicated"]
    if result["auc"] is None:
        typer.echo(f"basis score: {result['n_compositional']} compositional and {result['n_dedicated']} dedicated "
                   f"names; both kinds are needed for a gap")
    else:
        typer.echo(f"basis score ({target} targets, k={k}): re-encoded cosine compositional "
                   f"{c['reencoded_cosine']:.4f} vs dedicated {d['reencoded_cosine']:.4f} (centered "
                   f"{c['reencoded_centered_cosine']:.4f} vs {d['reencoded_centered_cosine']:.4f}); AUC "
                   f"{result['auc']:.3f}, Mann-Whitney p {result['mannwhitney_p']:.2g}")
    from namesae.cli.options import record

    record(next((p for p in [path] if str(p).endswith(".json")), path), "basis.score")
    typer.echo(f"wrote {path}")
