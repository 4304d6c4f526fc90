"""`namesae train`: train an SAE on an embedding store (SAELens format, resumable, held-out metrics)."""

from __future__ import annotations

from pathlib import Path

import typer


def parse_overrides(items: list[str]) -> dict:
    """`field=value` pairs with TOML values (`k=16`, `kinds=["image"]`, `engine="saelens"` or `engine=saelens`)."""
    import tomllib

    from namesae.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected field=value")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value  # a bare word: take it as a string
    return out


def load_train_config(config: Path | None, overrides: list[str]):
    """TrainConfig from the [train] section of a TOML file (optional), with `--set` overrides."""
    from namesae.config import config_from_dict, config_to_dict, load_toml
    from namesae.sae import TrainConfig

    data = {}
    source = "--set"
    if config is not None:
        raw = load_toml(config)
        if "train" not in raw:
            from namesae.errors import ConfigError

            raise ConfigError(f"{config}: missing section [train]")
        data, source = dict(raw["train"]), f"{config} [train]"
    data.update(parse_overrides(overrides))
    cfg = config_from_dict(TrainConfig, data, source)
    return cfg, config_to_dict(cfg)


def train(
    store: Path = typer.Option(..., "--store", help="Embedding store (HDF5) to train on."),
    out: Path = typer.Option(..., "--out", help="Run folder: the final SAE (SAELens cfg.json + "
                             "sae_weights.safetensors, namesae.json, metrics.json), checkpoints/step_XXXXXX/, state/."),
    config: Path = typer.Option(None, "--config", help="TOML file; its [train] section sets TrainConfig "
                                "(architecture, d_sae, k, lr, steps, ...). Default: a TopK SAE at 8x width."),
    set_: list[str] = typer.Option([], "--set", help="Override one TrainConfig field, e.g. --set k=16 "
                                   "--set engine=saelens (repeatable; values in TOML syntax)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a previous run in --out and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (loss, L0, EV)."),
) -> None:
    """Train a sparse autoencoder on a store's rows (filtered by kind / name, minus a held-out split).

    Running the same command again after a kill resumes from the last saved state; on a finished run it just
    reports it. Every SAE written opens with sae_lens.SAE.load_from_disk and reads store-unit embeddings.
    """
    cfg, _ = load_train_config(config, set_)
    from namesae.sae import train_sae

    sae = train_sae(store, cfg, out, progress=progress, overwrite=overwrite)
    m = sae.metrics or {}

    def num(key: str, digits: int) -> str:
        value = m.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    typer.echo(f"train: {sae.architecture} SAE, d_in {sae.d_in}, d_sae {sae.d_sae}, step {sae.step}; "
               f"{m.get('split', 'heldout')} rows {m.get('rows')}: explained variance {num('explained_variance', 4)}, "
               f"mean L0 {num('mean_l0', 2)}, dead {num('dead_fraction', 3)}, dense {num('dense_fraction', 3)}")
    typer.echo(f"wrote {out} (metrics: {out / 'metrics.json'})")
