"""Options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

# The text-encoder options of `namesae basis` and `namesae search` (one definition each).
MODEL_HELP = ("open_clip model (ViT-H-14, ViT-bigG-14, ...) or a tiny offline model; must be the encoder of the "
              "vocabulary and of the target's store.")
PRETRAINED_HELP = "open_clip tag or checkpoint (seed<N> for tiny)."
WORLD_HELP = "A synthetic world folder (`namesae synth`): use its toy text encoder instead of --model."
MODEL = typer.Option(None, "--model", help=MODEL_HELP)
PRETRAINED = typer.Option(None, "--pretrained", help=PRETRAINED_HELP)
WORLD = typer.Option(None, "--world", help=WORLD_HELP)


def device_option(what: str) -> Any:
    """The `--device` option; `what` ("for the SAE's encoding") says what runs on it. Commands hand the value to
    `namesae.devices.resolve_device` first, so a bad or missing device is refused before anything loads."""
    return typer.Option("cpu", "--device", help=f"Torch device {what}: cpu (default), cuda, cuda:N, mps or "
                        "auto (cuda when available, else cpu).")


def store_key(space: str | None) -> str:
    """The run.json key of an embedding store by its space: image_store, text_store or dino_store."""
    space = space or ""
    if space.startswith("dinov2:"):
        return "dino_store"
    return "text_store" if space.endswith(":text") else "image_store"


def record(output: Any, key: str, run: Any = None, **inputs: Any) -> None:
    """Record a command's artefact in its run folder's run.json (namesae.runs; `run`: that folder, else found from
    the output); a failure is a warning only."""
    import logging

    from namesae.errors import NamesaeError
    from namesae.runs import record_artefact

    try:
        record_artefact(output, key, run=run, inputs=inputs or None)
    except (NamesaeError, OSError) as err:  # the artefact itself is written; say why the record is not
        logging.getLogger("namesae.runs").warning("%s not recorded in run.json: %s", output, err)


def wrote(paths: Sequence[Path], key: str) -> None:
    """Record a command's artefact (its JSON file, else its first file) in run.json under `key`, and say where
    every file went."""
    record(next((p for p in paths if str(p).endswith(".json")), paths[0]), key)
    for path in paths:
        typer.echo(f"wrote {path}")
