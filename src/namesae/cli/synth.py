"""`namesae synth`: write a synthetic name world (stores + truth.json) with planted ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the world into (created if missing)."),
    config: Path | None = typer.Option(
        None, "--config", "-c",
        help="TOML file with a [synth] table (fields of namesae.synth.SynthConfig); defaults otherwise."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the world (overrides the config's)."),
    preset: str | None = typer.Option(
        None, "--preset",
        help="A named world, applied under --config: 'demo' (the defaults) or 'real' (d=1280, 5,000 names x 16 "
             "images, mean pairwise cosine ~0.5, 1,000 dedicated full names, 10%% of name parts with a feature "
             "of their own)."),
) -> None:
    """Write a synthetic name world with planted ground truth: image, text and vocabulary stores, a progression
    of checkpoints and truth.json (layout: DIR/truth.json, DIR/directions.safetensors, DIR/prior_names.txt,
    DIR/image.h5, DIR/text.h5, DIR/vocab.h5, DIR/progression/ckpt_NN/*.h5; see `namesae.synth`). The same config
    and seed write the same world."""
    import time

    from namesae.synth import build_world, summary, write_world
    from namesae.synth.config import synth_config

    cfg = synth_config(config, preset, seed)
    start = time.perf_counter()
    world = build_world(cfg)
    paths = write_world(world, out)
    info = summary(world)
    rows = info.pop("rows")
    typer.echo(f"wrote synthetic world (seed {cfg.seed}) to {paths.root} in {time.perf_counter() - start:.1f} s")
    typer.echo(f"  truth:       {paths.truth}")
    typer.echo(f"  image store: {paths.image} ({rows['image']} rows)")
    typer.echo(f"  text store:  {paths.text} ({rows['text']} rows)")
    typer.echo(f"  vocabulary:  {paths.vocab} ({rows['vocab']} rows)")
    if paths.checkpoints:
        typer.echo(f"  progression: {len(paths.checkpoints)} checkpoints under {paths.root / 'progression'}")
    typer.echo(json.dumps(info))
