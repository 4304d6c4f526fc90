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
    from namesae.config import config_from_dict, config_to_dict
    from namesae.sae import TrainConfig

    data = load_train_dict(config, overrides)
    cfg = config_from_dict(TrainConfig, data, f"{config} [train]" if config is not None else "--set")
    return cfg, config_to_dict(cfg)


def load_train_dict(config: Path | None, overrides: list[str]) -> dict:
    """The [train] mapping of a TOML file (optional) with `--set` overrides applied, not yet validated."""
    from namesae.config import load_toml

    data = {}
    if config is not None:
        raw = load_toml(config)
        if "train" not in raw:
            from namesae.errors import ConfigError

            raise ConfigError(f"{config}: missing section [train]")
        data = dict(raw["train"])
    data.update(parse_overrides(overrides))
    return data


def train(
    store: Path = typer.Option(..., "--store", help="Embedding store (HDF5) to train on."),
    out: Path = typer.Option(..., "--out", help="Run folder: the final SAE (SAELens cfg.json + "
                             "sae_weights.safetensors, namesae.json, metrics.json), checkpoints/step_XXXXXX/, state/."),
    config: Path = typer.Option(None, "--config", help="TOML file; its [train] section sets TrainConfig "
                                "(architecture, d_sae, k, lr, steps, ...). Default: a TopK SAE at 8x width."),
    set_: list[str] = typer.Option([], "--set", help="Override one TrainConfig field, e.g. --set k=16 "
                                   "--set engine=saelens (repeatable; values in TOML syntax)."),
    sweep: list[str] = typer.Option([], "--sweep", help="Train several SAEs in one pass over the same batches: "
                                    "field=v1,v2,... (repeatable; the product of all), e.g. --sweep k=16,32 "
                                    "--sweep seed=0,1; or [[sweep]] tables in --config. Each SAE goes to "
                                    "--out/<name>/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a previous run in --out and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (loss, L0, EV)."),
) -> None:
    """Train a sparse autoencoder on a store's rows (filtered by kind / name, minus a held-out split).

    Running the same command again after a kill resumes from the last saved state; on a finished run it just
    reports it. Every SAE written opens with sae_lens.SAE.load_from_disk and reads store-unit embeddings.
    """
    tables = load_sweep_tables(config)
    if sweep or tables:
        from namesae.sae.sweep import sweep_members
        from namesae.sae.train import train_saes

        base = load_train_dict(config, set_)
        members = sweep_members(base, tables, sweep, source=str(config) if config else "--sweep")
        saes = train_saes(store, [m.config for m in members], [out / m.name for m in members],
                          progress=progress, overwrite=overwrite)
        for member, sae in zip(members, saes):
            report(sae, out / member.name, prefix=f"{member.name}: ")
        return
    cfg, _ = load_train_config(config, set_)
    from namesae.sae import train_sae

    sae = train_sae(store, cfg, out, progress=progress, overwrite=overwrite)
    report(sae, out)


def load_sweep_tables(config: Path | None) -> list[dict]:
    """The [[sweep]] tables of a TOML config (none without a config)."""
    if config is None:
        return []
    from namesae.config import load_toml
    from namesae.errors import ConfigError

    tables = load_toml(config).get("sweep", [])
    if not isinstance(tables, list) or any(not isinstance(t, dict) for t in tables):
        raise ConfigError(f"{config}: sweep must be [[sweep]] tables")
    return tables


def report(sae, out: Path, prefix: str = "") -> None:
    """Print a trained SAE's held-out numbers and where it was written (rank 0 only under torchrun)."""
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return
    m = sae.metrics or {}

    def num(key: str, digits: int) -> str:
        value = m.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}"

    typer.echo(f"{prefix}train: {sae.architecture} SAE, d_in {sae.d_in}, d_sae {sae.d_sae}, step {sae.step}; "
               f"{m.get('split', 'heldout')} rows {m.get('rows')}: explained variance {num('explained_variance', 4)}, "
               f"mean L0 {num('mean_l0', 2)}, dead {num('dead_fraction', 3)}, dense {num('dense_fraction', 3)}")
    from namesae.cli.options import record

    record(out, "sae" if not prefix else f"sae.{prefix.strip(': ')}")
    record(out / "metrics.json", "metrics" if not prefix else f"metrics.{prefix.strip(': ')}")
    typer.echo(f"wrote {out} (metrics: {out / 'metrics.json'})")
