"""`namesae identity`: dedicated vs compositional names, name parts, rigidity and attributes, per name."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import typer

from namesae.cli.options import device_option


def identity(
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (written by `namesae train`)."),
    store: Path = typer.Option(..., "--store", help="Embedding store in the SAE's space (HDF5); its names are "
                               "analysed and, if it holds image rows, their rigidity and attributes."),
    prior_names: Path = typer.Option(None, "--prior-names", help="Low-bias names (one per line, or a JSON list): "
                                     "every measure is also given as a z-score against them. Unknown names "
                                     "are warned about and skipped."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for identity.json and identity.csv."),
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
    config: Path = typer.Option(None, "--config", help="TOML file; its [identity] and [features] sections set "
                                "IdentityConfig and FeatureConfig."),
    tau_p: float = typer.Option(None, "--tau-p", help="Precision threshold of identity features (default 0.8)."),
    tau_r: float = typer.Option(None, "--tau-r", help="Recall threshold of identity features (default 0.5)."),
    kind: str = typer.Option(None, "--kind", help="Feature statistics over rows of this kind only (text/image)."),
    write_features: bool = typer.Option(False, "--write-features", help="Also write features.json/csv."),
    seed_sae: list[Path] = typer.Option(None, "--seed-sae", help="SAE trained with another seed on the same store "
                                        "(repeat for several): adds seed stability per name (verdict agreement, "
                                        "Hungarian-matched identity feature and its decoder cosine)."),
    rule: str = typer.Option(None, "--rule", help="Identity rule: 'strongest' (default: precision and recall "
                             "among each feature's strongest firings) or 'mass_share' (DESIGN's original)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    device: str = device_option("for the SAE's encoding (batched; codes come back to the CPU)"),
) -> None:
    """Per name: identity features (precision >= tau_p and recall >= tau_r among each feature's strongest
    firings, see README "Identity rule"), dedicated, dedication, composing
    features, name-part composition, rigidity (trace, log-det, pairwise cosines, diffusion spectral entropy),
    zero-shot attribute distributions, and z-scores against prior names. Writes identity.json and identity.csv."""
    import dataclasses

    from namesae.cli.features import load_feature_config
    from namesae.config import config_from_dict, load_toml
    from namesae.devices import resolve_device
    from namesae.identity import IdentityConfig

    device = resolve_device(device)
    fcfg = load_feature_config(config, kind)
    icfg = IdentityConfig()
    if config is not None:
        icfg = config_from_dict(IdentityConfig, load_toml(config).get("identity", {}), f"{config} [identity]")
    overrides = {k: v for k, v in (("tau_p", tau_p), ("tau_r", tau_r), ("rule", rule)) if v is not None}
    if overrides:
        from namesae.errors import ConfigError

        try:
            icfg = dataclasses.replace(icfg, **overrides)
        except ConfigError as err:
            raise ConfigError(f"--tau-p/--tau-r/--rule: {err}") from None

    from namesae.features.result import write_features as write_feature_files
    from namesae.features import compute_feature_stats
    from namesae.identity import load_ladders, load_prior_names, run_identity, write_identity
    from namesae.sae import load_sae
    from namesae.store import EmbeddingStore

    prior = load_prior_names(prior_names) if prior_names is not None else []
    lads = load_ladders(ladders)
    model = load_sae(sae, device=device)
    seeds = [load_sae(p, device=device) for p in seed_sae or []]  # refused before any work, not after
    with ExitStack() as stack:
        def opened(path: Path | None) -> EmbeddingStore | None:
            return stack.enter_context(EmbeddingStore.open(path)) if path is not None else None

        main = opened(store)
        stats = compute_feature_stats(model, main, fcfg, progress=progress)
        result = run_identity(model, main, icfg, fcfg, image_store=opened(image_store),
                              text_store=opened(text_store), vocab=opened(vocab), ladders=lads,
                              ladder_store=opened(ladder_store), prior_names=prior, stats=stats,
                              progress=progress)
        if seed_sae:
            from namesae.identity import add_seed_stability

            add_seed_stability(result, model, seeds, main, fcfg, progress=progress)
        space = main.space
        meta = {"sae": str(sae), "store": str(store)}
        paths = list(write_identity(result, out, meta))
        if write_features:
            paths += list(write_feature_files(stats, out, main, meta))
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
