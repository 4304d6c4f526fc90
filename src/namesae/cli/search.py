"""`namesae search`: prompts that drive a feature, additions that cancel it, feature contrasts, world scores.

Each sub-command calls one function of `namesae.search.run` (score: `namesae.synth.score.search`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import MODEL, PRETRAINED, WORLD, WORLD_FOLDER, device_option, out_folder, wrote

search = typer.Typer(
    help="Feature search: rank a corpus of prompts by an SAE feature (or group) and improve the best by token "
         "search; find additions that cancel a feature; contrast two row sets of a store.",
    no_args_is_help=True,
)

SAE_HELP = "SAE checkpoint directory (`namesae train`). With --world and no --sae: the world's planted directions."
FEATURES_HELP = ("Feature id(s): '12', or a group '3,4,9' (activations summed). With the planted dictionary also "
                 "labels such as 'scene:beach'.")


SEARCH_DEVICE = "for the text encoder (--model) and the SAE's encoding"
SAE = typer.Option(None, "--sae", help=SAE_HELP)


@search.command("drive")
def drive(
    features: str = typer.Option(..., "--features", help=FEATURES_HELP),
    out: Path = out_folder("drive.json and ranking.csv"),
    sae: Path = SAE, model: str = MODEL, pretrained: str = PRETRAINED, world: Path = WORLD,
    names: Path = typer.Option(None, "--names", help="Corpus names (one per line / .csv / .json); default with "
                               "--world: its full names."),
    templates: list[str] = typer.Option(None, "--templates", "-t", help="Repeatable: a template kind (portrait, "
                                        "scenario, style) or a text with {name}. Default: the world's templates "
                                        "with --world, else portrait, scenario, style."),
    phrases: Path = typer.Option(None, "--phrases", help="More corpus prompts, one per line."),
    tokens: Path = typer.Option(None, "--tokens", help="Search vocabulary: words / phrases to substitute or insert, "
                                "one per line (default with --world: the toy encoder's words)."),
    top: int = typer.Option(20, "--top", help="Ranked prompts to report."),
    improve: int = typer.Option(1, "--improve", help="Improve this many of the best prompts by token search."),
    steps: int = typer.Option(3, "--steps", help="Token-search steps (each one substitution or insertion)."),
    beam: int = typer.Option(1, "--beam", help="Beam width (1 = greedy)."),
    ops: list[str] = typer.Option(None, "--ops", help="Repeatable: substitute, insert (default both)."),
    device: str = device_option(SEARCH_DEVICE),
    batch: int = typer.Option(1024, "--batch", help="Prompts per encoder batch."),
) -> None:
    """What drives a feature: rank every corpus prompt (names x templates, phrases) by the feature's activation
    in one batched pass, then improve the best prompts by greedy/beam token search through the real encoder."""
    from namesae.inputs import FeatureInputs, TextInputs
    from namesae.search.run import run_drive

    done = run_drive(TextInputs(model, pretrained, world, device), FeatureInputs(sae, world, device), features, out,
                     names=names, templates=templates or (), phrases=phrases, tokens=tokens, top=top,
                     improve=improve, steps=steps, beam=beam, ops=ops or (), batch=batch)
    best = done.ranked[0]
    typer.echo(f"features {done.target.label}: {done.n_corpus} prompts ranked; best {best.prompt!r} "
               f"({best.activation:.4f})")
    for s in done.searches:
        typer.echo(f"  {s.start_prompt!r} ({s.start_activation:.4f}) -> {s.best_prompt!r} ({s.best_activation:.4f})")
        for st in s.steps:
            typer.echo(f"    step {st.step}: {st.edit}  +{st.gain:.4f}")
    wrote(done.paths, "search.drive")


@search.command("cancel")
def cancel(
    prompt: str = typer.Option(..., "--prompt", help="The prompt that drags in the unwanted feature."),
    features: str = typer.Option(..., "--features", help=FEATURES_HELP + " The features to suppress."),
    out: Path = out_folder("cancel.json and cancel.csv"),
    sae: Path = SAE, model: str = MODEL, pretrained: str = PRETRAINED, world: Path = WORLD,
    tokens: Path = typer.Option(None, "--tokens", help="Candidate additions (words / phrases), one per line "
                                "(default with --world: the toy encoder's words)."),
    steps: int = typer.Option(1, "--steps", help="Stack up to this many additions (greedy)."),
    positions: str = typer.Option("end", "--positions", help="end: append ', word'; any: also insert at every gap."),
    min_rest_cosine: float = typer.Option(0.9, "--min-rest-cosine", help="Keep only additions whose embedding, "
                                          "with the features' decoder directions projected out, stays this close."),
    top: int = typer.Option(10, "--top", help="Additions to report."),
    device: str = device_option(SEARCH_DEVICE),
) -> None:
    """Anti-patterns: additions to a prompt that suppress an unwanted feature while keeping the rest of the
    embedding close; reports each addition's drop and its cosine to the original embedding."""
    from namesae.inputs import FeatureInputs, TextInputs
    from namesae.search.run import run_cancel

    done = run_cancel(TextInputs(model, pretrained, world, device), FeatureInputs(sae, world, device), features,
                      prompt, out, tokens=tokens, steps=steps, positions=positions,
                      min_rest_cosine=min_rest_cosine, top=top)
    result = done.result
    typer.echo(f"{prompt!r}: features {done.target.label} at {result.activation:.4f}; {result.n_candidates} "
               f"candidates, {result.n_rejected} moved the rest too far")
    for a in result.ranked[:5]:
        typer.echo(f"  + {a.addition!r}: drop {a.drop_fraction:.1%}, cosine {a.cosine:.4f}, rest {a.rest_cosine:.4f}")
    if len(result.path) > 1:
        typer.echo(f"  stacked: {result.path[-1].prompt!r} ({result.path[-1].activation:.4f})")
    wrote(done.paths, "search.cancel")


