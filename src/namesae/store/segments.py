"""The segments folder beside a store: the manifest that commits segments, the writer lock, and opening a
consistent snapshot (base + listed segments) or replacing the base. See `namesae.store` for the design."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py

from namesae.errors import StoreError
from namesae.store.files import Block, StoreBusyError, _fsync_path, _open_part, _Part, _short, _write_file

TIER = 16
"""Segments whose row counts share a power of TIER are merged once TIER of them sit at the end."""
MAX_SEGMENTS = 64
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "namesae-store-segments"
MANIFEST_VERSION = 1
LOCK = "writer.lock"
SEGMENT_RE = re.compile(r"seg-\d{6,}-[0-9a-f]{8}\.h5")
TEMP_RE = re.compile(r"\.(seg-\d{6,}-[0-9a-f]{8}\.h5|base|manifest)\.tmp-\d+(-[0-9a-f]{8})?")
OPEN_RETRIES = 40


def segments_dir(path: str | Path) -> Path:
    """The folder beside a store that holds its uncompacted segments, manifest and writer lock."""
    path = Path(path)
    return path.with_name(f"{path.name}.segments")



# ---- the writer lock ----------------------------------------------------------------------------------------
class _WriterLock:
    """An exclusive `flock` on `<store>.segments/writer.lock` holding the writer's pid (independent of HDF5's)."""

    def __init__(self, store: Path, wait: float = 0.0) -> None:
        self.store, self.dir = store, segments_dir(store)
        self.file = self.dir / LOCK
        self.fd = -1
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                self.dir.mkdir(exist_ok=True)
            except OSError as err:
                raise StoreError(f"{store}: cannot create {self.dir} for the writer lock ({err.strerror}); the "
                                 f"store's folder must exist and be writable to append") from None
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:
                continue  # the folder was removed by a writer that just finished
            except OSError as err:
                raise StoreError(f"{store}: cannot create the writer lock {self.file} ({err.strerror}); "
                                 f"the store's folder must be writable to append") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self._owner(fd)
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise StoreBusyError(f"{store}: in use by another writer (pid {owner}); wait or use another "
                                         f"--out") from None
                time.sleep(0.05)
                continue
            try:
                same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder unlinked it as we waited: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self.fd = fd
            return

    @staticmethod
    def _owner(fd: int) -> str:
        try:
            text = os.pread(fd, 200, 0).decode(errors="replace").split()
            return text[0] if text and text[0].isdigit() else "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Remove the lock file (and the folder, if empty) while still holding the lock, then unlock."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            self.file.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # only succeeds when nothing else is in it
        os.close(self.fd)
        self.fd = -1


# ---- the manifest -------------------------------------------------------------------------------------------
def _manifest_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    """The validated manifest of a store's segments folder, or None if there is none."""
    file = directory / MANIFEST
    try:
        text = file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise StoreError(f"{file}: cannot read the store's manifest ({err.strerror})") from None

    def bad(what: str) -> StoreError:
        return StoreError(f"{file}: damaged manifest ({what}); restore the store from a copy, or delete the "
                          f"{directory.name} folder to keep only the rows of the base file")

    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("not valid JSON") from None
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    body = {k: v for k, v in doc.items() if k != "sha256"}
    if doc.get("sha256") != _manifest_hash(body):
        raise bad("checksum mismatch")
    if doc.get("format") != MANIFEST_FORMAT:
        raise bad(f"field 'format' = {_short(doc.get('format'))}, expected {MANIFEST_FORMAT!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"field 'version' = {_short(version)} is not a positive integer")
    if version > MANIFEST_VERSION:
        raise StoreError(f"{file}: manifest version {version} is newer than this namesae reads; upgrade namesae")
    if not isinstance(doc.get("base_id"), str) or not doc["base_id"]:
        raise bad(f"field 'base_id' = {_short(doc.get('base_id'))} is not a string")
    generation = doc.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise bad(f"field 'generation' = {_short(generation)} is not a whole number >= 0")
    segments = doc.get("segments")
    if not isinstance(segments, list):
        raise bad("field 'segments' is not a list")
    for i, entry in enumerate(segments):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
                not SEGMENT_RE.fullmatch(entry["file"]) or not isinstance(entry.get("id"), str):
            raise bad(f"segments[{i}] is not {{'file': 'seg-....h5', 'id': ..., 'rows': ...}}")
        rows = entry.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise bad(f"segments[{i}] field 'rows' = {_short(rows)} is not a whole number >= 1")
    if len({e["file"] for e in segments}) != len(segments):
        raise bad("a segment is listed twice")
    return doc


def _write_manifest(directory: Path, base_id: str, generation: int, segments: list[dict[str, Any]]) -> None:
    body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "base_id": base_id,
            "generation": generation, "rows": sum(e["rows"] for e in segments), "segments": segments}
    doc = {**body, "sha256": _manifest_hash(body)}
    tmp = directory / f".manifest.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)
    _fsync_path(directory, directory=True)


