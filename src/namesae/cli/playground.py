"""`namesae playground`: a local web page to steer a run's names, rows or images by their SAE features."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from namesae.cli.options import device_option


def playground(
    run: Annotated[Path, typer.Option("--run", help="Run folder (e.g. runs/demo): its sae/, world/image.h5 (or "
                                      "run.json's image_store), identity.json, groups.json and icons/.")],
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1, this "
                                             "machine only; 0.0.0.0 exposes it to the network).")] = None,
    port: Annotated[int, typer.Option("--port", help="Port (default 0: a free one).")] = 0,
    pipeline: Annotated[str, typer.Option("--pipeline", help="kandinsky22 or sd21-unclip.")] = "kandinsky22",
    model: Annotated[str | None, typer.Option("--model", help="Decoder hub id or folder with its weights, or "
                                              "tiny:DIR (default: the demo's tiny decoder, "
                                              "RUN/steer/tiny_kandinsky22).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for exported edit lists and kept uploads "
                                             "(default RUN/playground).")] = None,
    device: str = device_option("for the SAE and the decoder"),
) -> None:
    """Serve the playground for a run folder: pick a name, a row or an image, see its feature groups and top
    features, zero / scale / transfer them, decode the original and the edited image with the same seed, and export
    the edit list that `namesae steer --edit` replays to the same image. Serves until Ctrl-C."""
    from namesae.playground import Playground
    from namesae.playground.app import serve

    opened = Playground.open(run, pipeline=pipeline, model=model, device=device, export_dir=out)
    try:
        served = serve(opened, host=host, port=port)
        typer.echo(f"playground for {run} on {served.url} (Ctrl-C stops it); exports go to {opened.export_dir}")
        served.wait()
    finally:
        opened.close()