@search.command("contrast")
def contrast(
    store: Path = typer.Option(..., "--store", help="Store holding both row sets (in the SAE's space)."),
    out: Path = out_folder("contrast.json and contrast.csv"),
    sae: Path = SAE,
    world: Path = typer.Option(None, "--world", help="With no --sae: the world's planted directions."),
    a_name: list[str] = typer.Option(None, "--a-name", help="Repeatable: set A holds rows of these names."),
    a_kind: str = typer.Option(None, "--a-kind", help="Set A: rows of this kind (text or image)."),
    a_prompt: str = typer.Option(None, "--a-prompt", help="Set A: rows whose prompt contains this text."),
    b_name: list[str] = typer.Option(None, "--b-name", help="Repeatable: set B holds rows of these names."),
    b_kind: str = typer.Option(None, "--b-kind", help="Set B: rows of this kind (text or image)."),
    b_prompt: str = typer.Option(None, "--b-prompt", help="Set B: rows whose prompt contains this text."),
    top: int = typer.Option(50, "--top", help="Features to report (ranked by |Cohen's d|)."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CI of d (0: none)."),
    ci: float = typer.Option(0.95, "--ci", help="Confidence level of the bootstrap interval."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    device: str = device_option("for the SAE's encoding (the planted dictionary of --world runs on the CPU)"),
) -> None:
    """Features ranked by effect size between two row sets of a store (two names, two templates, two kinds):
    mean difference, Cohen's d and a bootstrap CI of d."""
    from namesae.inputs import FeatureInputs
    from namesae.search.run import run_contrast

    done = run_contrast(FeatureInputs(sae, world, device), store, out, a_name=a_name, a_kind=a_kind,
                        a_prompt=a_prompt, b_name=b_name, b_kind=b_kind, b_prompt=b_prompt, top=top,
                        n_boot=n_boot, ci=ci, seed=seed)
    (desc_a, desc_b), result = done.descriptions, done.result
    typer.echo(f"contrast: A = {desc_a} ({result.n_a} rows), B = {desc_b} ({result.n_b} rows)")
    for note in result.notes:
        typer.echo(f"note: {note}")
    for r in done.rows[:5]:
        typer.echo(f"  feature {r['feature']}{' ' + r['label'] if done.labelled else ''}: d {r['cohen_d']:+.3f} "
                   f"(diff {r['diff']:+.4f})")
    wrote(done.paths, "search.contrast")


@search.command("score")
def score(
    world: Path = WORLD_FOLDER,
    out: Path = out_folder("search_score.json"),
    sae: Path = typer.Option(None, "--sae", help="An SAE trained on the world (default: the planted directions)."),
    steps: int = typer.Option(2, "--steps", help="Token-search steps."),
    device: str = device_option("for the SAE's encoding (the toy encoder and the planted dictionary run on the CPU)"),
) -> None:
    """Score feature search, anti-patterns and contrast against a synthetic world's planted trigger words,
    canceller words and templates. Writes search_score.json."""
    from namesae.synth.score.search import run_search_score

    result, path = run_search_score(world, out, sae=sae, steps=steps, device=device)
    t, c = result["triggers"], result["cancellers"]
    typer.echo(f"search score ({result['dictionary']} dictionary): triggers found {t['found']}/{t['of']} (top-1 "
               f"{t['top1']}), cancellers found {c['found']}/{c['of']}, contrast recovered "
               f"{result['contrast']['found']}")
    wrote([path], "search.score")
