"""`namesae features`: per-feature statistics and zero-shot labels of an SAE over a store."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import (
    SAE_DIR,
    SAE_STORE_HELP,
    config_option,
    device_option,
    out_folder,
    progress_option,
)


def features(
    sae: Path = SAE_DIR,
    store: Path = typer.Option(..., "--store", help=SAE_STORE_HELP + "."),
    vocab: Path = typer.Option(None, "--vocab", help="Store of label phrases (row name = label), embedded by the "
                               "same encoder; labels each feature by the phrase closest to its decoder direction."),
    out: Path = out_folder("features.json and features.csv"),
    kind: str = typer.Option(None, "--kind", help="Use only rows of this kind: text or image (default: all)."),
    config: Path = config_option("[features] section sets FeatureConfig."), progress: bool = progress_option(),
    device: str = device_option("for the SAE's encoding (batched; codes come back to the CPU)"),
) -> None:
    """Feature statistics: firing frequency, mean/max activation, mass, top rows and names, precision/recall of
    each feature for each name (sparse), and zero-shot labels with their margin over the runner-up."""
    from namesae.features.result import run_features

    stats, paths = run_features(sae, store, out, vocab=vocab, kind=kind, config=config, progress=progress,
                                device=device)
    alive = int((stats.fire_count > 0).sum())
    typer.echo(f"features: {stats.d_sae} features ({alive} fire), {stats.n_rows} rows, {len(stats.names)} names, "
               f"{len(stats.pair_feature)} (feature, name) pairs")
    from namesae.cli.options import record

    record(out / "features.json", "features", store=store, sae=sae, vocab=vocab)
    for path in paths:
        typer.echo(f"wrote {path}")
