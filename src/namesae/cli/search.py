"""`namesae search`: prompts that drive a feature, additions that cancel it, feature contrasts, world scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from namesae.cli.basis import MODEL_HELP, WORLD_HELP, load_text_encoder, read_lines, write_csv, write_json
from namesae.cli.options import device_option

search = typer.Typer(
    help="Feature search: rank a corpus of prompts by an SAE feature (or group) and improve the best by token "
         "search; find additions that cancel a feature; contrast two row sets of a store.",
    no_args_is_help=True,
)

SAE_HELP = "SAE checkpoint directory (`namesae train`). With --world and no --sae: the world's planted directions."
FEATURES_HELP = ("Feature id(s): '12', or a group '3,4,9' (activations summed). With the planted dictionary also "
                 "labels such as 'scene:beach'.")


def _target(sae: Path | None, features: str, world: Path | None, encoder: Any, device: str = "cpu") -> Any:
    """The FeatureTarget of the command line (checks the SAE's space against the encoder); the SAE encodes on
    `device`."""
    from namesae.errors import NamesaeError, SpaceMismatchError
    from namesae.features import same_encoder
    from namesae.search import FeatureTarget, parse_features, sae_target

    if sae is None:
        if world is None:
            raise NamesaeError("--sae is required (a trained SAE), unless --world gives the planted dictionary")
        from namesae.synth import load_world
        from namesae.synth.score.search import planted_dictionary

        oracle = planted_dictionary(load_world(world))
        index = {label: i for i, label in enumerate(oracle.labels)}
        ids = []
        for part in features.replace(",", " ").split():
            if part.lstrip("-").isdigit():
                ids.append(int(part))
            elif part in index:
                ids.append(index[part])
            else:
                raise NamesaeError(f"feature {part!r} is neither an id nor a planted label of {world} "
                                   f"(e.g. {list(index)[:4]})")
        if not ids:
            raise NamesaeError("no feature ids given; pass e.g. --features 12 or --features scene:beach")
        return FeatureTarget(oracle.codes, tuple(ids), len(oracle.labels), oracle.directions[ids],
                             ",".join(oracle.labels[i] if 0 <= i < len(oracle.labels) else str(i) for i in ids))
    from namesae.sae import load_sae

    model = load_sae(sae, device=device)
    if not same_encoder(model.space, encoder.space("text")):
        raise SpaceMismatchError(f"SAE {sae} was trained in space {model.space!r} but the encoder writes "
                                 f"{encoder.space('text')!r}; use the SAE's encoder")
    return sae_target(model, parse_features(features))


def _tokens(tokens: Path | None, encoder: Any) -> list[str]:
    from namesae.errors import NamesaeError

    if tokens is not None:
        words = read_lines(tokens)
        if not words:
            raise NamesaeError(f"{tokens}: no tokens (one word or phrase per line)")
        return words
    if hasattr(encoder, "search_tokens"):
        return encoder.search_tokens()
    raise NamesaeError("--tokens FILE is required: the words and phrases the search may insert (one per line)")


@search.command("drive")
def drive(
    features: str = typer.Option(..., "--features", help=FEATURES_HELP),
    out: Path = typer.Option(Path("."), "--out", help="Folder for drive.json and ranking.csv."),
    sae: Path = typer.Option(None, "--sae", help=SAE_HELP),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag or checkpoint (seed<N> for tiny)."),
    world: Path = typer.Option(None, "--world", help=WORLD_HELP),
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
    device: str = device_option("for the text encoder (--model) and the SAE's encoding"),
    batch: int = typer.Option(1024, "--batch", help="Prompts per encoder batch."),
) -> None:
    """What drives a feature: rank every corpus prompt (names x templates, phrases) by the feature's activation
    in one batched pass, then improve the best prompts by greedy/beam token search through the real encoder."""
    from namesae.errors import NamesaeError
    from namesae.names import load_names, resolve_templates
    from namesae.search import corpus_prompts, improve_prompt, rank_prompts

    encoder = load_text_encoder(model, pretrained, world, device)
    target = _target(sae, features, world, encoder, device)
    world_templates: list[str] = []
    name_list = load_names(names) if names is not None else []
    if world is not None:
        from namesae.synth import load_truth

        truth = load_truth(world)
        world_templates = [t["template"].replace("{}", "{name}") for t in truth["templates"]]
        if names is None:
            name_list = [r["name"] for r in truth["names"] if r["kind"] == "full"]
    default = world_templates or ["portrait", "scenario", "style"]
    tpls = resolve_templates(templates or default) if name_list else []
    corpus = corpus_prompts(name_list, tpls, read_lines(phrases) if phrases is not None else ())
    if not corpus:
        raise NamesaeError("the corpus is empty: give --names (and --templates) or --phrases")
    words = _tokens(tokens, encoder)
    ranked = rank_prompts(corpus, encoder, target, batch=batch)
    searches = [improve_prompt(r.prompt, words, encoder, target, steps=steps, beam=beam,
                               ops=tuple(ops) if ops else ("substitute", "insert"), batch=batch)
                for r in ranked[:improve]]
    record = {"features": list(target.features), "label": target.label, "n_corpus": len(corpus),
              "n_tokens": len(words), "ranked": [vars(r) for r in ranked[:top]],
              "searches": [s.to_dict() for s in searches]}
    paths = [write_json(out / "drive.json", record),
             write_csv(out / "ranking.csv", [vars(r) for r in ranked], ["prompt", "activation"])]
    typer.echo(f"features {target.label}: {len(corpus)} prompts ranked; best {ranked[0].prompt!r} "
               f"({ranked[0].activation:.4f})")
    for s in searches:
        typer.echo(f"  {s.start_prompt!r} ({s.start_activation:.4f}) -> {s.best_prompt!r} ({s.best_activation:.4f})")
        for st in s.steps:
            typer.echo(f"    step {st.step}: {st.edit}  +{st.gain:.4f}")
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "search.drive")
    for path in paths:
        typer.echo(f"wrote {path}")


@search.command("cancel")
def cancel(
    prompt: str = typer.Option(..., "--prompt", help="The prompt that drags in the unwanted feature."),
    features: str = typer.Option(..., "--features", help=FEATURES_HELP + " The features to suppress."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for cancel.json and cancel.csv."),
    sae: Path = typer.Option(None, "--sae", help=SAE_HELP),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag or checkpoint (seed<N> for tiny)."),
    world: Path = typer.Option(None, "--world", help=WORLD_HELP),
    tokens: Path = typer.Option(None, "--tokens", help="Candidate additions (words / phrases), one per line "
                                "(default with --world: the toy encoder's words)."),
    steps: int = typer.Option(1, "--steps", help="Stack up to this many additions (greedy)."),
    positions: str = typer.Option("end", "--positions", help="end: append ', word'; any: also insert at every gap."),
    min_rest_cosine: float = typer.Option(0.9, "--min-rest-cosine", help="Keep only additions whose embedding, "
                                          "with the features' decoder directions projected out, stays this close."),
    top: int = typer.Option(10, "--top", help="Additions to report."),
    device: str = device_option("for the text encoder (--model) and the SAE's encoding"),
) -> None:
    """Anti-patterns: additions to a prompt that suppress an unwanted feature while keeping the rest of the
    embedding close; reports each addition's drop and its cosine to the original embedding."""
    from namesae.search import find_cancellers

    encoder = load_text_encoder(model, pretrained, world, device)
    target = _target(sae, features, world, encoder, device)
    result = find_cancellers(prompt, _tokens(tokens, encoder), encoder, target, steps=steps, positions=positions,
                             min_rest_cosine=min_rest_cosine, top=top)
    fields = ["addition", "prompt", "activation", "drop", "drop_fraction", "cosine", "rest_cosine"]
    paths = [write_json(out / "cancel.json", {"features": list(target.features), "label": target.label,
                                              **result.to_dict()}),
             write_csv(out / "cancel.csv", [vars(a) for a in result.ranked], fields)]
    typer.echo(f"{prompt!r}: features {target.label} at {result.activation:.4f}; {result.n_candidates} candidates, "
               f"{result.n_rejected} moved the rest too far")
    for a in result.ranked[:5]:
        typer.echo(f"  + {a.addition!r}: drop {a.drop_fraction:.1%}, cosine {a.cosine:.4f}, rest {a.rest_cosine:.4f}")
    if len(result.path) > 1:
        typer.echo(f"  stacked: {result.path[-1].prompt!r} ({result.path[-1].activation:.4f})")
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "search.cancel")
    for path in paths:
        typer.echo(f"wrote {path}")


