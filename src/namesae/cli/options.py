"""Options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from typing import Any

import typer


def device_option(what: str) -> Any:
    """The `--device` option; `what` ("for the SAE's encoding") says what runs on it. Commands hand the value to
    `namesae.devices.resolve_device` first, so a bad or missing device is refused before anything loads."""
    return typer.Option("cpu", "--device", help=f"Torch device {what}: cpu (default), cuda, cuda:N, mps or "
                        "auto (cuda when available, else cpu).")
