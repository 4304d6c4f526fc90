"""`namesae basis`: paint a target from name parts and phrases, best (first, surname) pairs, name axes, scoring.

Sub-commands: vocab (embed and cache a vocabulary), paint, pairs, axes, score (on a synthetic world). Each calls
one function of `namesae.basis.run` (score: `namesae.synth.score.basis`); the encoder options are shared with
`namesae search`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import (
    MODEL,
    PRETRAINED,
    WORLD,
    WORLD_FOLDER,
    WORLD_HELP,
    device_option,
    out_folder,
    wrote,
)

basis = typer.Typer(
    help="Name basis: paint an identity as a short prompt of name parts and attribute phrases (sparse "
         "non-negative OMP, re-encoded honestly), best (first, surname) pairs, PCA name axes.",
    no_args_is_help=True,
)

TEXT_DEVICE = "for the text encoder (--model; the toy encoder of --world runs on the CPU)"

# The target options of paint and pairs (one definition each).
STORE = typer.Option(None, "--store", help="Store holding the target (with --name or --row).")
NAME = typer.Option(None, "--name", help="Target: the mean embedding of this name's rows in --store.")
ROW = typer.Option(None, "--row", help="Target: one row of --store.")
KIND = typer.Option(None, "--kind", help="With --name: only rows of this kind (text or image).")
PROMPT = typer.Option(None, "--prompt", help="Target: this prompt, encoded.")
IMAGE = typer.Option(None, "--image", help="Target: this image file, encoded by --model's image tower.")
EMBEDDING = typer.Option(None, "--embedding", help="Target: an embedding file (.safetensors, e.g. steer's "
                         "embeddings.safetensors, or a .json list).")
TENSOR = typer.Option(None, "--tensor", help="With --embedding: the tensor (default 'edited').")
EMBEDDING_ROW = typer.Option(None, "--embedding-row", help="With --embedding: one row (default: mean).")


# ---- vocab ---------------------------------------------------------------------------------------------------
@basis.command("vocab")
def vocab(
    out: Path = typer.Option(..., "--out", help="Vocabulary store to write (HDF5; reused by paint/pairs/axes)."),
    model: str = MODEL, pretrained: str = PRETRAINED,
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
    device: str = device_option(TEXT_DEVICE),
    dtype: str = typer.Option("float32", "--dtype", help="Encoder precision: float32, float16, bfloat16."),
) -> None:
    """Embed a basis vocabulary once (first names, surnames, full names, attribute phrases, each in the
    template) with the encoder that will re-encode the paintings, and cache it as a store."""
    from namesae.basis.run import run_vocab
    from namesae.inputs import TextInputs

    done = run_vocab(TextInputs(model, pretrained, world, device, dtype), out, first=first, last=last, full=full,
                     first_top=first_top, last_top=last_top, phrases=phrases, template=template, filler=filler)
    typer.echo(f"basis vocab: {len(done.vocabulary)} terms {done.counts} in space {done.vocabulary.space}")
    wrote([done.path], "vocab")


# ---- paint / pairs -------------------------------------------------------------------------------------------
@basis.command("paint")
def paint(
    vocab: Path = typer.Option(..., "--vocab", help="Vocabulary store written by `namesae basis vocab`."),
    out: Path = out_folder("paint.json and paint.csv (the greedy path)"),
    model: str = MODEL, pretrained: str = PRETRAINED, world: Path = WORLD,
    store: Path = STORE, name: str = NAME, row: int = ROW, kind: str = KIND, prompt: str = PROMPT,
    image: Path = IMAGE, embedding: Path = EMBEDDING, tensor: str = TENSOR, embedding_row: int = EMBEDDING_ROW,
    k: int = typer.Option(4, "--k", help="At most this many terms."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Repeatable: terms the painting may not use (e.g. "
                                      "the target's own first name and surname)."),
    choose: str = typer.Option("reencoded", "--choose", help="reencoded: the step of the greedy path whose "
                               "re-encoded prompt is closest to the target; full: every chosen term."),
    device: str = device_option(TEXT_DEVICE),
) -> None:
    """Paint a target as at most K terms (non-negative OMP over the vocabulary's offsets from the bare template),
    render it as a prompt ("a photo of Vicki Sullivan, elderly"), re-encode it and report both cosines."""
    from namesae.basis.run import run_paint
    from namesae.basis.targets import TargetSpec
    from namesae.inputs import TextInputs

    target = TargetSpec(store, name, row, kind, prompt, image, embedding, tensor, embedding_row)
    done = run_paint(TextInputs(model, pretrained, world, device), vocab, target, out, k=k,
                     exclude=exclude or (), choose=choose)
    result = done.result
    typer.echo(f"target: {done.target}")
    typer.echo(f"painting: {result.prompt!r}  terms: " +
               ", ".join(f"{t.term} ({t.kind}, {t.weight:.3f})" for t in result.terms))
    typer.echo(f"cosine: combination {result.cosine:.4f} (centered {result.centered_cosine:.4f}); re-encoded "
               f"{result.reencoded_cosine:.4f} (centered {result.reencoded_centered_cosine:.4f})")
    wrote(done.paths, "basis.paint")


@basis.command("pairs")
def pairs(
    vocab: Path = typer.Option(..., "--vocab", help="Vocabulary store with first names and surnames."),
    out: Path = out_folder("pairs.json and pairs.csv"),
    model: str = MODEL, pretrained: str = PRETRAINED, world: Path = WORLD,
    store: Path = STORE, name: str = NAME, row: int = ROW, kind: str = KIND, prompt: str = PROMPT,
    image: Path = IMAGE, embedding: Path = EMBEDDING, tensor: str = TENSOR, embedding_row: int = EMBEDDING_ROW,
    top: int = typer.Option(10, "--top", help="Pairs to report."),
    reencode: int = typer.Option(50, "--reencode", help="Best predicted pairs to re-encode and re-rank."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Repeatable: names or 'First Last' pairs to skip."),
    device: str = device_option(TEXT_DEVICE),
) -> None:
    """The best (first name, surname) pairs for a target: the whole grid scored in batches (additive model,
    cosine orthogonal to the bare template), the best re-encoded as "a photo of First Last" and re-ranked."""
    from namesae.basis.run import run_pairs
    from namesae.basis.targets import TargetSpec
    from namesae.inputs import TextInputs

    target = TargetSpec(store, name, row, kind, prompt, image, embedding, tensor, embedding_row)
    done = run_pairs(TextInputs(model, pretrained, world, device), vocab, target, out, top=top,
                     reencode=reencode, exclude=exclude or ())
    typer.echo(f"target: {done.target}; {done.result.n_scored} pairs scored")
    for p in done.result.pairs[:5]:
        typer.echo(f"  {p.first} {p.last}: re-encoded {p.reencoded_cosine:.4f} "
                   f"(predicted centered {p.predicted_centered_cosine:.4f})")
    wrote(done.paths, "basis.pairs")


# ---- axes ----------------------------------------------------------------------------------------------------
@basis.command("axes")
def axes(
    store: Path = typer.Option(..., "--store", help="Store with rows of well-known full names (one mean per name)."),
    out: Path = out_folder("axes.json and axes.csv (coordinates)"),
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
    from namesae.basis.run import run_axes

    done = run_axes(store, out, names=names, kind=kind, n_axes=n_axes, vocab=vocab, walk=walk or (), steps=steps,
                    span=span, top=top, device=device)
    typer.echo(f"axes: {len(done.result.axes)} axes over {done.record['n_names']} names; explained variance "
               + ", ".join(f"{e:.3f}" for e in done.result.explained))
    for w in done.record["walks"]:
        ends = w["steps"][0]["nearest"], w["steps"][-1]["nearest"]
        typer.echo(f"  axis {w['axis']}: " + " ... ".join(
            "/".join(t for t, _ in e.get("first", [])[:2]) + " " + "/".join(t for t, _ in e.get("last", [])[:2])
            for e in ends))
    wrote(done.paths, "basis.axes")


# ---- score on a synthetic world ------------------------------------------------------------------------------
@basis.command("score")
def score(
    world: Path = WORLD_FOLDER,
    out: Path = out_folder("basis_score.json"),
    k: int = typer.Option(4, "--k", help="At most this many terms per painting."),
    target: str = typer.Option("text", "--target", help="text: each full name's text row; image: the mean of "
                               "its image rows."),
    device: str = device_option("(checked and accepted so one --device fits every command; the toy "
                                "encoder and the fits run on the CPU)"),
) -> None:
    """Paint every full name of a synthetic world from other names' parts and phrases (toy encoder): compositional
    names should be painted well (high re-encoded cosine), dedicated names poorly. Writes basis_score.json."""
    from namesae.synth.score.basis import run_basis_score

    result, path = run_basis_score(world, out, k=k, target=target, device=device)
    c, d = result["compositional"], result["dedicated"]
    if result["auc"] is None:
        typer.echo(f"basis score: {result['n_compositional']} compositional and {result['n_dedicated']} dedicated "
                   f"names; both kinds are needed for a gap")
    else:
        typer.echo(f"basis score ({target} targets, k={k}): re-encoded cosine compositional "
                   f"{c['reencoded_cosine']:.4f} vs dedicated {d['reencoded_cosine']:.4f} (centered "
                   f"{c['reencoded_centered_cosine']:.4f} vs {d['reencoded_centered_cosine']:.4f}); AUC "
                   f"{result['auc']:.3f}, Mann-Whitney p {result['mannwhitney_p']:.2g}")
    wrote([path], "basis.score")