@search.command("contrast")
def contrast(
    store: Path = typer.Option(..., "--store", help="Store holding both row sets (in the SAE's space)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for contrast.json and contrast.csv."),
    sae: Path = typer.Option(None, "--sae", help=SAE_HELP),
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
    from namesae.devices import resolve_device
    from namesae.errors import NamesaeError, SpaceMismatchError
    from namesae.features import same_encoder
    from namesae.search import contrast_store, select_rows
    from namesae.store import EmbeddingStore

    device = resolve_device(device)
    if not 0 < ci < 1:
        raise NamesaeError(f"--ci must be in (0, 1), got {ci}")
    if not (a_name or a_kind or a_prompt) or not (b_name or b_kind or b_prompt):
        raise NamesaeError("define both sets: --a-name/--a-kind/--a-prompt and --b-name/--b-kind/--b-prompt")
    if sae is not None:
        from namesae.sae import encode, load_sae

        model = load_sae(sae, device=device)
        codes, d_sae, space = (lambda x: encode(model, x)), int(model.d_sae), model.space
        labels = None
    elif world is not None:
        from namesae.synth import load_world
        from namesae.synth.score.search import planted_dictionary

        oracle = planted_dictionary(load_world(world))
        codes, d_sae, space, labels = oracle.codes, len(oracle.labels), None, oracle.labels
    else:
        raise NamesaeError("--sae is required (a trained SAE), unless --world gives the planted dictionary")
    with EmbeddingStore.open(store) as s:
        if space is not None and not same_encoder(space, s.space):
            raise SpaceMismatchError(f"store {store} ({s.space}) is not in the SAE's space ({space})")
        rows_a = select_rows(s, a_name, a_kind, a_prompt)
        rows_b = select_rows(s, b_name, b_kind, b_prompt)
        desc = [" & ".join(x for x in (f"names {n}" if n else "", f"kind {k}" if k else "",
                                       f"prompt ~ {p!r}" if p else "") if x)
                for n, k, p in ((a_name, a_kind, a_prompt), (b_name, b_kind, b_prompt))]
        result = contrast_store(codes, s, rows_a, rows_b, d_sae, top=top, n_boot=n_boot, ci=ci, seed=seed,
                                label_a=desc[0], label_b=desc[1])
    rows = [{**vars(r), **({"label": labels[r.feature]} if labels else {})} for r in result.rows]
    fields = ["feature", *(["label"] if labels else []), "mean_a", "mean_b", "diff", "cohen_d", "ci_low", "ci_high",
              "active_a", "active_b"]
    paths = [write_json(out / "contrast.json", {"store": str(store), **result.to_dict(), "rows": rows}),
             write_csv(out / "contrast.csv", rows, fields)]
    typer.echo(f"contrast: A = {desc[0]} ({result.n_a} rows), B = {desc[1]} ({result.n_b} rows)")
    for note in result.notes:
        typer.echo(f"note: {note}")
    for r in rows[:5]:
        typer.echo(f"  feature {r['feature']}{' ' + r['label'] if labels else ''}: d {r['cohen_d']:+.3f} "
                   f"(diff {r['diff']:+.4f})")
    from namesae.cli.options import record

    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), "search.contrast")
    for path in paths:
        typer.echo(f"wrote {path}")


