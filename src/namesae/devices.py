"""The torch device of a command line or config: one resolver for every `--device` option in namesae.

Accepted: "cpu", "cuda", "cuda:N", "mps" and "auto" (cuda when available, else cpu). A device this machine lacks
is refused with one line naming the option and the fix, before any weights are loaded.
"""

from __future__ import annotations

import re

from namesae.errors import ConfigError

DEVICES = ("cpu", "cuda", "cuda:N", "mps", "auto")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(spec: str, option: str = "--device") -> str:
    """The torch device string for `spec` ("auto" -> "cuda" or "cpu"); ConfigError naming `option` when `spec`
    is not one of DEVICES or names a device this machine does not have."""
    import torch

    allowed = "use cpu, cuda, cuda:N, mps or auto"
    if not isinstance(spec, str):
        raise ConfigError(f"{option} {spec!r}: not a device name; {allowed}")
    device = spec.strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{option} mps: no MPS device is available; use {option} cpu or auto")
        return device
    match = _CUDA.fullmatch(device)
    if match is None:
        raise ConfigError(f"{option} {spec!r} is not a device; {allowed}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{option} {device}: no CUDA device is available; use {option} cpu or auto")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ConfigError(f"{option} {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                          f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return device
