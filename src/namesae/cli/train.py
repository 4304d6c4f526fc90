"""`namesae train`: train an SAE on an embedding store (SAELens format, resumable, held-out metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from namesae.cli.options import config_option, progress_option

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE


def train(
    store: Path = typer.Option(..., "--store", help="Embedding store (HDF5) to train on."),
    out: Path = typer.Option(..., "--out", help="Run folder: the final SAE (SAELens cfg.json + "
                             "sae_weights.safetensors, namesae.json, metrics.json), checkpoints/step_XXXXXX/, state/."),
    config: Path = config_option("[train] section sets TrainConfig (architecture, d_sae, k, lr, steps, ...). "
                                 "Default: a TopK SAE at 8x width."),
    set_: list[str] = typer.Option([], "--set", help="Override one TrainConfig field, e.g. --set k=16 "
                                   "--set engine=saelens (repeatable; values in TOML syntax)."),
    sweep: list[str] = typer.Option([], "--sweep", help="Train several SAEs in one pass over the same batches: "
                                    "field=v1,v2,... (repeatable; the product of all), e.g. --sweep k=16,32 "
                                    "--sweep seed=0,1; or [[sweep]] tables in --config. Each SAE goes to "
                                    "--out/<name>/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a previous run in --out and start over."),
    progress: bool = progress_option("Show a progress bar (loss, L0, EV)."),
) -> None:
    """Train a sparse autoencoder on a store's rows (filtered by kind / name, minus a held-out split).

    Running the same command again after a kill resumes from the last saved state; on a finished run it just
    reports it. Every SAE written opens with sae_lens.SAE.load_from_disk and reads store-unit embeddings.
    """
    from namesae.sae.sweep import plan_sweep

    members = plan_sweep(config, set_, sweep)
    if members:
        from namesae.sae.train import train_saes

        saes = train_saes(store, [m.config for m in members], [out / m.name for m in members],
                          progress=progress, overwrite=overwrite)
        for member, sae in zip(members, saes):
            report(sae, out / member.name, prefix=f"{member.name}: ")
        return
    from namesae.config import config_from
    from namesae.sae import TrainConfig, train_sae

    cfg = config_from(TrainConfig, "train", config, set_, required=True)
    sae = train_sae(store, cfg, out, progress=progress, overwrite=overwrite)
    report(sae, out)


def report(sae: TrainedSAE, out: Path, prefix: str = "") -> None:
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
               f"mean L0 {num('mean_l0', 2)}, dead {num('dead_fraction', 3)}, dense {num('dense_fraction', 3)}"
               + (f"; dead in training {num('dead_fraction_training', 3)}" if "dead_fraction_training" in m else ""))
    from namesae.cli.options import record

    record(out, "sae" if not prefix else f"sae.{prefix.strip(': ')}")
    record(out / "metrics.json", "metrics" if not prefix else f"metrics.{prefix.strip(': ')}")
    typer.echo(f"wrote {out} (metrics: {out / 'metrics.json'})")
