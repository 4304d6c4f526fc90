"""`namesae generate`: images per name and template through Kandinsky 2.2 or SD 2.1 unCLIP, embedded into a store."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import NAME_LIST_HELP, NORMALIZE, TEMPLATES_HELP, config_option, progress_option


def generate(
    out: Path = typer.Option(..., "--out", help="Output folder: images/, shards/, image.h5 (the store), images.csv, "
                             "generate.json. Rerunning the same command resumes."),
    names: Path = typer.Option(None, "--names", help=NAME_LIST_HELP),
    pipeline: str = typer.Option(None, "--pipeline", help="kandinsky22 or sd21-unclip."),
    model: str = typer.Option(None, "--model", help="Decoder hub id or folder; tiny:DIR builds a tiny random "
                              "pipeline in DIR (offline, for tests and the demo). Default: the real model's hub id."),
    prior: str = typer.Option(None, "--prior", help="Kandinsky 2.2 prior hub id or folder (default: the hub prior "
                              "or DIR/prior of a namesae folder)."),
    n: int = typer.Option(None, "--n", "--n-images", help="Images per name and template (default 9). Under torchrun "
                          "write --n-images: torchrun's own parser takes --n for one of its options."),
    templates: list[str] = typer.Option(None, "--templates", "-t", help=TEMPLATES_HELP + " Under torchrun write "
                                        "--templates (torchrun takes -t)."),
    seed_offset: int = typer.Option(None, "--seed-offset", help="Image j gets seed SEED_OFFSET + j (default 0)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per pipeline call (default 8)."),
    steps: int = typer.Option(None, "--steps", help="Decoder denoising steps (default: the pipeline's)."),
    guidance_scale: float = typer.Option(None, "--guidance-scale", help="Decoder guidance (default: the pipeline's)."),
    prior_steps: int = typer.Option(None, "--prior-steps", help="Kandinsky prior steps."),
    height: int = typer.Option(None, "--height", help="Image height in pixels."),
    width: int = typer.Option(None, "--width", help="Image width in pixels."),
    encoder: str = typer.Option(None, "--encoder", help="open_clip model embedding the images (default: the one of "
                                "the decoder's space, e.g. ViT-bigG-14 for Kandinsky 2.2)."),
    pretrained: str = typer.Option(None, "--pretrained", help="open_clip tag of --encoder."),
    device: str = typer.Option(None, "--device", help="cpu (default), cuda (each rank its LOCAL_RANK GPU), cuda:N, "
                               "mps, auto."),
    dtype: str = typer.Option(None, "--dtype", help="float32 (default), float16, bfloat16."),
    normalize: bool = NORMALIZE,
    rank: int = typer.Option(None, "--rank", help="Manual sharding without a launcher: this process's rank; merge "
                             "later with --merge-only. Under torchrun / accelerate launch, ranks come from the env."),
    world_size: int = typer.Option(None, "--world-size", help="Manual sharding: number of processes."),
    merge_only: bool = typer.Option(False, "--merge-only", help="Only merge DIR/shards/*.h5 into DIR/image.h5."),
    config: Path = config_option("[generate] section sets GenerateConfig fields."),
    progress: bool = progress_option("Show a progress bar per rank."),
) -> None:
    """Draw N images per name and prompt template with fixed seeds, write them as PNG (name, prompt, seed and
    decoder in the metadata) and their CLIP image embeddings into a store. Resumable: a restarted run skips
    finished images and never duplicates a row. Parallel: `torchrun --nproc_per_node K $(which namesae) generate
    --n-images 9 --templates portrait ...` (long option names: torchrun's parser claims --n and -t) gives each rank a deterministic slice and its own shard; rank 0 merges them at the end."""
    if merge_only:
        from namesae.generate import merge_generated
        from namesae.store import EmbeddingStore

        path = merge_generated(out)
        with EmbeddingStore.open(path) as store:
            typer.echo(f"merged {store.summary()['rows']} rows into {path}")
        return
    from namesae.generate import run_generate_files

    result = run_generate_files(out, names, config, {
        "pipeline": pipeline, "model": model, "prior": prior, "n": n, "seed_offset": seed_offset,
        "batch_size": batch_size, "steps": steps, "guidance_scale": guidance_scale, "prior_steps": prior_steps,
        "height": height, "width": width, "encoder": encoder, "pretrained": pretrained, "device": device,
        "dtype": dtype, "normalize": normalize, "templates": tuple(templates) if templates else None},
        rank=rank, world_size=world_size, progress=progress)
    ranks = result.ranks
    shard = result.shard
    typer.echo(f"rank {ranks.rank}/{ranks.world}: {shard.generated} images drawn, {shard.embedded_from_disk} "
               f"embedded from disk, {shard.skipped} already done -> {shard.shard}")
    if result.store is not None:
        from namesae.cli.options import record

        record(result.store, "image_store")
        record(out / "generate.json", "generate")
        typer.echo(f"wrote {result.summary['rows']} rows to {result.store}, images under {out / 'images'}, "
                   f"{out / 'generate.json'}")
    elif ranks.rank == 0 and not ranks.launched:
        typer.echo(f"run every rank, then: namesae generate --merge-only --out {out}")
