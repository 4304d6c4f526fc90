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
    from namesae.devices import resolve_device
    from namesae.errors import NamesaeError

    device = resolve_device(device)
    chosen = [k for k, v in (("--row", row), ("--name", name), ("--image", image), ("--prompt", prompt))
              if v is not None]
    if len(chosen) != 1:
        raise NamesaeError(f"give exactly one of --row, --name, --image, --prompt (got {chosen or 'none'})")
    if (row is not None or name is not None) and store is None:
        raise NamesaeError(f"{chosen[0]} needs --store, the embedding store the row or name lives in")
    from namesae.decoders import (
        DecodeSettings,
        check_space,
        describe_decoder,
        encoder_for_space,
        load_decoder,
        quiet_loading,
        resolve_model,
    )
    from namesae.sae import load_sae
    from namesae.steer import CodeRef, Transfer, load_edits, load_groups, resolve_edits, sae_functions
    from namesae.steer.images import (
        reference_embeddings,
        source_from_image,
        source_from_prompt,
        source_from_store,
        steer_images,
        write_steer_outputs,
    )
    from namesae.store import EmbeddingStore

    edits = load_edits(edit, load_groups(groups) if groups is not None else None)
    needs_prior = prompt is not None or any(
        isinstance(ref, CodeRef) and ref.kind == "prompt"
        for e in edits if isinstance(e, Transfer) for ref in (e.target, e.source))
    sae = load_sae(sae_dir, device=device)
    settings = DecodeSettings(height=height, width=width, steps=steps, guidance_scale=guidance_scale,
                              noise_level=noise_level, embed_norm=embed_norm,
                              negative=negative if pipeline == "kandinsky22" else None)
    opened = EmbeddingStore.open(store) if store is not None else None
    try:
        if opened is not None and (opened.dim != sae.d_in or sae.space not in (None, opened.space)):
            from namesae.errors import SpaceMismatchError
            raise SpaceMismatchError(f"{store}: space '{opened.space}' ({opened.dim}-d) but the SAE {sae_dir} was "
                                     f"trained on '{sae.space}' ({sae.d_in}-d); pass the store it was trained on")
        model_path = resolve_model(pipeline, model, space=sae.space, dim=sae.d_in)
        check_space(describe_decoder(pipeline, model_path, prior, decoder_space), sae.space, sae.d_in,
                    f"SAE {sae_dir}")  # before minutes of loading weights
        quiet_loading()
        decoder = load_decoder(pipeline, model_path, prior, device=device, dtype=dtype, settings=settings,
                               space=decoder_space, load_prior=negative != "zeros" or needs_prior)
        check_space(decoder.info, sae.space, sae.d_in, f"SAE {sae_dir}")
        unit = normalize if normalize is not None else (opened.normalized if opened is not None else True)

        def image_encoder():  # built only when an image must be embedded
            from namesae.encoders import load_encoder

            spec = encoder_for_space(sae.space or decoder.space)
            if spec is None:
                raise NamesaeError(f"the SAE's space {sae.space!r} has no open_clip image encoder to embed images")
            return load_encoder(spec["model"], spec["pretrained"], device=device, dtype=dtype, normalize=unit)

        seed_list = list(seeds) if seeds else [0]
        if prompt is not None:
            source = source_from_prompt(decoder, prompt, seed_list[0], unit)
        elif image is not None:
            source = source_from_image(image_encoder(), image)
        else:
            source = source_from_store(opened, row=row, name=name)
        encode, decode = sae_functions(sae)
        edits = resolve_edits(edits, encode, reference_embeddings(opened, image_encoder, decoder, unit, seed_list[0]))
        prompts = [decode_prompt] if decode_prompt is not None and pipeline == "sd21-unclip" else None
        steered = steer_images(source.embedding, edits, encode, decode, decoder, seed_list, keep_norm=keep_norm,
                               scale=source.scale, prompts=prompts)
    finally:
        if opened is not None:
            opened.close()
    from namesae.decoders import info_dict

    meta = {"namesae": "steer", "sae": {"dir": str(sae_dir), "space": sae.space, "d_in": sae.d_in,
                                        "d_sae": sae.d_sae},
            "decoder": info_dict(decoder.info, decoder.settings), "source": source.describe(),
            "keep_norm": keep_norm, "decode_prompt": decode_prompt}
    files = write_steer_outputs(out, steered, meta)
    summary = steered.result.summary()
    typer.echo(f"steered {source.kind} {source.value!r} with {len(edits)} edit(s): cosine to original "
               f"{summary['cosine_to_original'][0]:.4f}, {summary['features_changed'][0]} feature(s) changed")
    from namesae.cli.options import record

    record(files.record, "steer" if name is None else f"steer.{name}", sae=sae_dir, store=store)
    typer.echo(f"wrote {files.grid} (original | edited, seeds {seed_list}), {files.record}")
