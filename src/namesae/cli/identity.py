"""`namesae identity`: dedicated vs compositional names, name parts, rigidity and attributes, per name."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import (
    SAE_DIR,
    SAE_STORE_HELP,
    TAU_P,
    TAU_R,
    config_option,
    device_option,
    out_folder,
    progress_option,
)


def identity(
    sae: Path = SAE_DIR,
    store: Path = typer.Option(..., "--store", help=SAE_STORE_HELP + "; its names are analysed and, if it holds "
                               "image rows, their rigidity and attributes."),
    prior_names: Path = typer.Option(None, "--prior-names", help="Low-bias names (one per line, or a JSON list): "
                                     "every measure is also given as a z-score against them. Unknown names "
                                     "are warned about and skipped."),
    out: Path = out_folder("identity.json and identity.csv"),
    image_store: Path = typer.Option(None, "--image-store", help="Store of image rows for rigidity and attributes "
                                     "(default: --store)."),
    text_store: Path = typer.Option(None, "--text-store", help="Text store with rows of full names, first names, "
                                    "surnames and the bare template, for name-part composition (default: --store "
                                    "if it has text rows)."),
    vocab: Path = typer.Option(None, "--vocab", help="Store of label phrases (row name = label) to label features."),
    ladders: Path = typer.Option(None, "--ladders", help="Attribute ladders JSON (default: the built-in "
                                 "age/gender/hair/... ladders)."),
    ladder_store: Path = typer.Option(None, "--ladder-store", help="Text store holding the ladder prompts as rows, "
                                      "embedded by the image store's encoder (also searched: --text-store, --vocab)."),
    config: Path = config_option("[identity] and [features] sections set IdentityConfig and FeatureConfig."),
    tau_p: float = TAU_P, tau_r: float = TAU_R,
    kind: str = typer.Option(None, "--kind", help="Feature statistics over rows of this kind only (text/image)."),
    write_features: bool = typer.Option(False, "--write-features", help="Also write features.json/csv."),
    seed_sae: list[Path] = typer.Option(None, "--seed-sae", help="SAE trained with another seed on the same store "
                                        "(repeat for several): adds seed stability per name (verdict agreement, "
                                        "Hungarian-matched identity feature and its decoder cosine)."),
    rule: str = typer.Option(None, "--rule", help="Identity rule: 'strongest' (default: precision and recall "
                             "among each feature's strongest firings) or 'mass_share' (DESIGN's original)."),
    progress: bool = progress_option(),
    device: str = device_option("for the SAE's encoding (batched; codes come back to the CPU)"),
) -> None:
    """Per name: identity features (precision >= tau_p and recall >= tau_r among each feature's strongest
    firings, see README "Identity rule"), dedicated, dedication, composing
    features, name-part composition, rigidity (trace, log-det, pairwise cosines, diffusion spectral entropy),
    zero-shot attribute distributions, and z-scores against prior names. Writes identity.json and identity.csv."""
    from namesae.identity import run_identity_files

    done = run_identity_files(sae, store, out, config=config, kind=kind, tau_p=tau_p, tau_r=tau_r, rule=rule,
                              prior_names=prior_names, image_store=image_store, text_store=text_store,
                              vocab=vocab, ladders=ladders, ladder_store=ladder_store, seed_saes=seed_sae or (),
                              write_features=write_features, progress=progress, device=device)
    result, space, paths = done.result, done.space, done.paths
    n_ded = sum(r.dedicated for r in result.records)
    typer.echo(f"identity: {len(result.records)} names, {n_ded} dedicated, "
               f"{len(result.records) - n_ded} compositional; prior: {len(result.prior_names)} names")
    if result.seed_stability:
        st = result.seed_stability
        typer.echo(f"seed stability over {st['n_saes']} SAEs: mean verdict agreement {st['mean_seed_agreement']:.3f}"
                   f", unanimous {st['unanimous_share']:.3f}")
    if result.absorption.get("n_dedicated_with_part_feature"):
        ab = result.absorption
        typer.echo(f"absorption: {ab['n_dedicated_with_part_feature']} (dedicated name, part) pairs, mean "
                   f"{ab['mean_absorption_dedicated']:.3f}, absorbed share {ab['absorbed_share_dedicated']:.3f}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    from namesae.cli.options import record

    record(out / "identity.json", "identity", store=store, sae=sae, image_store=image_store, text_store=text_store)
    if write_features:
        record(out / "features.json", "features", store=store, sae=sae)
    from namesae.runs import run_folder_for

    folder = run_folder_for(out / "identity.json")  # the inputs are this run's SAE and store, wherever they live
    record(sae, "sae", run=folder)
    record(image_store or store, "image_store" if image_store or not space.endswith(":text") else "text_store",
           run=folder)
    for path in paths:
        typer.echo(f"wrote {path}")
