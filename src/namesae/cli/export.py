"""`namesae export`: an embedding store -> a Hugging Face Dataset folder or a parquet file."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    store: Path = typer.Option(..., "--store", help="Embedding store (HDF5) to export."),
    format: str = typer.Option("hf", "--format", help="hf: a folder written by Dataset.save_to_disk (open "
                               "it with datasets.load_from_disk); parquet: one .parquet file."),
    out: Path = typer.Option(..., "--out", help="Folder (hf) or file (parquet) to write (atomically)."),
) -> None:
    """Export a store with columns name, prompt, kind, seed, image (absolute path) and embedding (float32),
    its space, dim and normalisation in the metadata; namesae.datasets_io.store_from_hf reads it back."""
    from namesae.datasets_io import export_store

    result = export_store(store, out, format)
    typer.echo(f"export: {result.rows} rows of space {result.space} as {result.format}")
    from namesae.cli.options import record

    record(result.path, "export", store=store)
    typer.echo(f"wrote {result.path}")
