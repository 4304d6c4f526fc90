"""`namesae embed`: names x prompt templates (or a folder of images, or a local Hugging Face image dataset) -> an
embedding store, resumably."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import NAME_LIST_HELP, NORMALIZE, TEMPLATES_HELP, config_option, progress_option


def embed(
    out: Path = typer.Option(..., "--out", help="Store to write (HDF5). An existing store is resumed: rows already "
                             "in it are skipped; its space, dim and normalisation must match."),
    names: Path = typer.Option(None, "--names", help=NAME_LIST_HELP + " Names are NFC-normalised; duplicates are "
                               "dropped with a warning."),
    builtin: str = typer.Option(None, "--builtin", help="A shipped name list: first (US first names, SSA), "
                                "surnames (US Census), famous (well-known people, characters, artworks)."),
    top: int = typer.Option(None, "--top", help="With --builtin: first names of rank <= TOP in some decade; "
                            "the TOP most common surnames; the first TOP famous names."),
    decade: int = typer.Option(None, "--decade", help="With --builtin first: only this decade (1880 ... 2010)."),
    sex: str = typer.Option(None, "--sex", help="With --builtin first: F or M."),
    category: str = typer.Option(None, "--category", help="With --builtin famous: one category (actor, artwork, ...)."),
    templates: list[str] = typer.Option(None, "--templates", "-t", help=TEMPLATES_HELP),
    images: Path = typer.Option(None, "--images", help="Embed the images of this folder instead of texts (image rows); "
                                "names from DIR/images.csv|json (image,name[,prompt,seed]) or the layout "
                                "DIR/<name>/<seed>.png or DIR/<name>__<seed>.png."),
    dataset: Path = typer.Option(None, "--dataset", help="Embed the images of a local Hugging Face dataset (a "
                                 "Dataset.save_to_disk folder or an imagefolder with optional metadata.csv); "
                                 "images held as bytes are written once as PNGs into <out>.images/."),
    image_column: str = typer.Option("image", "--image-column", help="With --dataset: the image column."),
    name_column: str = typer.Option("name", "--name-column", help="With --dataset: the name column (default "
                                    "name; an imagefolder without one is named by its class folders)."),
    prompt_column: str = typer.Option(None, "--prompt-column", help="With --dataset: a prompt column."),
    seed_column: str = typer.Option(None, "--seed-column", help="With --dataset: a seed column."),
    model: str = typer.Option(None, "--model", help="open_clip model (ViT-H-14, ViT-bigG-14, ...), a tiny offline "
                              "model (tiny, tiny-1024, tiny-1280, tiny-b32-text), hf-hub:ORG/REPO or local-dir:PATH."),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag (laion2b_s32b_b79k for ViT-H-14, "
                                   "laion2b_s39b_b160k for ViT-bigG-14) or a checkpoint file; seed<N> for tiny."),
    space_tag: str = typer.Option(None, "--space-tag", help="Override '<model>:<pretrained>' in the store's space."),
    device: str = typer.Option(None, "--device", help="cpu (default), cuda, cuda:N, mps or auto."),
    dtype: str = typer.Option(None, "--dtype", help="Encoder precision: float32 (default), float16, bfloat16."),
    normalize: bool = NORMALIZE,
    batch_size: int = typer.Option(None, "--batch-size", help="Texts or images per forward pass (default 256)."),
    chunk_rows: int = typer.Option(None, "--chunk-rows", help="Rows per store append; a kill loses at most one "
                                   "chunk (default 4096)."),
    store_dtype: str = typer.Option(None, "--store-dtype", help="On-disk dtype of a new store: float32 or float16."),
    config: Path = config_option("[embed] section sets EmbedConfig fields."),
    progress: bool = progress_option("Show a progress bar."),
) -> None:
    """Embed names in prompt templates (text rows: one per name per template), a folder of generated images or a
    local Hugging Face image dataset (image rows) with an open_clip model, into an HDF5 embedding store.
    Rerunning the same command resumes: rows already written are skipped, so a killed job loses at most one
    chunk."""
    from namesae.embed import run_embed

    rows = None
    if dataset is not None:  # a local Hugging Face image dataset: its rows, checked before any model loads
        from namesae.datasets_io import dataset_images_dir, dataset_rows
        from namesae.embed import check_one_kind

        check_one_kind(images, names, builtin, rows=True)
        rows = dataset_rows(dataset, dataset_images_dir(out), image_column, name_column, prompt_column, seed_column)

    result = run_embed(out, config, {"model": model, "pretrained": pretrained, "space_tag": space_tag,
                                     "device": device, "dtype": dtype, "normalize": normalize,
                                     "batch_size": batch_size, "chunk_rows": chunk_rows, "store_dtype": store_dtype,
                                     "templates": tuple(templates) if templates else None},
                       names=names, builtin=builtin, top=top, decade=decade, sex=sex, category=category,
                       images=images, progress=progress, rows=rows)
    s = result.summary
    typer.echo(f"embed: {result.written} rows written, {result.skipped} already in the store; store has {s['rows']} "
               f"rows of {s['names']} names, dim {s['dim']}, space {s['space']}")
    from namesae.cli.options import record, store_key

    record(result.path, store_key(s.get("space")))
    typer.echo(f"wrote {result.path}")
