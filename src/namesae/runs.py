"""A run folder's `run.json`: which artefact each namesae command wrote, where, from what, and when.

Every command that writes a run artefact (embed, generate, train, identity, features, groups, emergence, steer,
basis, search, icons, render, demo) records it here, so `namesae report --run DIR` and `namesae playground --run
DIR` find everything and no user writes JSON by hand::

    {"format": "namesae-run", "format_version": 1,
     "artefacts": {"identity": {"path": "identity.json", "command": "namesae identity ...",
                                "written": "2026-12-01T23:50:00+00:00", "inputs": {"store": "world/image.h5"}},
                   "image_store": {"path": "world/image.h5", ...}},
     "decoder": {"pipeline": "kandinsky22", "model": "tiny:steer/tiny_kandinsky22"}}

A run.json of the earlier flat form ({"identity": "identity.json", ...}) is read as format 1 (and rewritten in
format 1 by the next command that records into it). Paths are relative to the folder that holds run.json when they lie inside it, else absolute. The run folder of an
output is the `--run` folder when one is given, else the nearest folder above the output (up to three levels) that
already holds a run.json, else the output's own folder (for a file) or its parent (for a folder). Readers also
merge the run.json files of the run folder's direct subfolders (a `world/run.json` written by `namesae embed`),
the run folder's own entries winning. Updates are serialised by a lock file and written atomically.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import atomic_write_json

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RUN_FORMAT = "namesae-run"
RUN_FORMAT_VERSION = 1
_SEARCH_LEVELS = 3


@dataclass(frozen=True)
class Artefact:
    """One recorded artefact: its resolved path and how it was made."""

    key: str
    path: Path
    command: str = ""
    written: str = ""
    inputs: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunManifest:
    """What run.json (and its subfolders' run.json files) record for a run folder."""

    folder: Path
    artefacts: Mapping[str, Artefact]
    decoder: Mapping[str, Any] | None = None

    def path(self, key: str) -> Path | None:
        """The recorded path of an artefact, or None."""
        found = self.artefacts.get(key)
        return found.path if found is not None else None

    def with_prefix(self, prefix: str) -> dict[str, Artefact]:
        """Artefacts whose key is `prefix` or starts with `prefix.` (e.g. basis, basis.paint, basis.pairs)."""
        return {k: a for k, a in self.artefacts.items() if k == prefix or k.startswith(prefix + ".")}


def run_folder_for(output: str | Path, run: str | Path | None = None) -> Path:
    """The run folder an output belongs to (see the module docstring for the rule)."""
    if run is not None:
        return Path(run)
    out = Path(output).absolute()
    start = out if out.is_dir() else out.parent
    for level, folder in enumerate([start, *start.parents]):
        if level > _SEARCH_LEVELS:
            break
        if (folder / RUN_FILE).is_file():
            return folder
    return out.parent if out.is_dir() else start


def _relative(path: Path, folder: Path) -> str:
    """`path` relative to `folder` when inside it, else absolute."""
    absolute = path.absolute()
    try:
        return absolute.relative_to(folder.absolute()).as_posix() or "."
    except ValueError:
        return str(absolute)


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, quoted for a shell ("namesae identity --store ...")."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = "namesae" if Path(args[0]).name in ("namesae", "__main__.py", "-m") else Path(args[0]).name
    return shlex.join(args)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / (RUN_FILE + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load_raw(path: Path) -> dict[str, Any]:
    """run.json as a dict, checked: format, version and the artefacts mapping."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NamesaeError(f"{path}: unreadable run record ({err}); delete it and re-run the commands, or fix "
                           "the JSON") from None
    if not isinstance(data, dict):
        raise NamesaeError(f"{path}: top level must be an object; delete it and re-run the commands")
    if "format" not in data and "format_version" not in data:  # before format 1: {artefact: relative path}
        bad = next((k for k, v in data.items() if not isinstance(v, str) or not v), None)
        if bad is not None:
            raise NamesaeError(f"{path}: field {bad!r} must be a path relative to the run folder, got "
                               f"{data[bad]!r}; fix it or delete run.json to use the default names")
        data = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "artefacts": {k: {"path": v} for k, v in data.items()}}
    if data.get("format") != RUN_FORMAT or data.get("format_version") != RUN_FORMAT_VERSION:
        raise NamesaeError(f"{path}: field 'format_version' is {data.get('format_version')!r} (format "
                           f"{data.get('format')!r}), this namesae reads {RUN_FORMAT!r} version "
                           f"{RUN_FORMAT_VERSION}; delete it and re-run the commands that wrote the run")
    artefacts = data.get("artefacts")
    if not isinstance(artefacts, dict):
        raise NamesaeError(f"{path}: field 'artefacts' must be an object; delete run.json and re-run the commands")
    for key, entry in artefacts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            raise NamesaeError(f"{path}: field 'artefacts.{key}.path' must be a path; fix it or delete run.json "
                               "and re-run the commands")
    return data


def _update(folder: Path, change: Any) -> Path:
    """Apply `change(data)` to the folder's run.json (created when absent) under its lock, written atomically."""
    with _locked(folder):
        path = folder / RUN_FILE
        data = _load_raw(path) if path.is_file() else {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                                                      "artefacts": {}}
        change(data)
        atomic_write_json(path, data)
    return path


def record_artefact(output: str | Path, key: str, *, run: str | Path | None = None,
                    inputs: Mapping[str, str | Path | None] | None = None, command: str | None = None) -> Path:
    """Record in the run folder's run.json that `output` is the run's artefact `key`; returns run.json's path."""
    folder = run_folder_for(output, run)
    entry: dict[str, Any] = {"path": _relative(Path(output), folder),
                             "command": command if command is not None else command_line(),
                             "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if inputs:
        entry["inputs"] = {k: _relative(Path(v), folder) for k, v in inputs.items() if v is not None}
    path = _update(folder, lambda data: data["artefacts"].__setitem__(key, entry))
    log.debug("run.json %s: %s -> %s", path, key, entry["path"])
    return path


def record_decoder(folder: str | Path, pipeline: str, model: str | None) -> Path:
    """Record the decoder a run's images come from (for icons and the playground)."""
    folder = Path(folder)
    if model is not None and model.startswith("tiny:"):
        model = "tiny:" + _relative(Path(model[5:]), folder)
    return _update(folder, lambda data: data.__setitem__("decoder", {"pipeline": pipeline, "model": model}))


def _resolve(folder: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else folder / path


def _artefacts_of(path: Path) -> tuple[dict[str, Artefact], dict[str, Any] | None]:
    data = _load_raw(path)
    folder = path.parent
    out = {}
    for key, entry in data["artefacts"].items():
        inputs = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
        out[key] = Artefact(key, _resolve(folder, entry["path"]), str(entry.get("command", "")),
                            str(entry.get("written", "")),
                            {k: _resolve(folder, v) for k, v in inputs.items() if isinstance(v, str)})
    decoder = data.get("decoder") if isinstance(data.get("decoder"), dict) else None
    if decoder and isinstance(decoder.get("model"), str) and decoder["model"].startswith("tiny:"):
        decoder = {**decoder, "model": "tiny:" + str(_resolve(folder, decoder["model"][5:]))}
    return out, decoder


def read_run(folder: str | Path) -> RunManifest:
    """The artefacts recorded for a run folder: its run.json merged over its direct subfolders' run.json files."""
    folder = Path(folder)
    artefacts: dict[str, Artefact] = {}
    decoder = None
    subs = sorted(p for p in folder.glob(f"*/{RUN_FILE}") if p.is_file()) if folder.is_dir() else []
    for path in [*subs, folder / RUN_FILE]:
        if path.is_file():
            found, dec = _artefacts_of(path)
            artefacts.update(found)
            decoder = dec or decoder
    return RunManifest(folder, artefacts, decoder)