@search.command("score")
def score(
    world: Path = typer.Option(..., "--world", help="A synthetic world folder (`namesae synth`)."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for search_score.json."),
    sae: Path = typer.Option(None, "--sae", help="An SAE trained on the world (default: the planted directions)."),
    steps: int = typer.Option(2, "--steps", help="Token-search steps."),
    device: str = device_option("for the SAE's encoding (the toy encoder and the planted dictionary run on the CPU)"),
) -> None:
    """Score feature search, anti-patterns and contrast against a synthetic world's planted trigger words,
    canceller words and templates. Writes search_score.json."""
    from namesae.devices import resolve_device
    from namesae.synth.score.search import score_search_on_world

    device = resolve_device(device)
    codes = directions = None
    if sae is not None:
        from namesae.sae import encode, load_sae

        model = load_sae(sae, device=device)
        codes, directions = (lambda x: encode(model, x)), model.decoder_directions()
    result = score_search_on_world(world, codes=codes, directions=directions, steps=steps)
    path = write_json(out / "search_score.json", {"world": str(world), "sae": str(sae) if sae else None, **result})
    t, c = result["triggers"], result["cancellers"]
    typer.echo(f"search score ({result['dictionary']} dictionary): triggers found {t['found']}/{t['of']} (top-1 "
               f"{t['top1']}), cancellers found {c['found']}/{c['of']}, contrast recovered "
               f"{result['contrast']['found']}")
    from namesae.cli.options import record

    record(next((p for p in [path] if str(p).endswith(".json")), path), "search.score")
    typer.echo(f"wrote {path}")