def _tier(rows: int) -> int:
    return int(math.log(max(1, rows), TIER))



def _snapshot(path: Path) -> tuple[list[_Part], dict[str, Any] | None]:
    """Open the base and every segment its manifest lists, as one consistent committed snapshot."""
    directory = segments_dir(path)
    missing, last, unchanged = None, None, 0
    for _attempt in range(OPEN_RETRIES):
        parts: list[_Part] = []
        before, manifest = None, None
        try:
            before = os.stat(path)
            parts.append(_open_part(path, 0))
            manifest = _read_manifest(directory)
            base = parts[0]
            if manifest is not None and (base.file_id is None or manifest["base_id"] != base.file_id):
                manifest = None  # names another base: left stale by a fold or by a whole-store rewrite
            start = base.rows
            for entry in (manifest or {}).get("segments", []):
                missing = directory / entry["file"]
                part = _open_part(missing, start)
                part.entry = entry
                parts.append(part)
                start += part.rows
            after = os.stat(path)
            if (before.st_ino, before.st_dev) == (after.st_ino, after.st_dev):
                return parts, manifest
        except FileNotFoundError:
            if not path.exists():
                for p in parts:
                    p.close()
                raise StoreError(f"{path}: store not found") from None
        except BaseException:
            for p in parts:
                p.close()
            raise
        for p in parts:  # a writer replaced a file while we opened them: take a fresh snapshot
            p.close()
        state = (getattr(before, "st_ino", None), (manifest or {}).get("generation"), str(missing))
        unchanged = unchanged + 1 if state == last else 0
        if unchanged >= 3:  # nothing moved: the file is really gone
            break
        last = state
        time.sleep(0.05)
    raise StoreError(f"{missing}: segment listed in {directory / MANIFEST} is missing; restore the store from a "
                     f"copy, or delete {directory.name} to keep only the rows of {path.name}")


def _replace_base(path: Path, n: int, dim: int, dtype: str, chunk_rows: int, optional: Sequence[str],
                  attrs: dict[str, Any], blocks: Iterable[Block], copy_from: h5py.File | None = None) -> None:
    """Write a whole base file in the segments folder and rename it over `path` (the caller holds the lock)."""
    directory = segments_dir(path)
    tmp = directory / f".base.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_file(tmp, n, dim, dtype, chunk_rows, optional, attrs, blocks, uuid.uuid4().hex, copy_from)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent, directory=True)
    # Segments of a previous store at this path belong to a base that is gone.
    stale = _read_manifest_quietly(directory)
    if stale is not None:
        (directory / MANIFEST).unlink(missing_ok=True)
        for entry in stale.get("segments", []):
            (directory / entry["file"]).unlink(missing_ok=True)


def _read_manifest_quietly(directory: Path) -> dict[str, Any] | None:
    try:
        return _read_manifest(directory)
    except StoreError:
        return None
