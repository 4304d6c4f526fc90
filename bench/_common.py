"""Shared helpers for benchmarks: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The machine, Python and library versions a result was measured with."""
    versions = {}
    for pkg in ("namesae", "torch", "numpy", "sae-lens", "open_clip_torch", "diffusers", "h5py", "scikit-learn",
                "matplotlib", "jinja2"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0], "versions": versions}


def save(name: str, result: dict) -> Path:
    """Write bench/results/<name>.json with the machine and the command that produced it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
    return path
