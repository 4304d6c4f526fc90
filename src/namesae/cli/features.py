"""`namesae features`: per-feature statistics and zero-shot labels of an SAE over a store."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import device_option


def load_feature_config(config: Path | None, kind: str | None):
    """FeatureConfig from the [features] section of a TOML file (optional), with CLI overrides."""
    import dataclasses

    from namesae.config import config_from_dict, load_toml
    from namesae.features import FeatureConfig

    cfg = FeatureConfig()
    if config is not None:
        data = load_toml(config)
        cfg = config_from_dict(FeatureConfig, data.get("features", {}), f"{config} [features]")
    if kind is not None:
        cfg = dataclasses.replace(cfg, kind=kind)
    return cfg


def features(
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (written by `namesae train`)."),
    store: Path = typer.Option(..., "--store", help="Embedding store in the SAE's space (HDF5)."),
    vocab: Path = typer.Option(None, "--vocab", help="Store of label phrases (row name = label), embedded by the "
                               "same encoder; labels each feature by the phrase closest to its decoder direction."),
    out: Path = typer.Option(Path("."), "--out", help="Folder for features.json and features.csv."),
    kind: str = typer.Option(None, "--kind", help="Use only rows of this kind: text or image (default: all)."),
    config: Path = typer.Option(None, "--config", help="TOML file; its [features] section sets FeatureConfig."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    device: str = device_option("for the SAE's encoding (batched; codes come back to the CPU)"),
) -> None:
    """Feature statistics: firing frequency, mean/max activation, mass, top rows and names, precision/recall of
    each feature for each name (sparse), and zero-shot labels with their margin over the runner-up."""
    from namesae.devices import resolve_device

    device = resolve_device(device)
    cfg = load_feature_config(config, kind)
    from namesae.features.result import write_features
    from namesae.features import compute_feature_stats, labels_from_store
    from namesae.sae import load_sae
    from namesae.store import EmbeddingStore

    model = load_sae(sae, device=device)
    with EmbeddingStore.open(store) as s:
        stats = compute_feature_stats(model, s, cfg, progress=progress)
        if vocab is not None:
            with EmbeddingStore.open(vocab) as v:
                stats.labels = labels_from_store(model, v, center=cfg.label_center)
        paths = write_features(stats, out, s, meta={"sae": str(sae), "store": str(store),
                                                    "vocab": str(vocab) if vocab else None})
    alive = int((stats.fire_count > 0).sum())
    typer.echo(f"features: {stats.d_sae} features ({alive} fire), {stats.n_rows} rows, {len(stats.names)} names, "
               f"{len(stats.pair_feature)} (feature, name) pairs")
    from namesae.cli.options import record

    record(out / "features.json", "features", store=store, sae=sae, vocab=vocab)
    for path in paths:
        typer.echo(f"wrote {path}")
