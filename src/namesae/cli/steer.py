"""`namesae steer`: edit an embedding's SAE features or groups and decode the original and edited images."""

from __future__ import annotations

from pathlib import Path

import typer

from namesae.cli.options import device_option


def steer(
    sae_dir: Path = typer.Option(..., "--sae", help="SAE folder written by `namesae train`."),
    edit: str = typer.Option(..., "--edit", help="Edits: a .json / .toml file or inline JSON, e.g. "
                             "'[{\"op\": \"zero\", \"group\": \"identity\"}, {\"op\": \"add\", \"feature\": 7, "
                             "\"amount\": 2}]'. Ops: set (value), add (amount), scale (factor), zero, transfer "
                             "(alpha, to, from); targets: feature, features or group. '[]' decodes unedited."),
    out: Path = typer.Option(..., "--out", help="Output folder: side_by_side.png (original | edited per seed, edits "
                             "in its metadata), original_s*.png, edited_s*.png, steer.json, embeddings.safetensors."),
    pipeline: str = typer.Option("kandinsky22", "--pipeline", help="kandinsky22 or sd21-unclip."),
    model: str = typer.Option(None, "--model", help="Decoder hub id or folder; tiny:DIR builds a tiny random one in "
                              "the SAE's space. Default: the real model's hub id."),
    prior: str = typer.Option(None, "--prior", help="Kandinsky 2.2 prior (needed for --prompt)."),
    row: int = typer.Option(None, "--row", help="Steer this row of --store."),
    name: str = typer.Option(None, "--name", help="Steer this name's mean image embedding in --store."),
    image: Path = typer.Option(None, "--image", help="Steer this image, embedded by the SAE space's encoder."),
    prompt: str = typer.Option(None, "--prompt", help="Steer the Kandinsky prior's embedding of this text."),
    store: Path = typer.Option(None, "--store", help="Embedding store for --row / --name and row / name references "
                               "in transfers."),
    groups: Path = typer.Option(None, "--groups", help="JSON of named feature groups ({label: [ids]}) that edits "
                                "refer to with \"group\": \"label\"."),
    seeds: list[int] = typer.Option(None, "--seed", help="Repeatable: one image pair per seed (default 0)."),
    keep_norm: bool = typer.Option(False, "--keep-norm", help="Rescale the edited embedding to the original's norm."),
    embed_norm: float = typer.Option(None, "--embed-norm", help="Rescale embeddings to this norm before decoding "
                                     "(unit-norm store rows -> the decoder's native scale)."),
    decode_prompt: str = typer.Option(None, "--decode-prompt", help="SD 2.1 unCLIP: text prompt decoded with the "
                                      "embedding (default empty)."),
    normalize: bool = typer.Option(None, "--normalize/--no-normalize", help="Unit-normalise --image / --prompt "
                                   "embeddings for the SAE (default: as the store, else on)."),
    steps: int = typer.Option(None, "--steps", help="Decoder denoising steps."),
    guidance_scale: float = typer.Option(None, "--guidance-scale", help="Decoder guidance."),
    noise_level: int = typer.Option(None, "--noise-level", help="SD 2.1 unCLIP embedding noise level."),
    height: int = typer.Option(None, "--height", help="Image height."),
    width: int = typer.Option(None, "--width", help="Image width."),
    negative: str = typer.Option("prior", "--negative", help="Kandinsky negative image embedding: prior (the prior's "
                                 "zero-image embedding, as in generation) or zeros (then the prior is loaded only "
                                 "for --prompt)."),
    decoder_space: str = typer.Option(None, "--decoder-space", help="Override the embedding space the decoder is "
                                      "taken to expect (a fine-tune on another CLIP)."),
    device: str = device_option("for the SAE, the decoder pipeline and the image encoder (edits are made on the CPU)"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16."),
) -> None:
    """Steer one embedding through an SAE: f = encode(x), edit f (set / add / scale / zero features or groups,
    transfer a group from another image or name), x' = x + decode(f') - decode(f) so the reconstruction error is
    kept, then decode x and x' with the same seeds into a side-by-side image whose metadata holds the edits."""
    from namesae.steer.run import SteerRequest, run_steer

    request = SteerRequest(
        sae=sae_dir, edits=edit, out=out, pipeline=pipeline, model=model, prior=prior, row=row, name=name,
        image=image, prompt=prompt, store=store, groups=groups, seeds=tuple(seeds or (0,)), keep_norm=keep_norm,
        embed_norm=embed_norm, decode_prompt=decode_prompt, normalize=normalize, steps=steps,
        guidance_scale=guidance_scale, noise_level=noise_level, height=height, width=width, negative=negative,
        decoder_space=decoder_space, device=device, dtype=dtype)
    done = run_steer(request)
    source, summary = done.outcome.source, done.outcome.steered.result.summary()
    typer.echo(f"steered {source.kind} {source.value!r} with {len(done.outcome.edits)} edit(s): cosine to original "
               f"{summary['cosine_to_original'][0]:.4f}, {summary['features_changed'][0]} feature(s) changed")
    from namesae.cli.options import record

    record(done.files.record, "steer" if name is None else f"steer.{name}", sae=sae_dir, store=store)
    typer.echo(f"wrote {done.files.grid} (original | edited, seeds {list(request.seeds)}), {done.files.record}")
