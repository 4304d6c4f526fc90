"""`namesae icons`: draw a run's feature and group icons (and decoded rows of a synthetic world)."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import device_option, progress_option


def icons(
    run: Path = typer.Option(..., "--run", help="Run folder (run.json, sae/, features.json, identity.json)."),
    n_icons: int = typer.Option(256, "--icons", help="At most this many feature icons: identity features "
                                "first, then the most often firing (dead features get none)."),
    group_icons: int = typer.Option(64, "--group-icons", help="At most this many group icons (names' groups)."),
    rows_per_feature: int = typer.Option(8, "--rows-per-feature", help="Top rows per iconed feature decoded into "
                                         "images when the store has no image files (a synthetic world)."),
    rows_per_name: int = typer.Option(4, "--rows-per-name", help="Image rows per name decoded likewise."),
    pipeline: str = typer.Option(None, "--pipeline", help="kandinsky22 or sd21-unclip (default: run.json's)."),
    model: str = typer.Option(None, "--model", help="Decoder hub id, folder, or tiny:DIR (default: run.json's)."),
    base: str = typer.Option("sae", "--base", help="Icon base: sae (the SAE's decode of the feature alone), mean "
                             "(the store's mean embedding + the feature) or zero (the feature's direction alone)."),
    strength: float = typer.Option(1.0, "--strength", help="Feature activation, x its largest seen activation."),
    seed: int = typer.Option(0, "--seed", help="Decoder seed of every icon."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the decoder's)."),
    size: int = typer.Option(None, "--size", help="Icon height and width (default: the decoder's)."),
    device: str = device_option("for the SAE and the decoder"),
    progress: bool = progress_option(),
) -> None:
    """Draw each chosen feature's icon (its causal preview: the decoder's image of an embedding carrying the
    feature alone) and each group's, with one recipe recorded beside them; cached, so a rerun draws nothing new."""
    from namesae.devices import resolve_device
    from namesae.report.pictures import draw_run_pictures
    from namesae.steer.icons import IconRecipe

    recipe = IconRecipe(base=base, strength=strength, seed=seed, steps=steps, size=size)
    result = draw_run_pictures(run, pipeline=pipeline, model=model, icons=n_icons, group_icons=group_icons,
                               rows_per_feature=rows_per_feature, rows_per_name=rows_per_name, recipe=recipe,
                               device=resolve_device(device), progress=progress)
    rows = f", {len(result.row_images.rows)} row images" if result.row_images is not None else ""
    typer.echo(f"icons: {len(result.icons.features)} feature icons, {len(result.icons.groups)} group icons{rows} "
               f"in {result.seconds:.1f} s")
    typer.echo(f"wrote {result.icons.folder / 'icons.json'}")
