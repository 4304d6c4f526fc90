"""Options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from typing import Any

import typer


def device_option(runs: str) -> Any:
    """The `--device` option; `runs` says what runs on it. Commands hand the value to
    `namesae.devices.resolve_device` first, so a bad or missing device is refused before anything loads."""
    return typer.Option("cpu", "--device", help=f"Torch device for {runs}: cpu (default), cuda, cuda:N, mps or "
                        "auto (cuda when available, else cpu).")
