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


# The inputs of the analysis commands (identity, groups, features), and the thresholds identity and emergence share.
SAE_DIR = typer.Option(..., "--sae", help="SAE checkpoint directory (written by `namesae train`).")
SAE_STORE_HELP = "Embedding store in the SAE's space (HDF5)"
TAU_P = typer.Option(None, "--tau-p", help="Precision threshold of identity features (default 0.8).")
TAU_R = typer.Option(None, "--tau-r", help="Recall threshold of identity features (default 0.5).")
# The scorers on a synthetic world (`basis score`, `search score`).
WORLD_FOLDER = typer.Option(..., "--world", help="A synthetic world folder (`namesae synth`).")
# The name lists and embedding options of `namesae embed` and `namesae generate`.
NAME_LIST_HELP = "Name list: .txt (one per line), .csv (a 'name' column) or .json (a list)."
TEMPLATES_HELP = "Repeatable: a template kind (portrait, scenario, style) or a text holding {name}. Default: portrait."
NORMALIZE = typer.Option(None, "--normalize/--no-normalize", help="L2-normalise embeddings (default on).")


def out_folder(files: str) -> Any:
    """The `--out` option of a command that writes `files` ("paint.json and paint.csv") into a folder (default .)."""
    return typer.Option(Path("."), "--out", help=f"Folder for {files}.")


def config_option(sets: str) -> Any:
    """The `--config` option; `sets` ("[groups] section sets GroupConfig.") says what its TOML file sets."""
    return typer.Option(None, "--config", help=f"TOML file; its {sets}")


def progress_option(help: str = "Show progress bars.") -> Any:
    """The `--progress/--no-progress` option (on by default; `namesae.cli.conventions` turns it off off a terminal)."""
    return typer.Option(True, "--progress/--no-progress", help=help)


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
