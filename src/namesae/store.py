"""The embedding store: rows of (embedding, name, prompt, kind[, seed, image]) in one embedding space.

Format (DESIGN.md): datasets `embeddings` [N, d] float16/float32, `name`, `prompt`, `kind` (utf-8 strings),
optional `seed` (int64, -1 for text rows) and `image` (path relative to the store's folder); root attributes
`format_version` (1), `space`, `dim`, `normalized`. Any extra dataset or attribute is allowed and preserved.

On disk a store is the HDF5 file at its path (the *base*, in exactly that layout) plus, while rows are being
appended, a folder beside it, `<file>.segments/`:

    image.h5                     the base: written whole, to a temporary file that is fsynced and renamed
    image.h5.segments/
      manifest.json              the committed segments, in row order; replaced atomically (temp, fsync, rename)
      seg-000003-1f2e3d4c.h5     one append (or several merged): a complete little store of the same layout
      writer.lock                the writer's pid; `fcntl.flock`ed by the one process allowed to write

Appends never touch committed bytes: each is written to a temporary segment file, fsynced, renamed, and only then
listed in a new manifest, which is the commit. A SIGKILL at any moment leaves either the old manifest or the new
one; files no manifest lists are removed by the next writer. Segments of one size class are merged (tiered, so
segments stay few and each row is rewritten O(log N) times), and closing a writer whose segments hold at least as
many rows as the base folds everything into a new base, renamed over the old one (the manifest names the base it
extends by a random id, so a manifest left stale by a fold is recognised and ignored). A finished job therefore
leaves a single file in the DESIGN.md layout; a killed one leaves the base plus its committed segments.

Checks: files namesae writes use the HDF5 1.10 format (checksummed superblock, object headers and chunk indexes),
fletcher32 on every numeric chunk, and a sha256 per string field (the global heap that holds
variable-length strings has no checksum of its own) in the root attribute `namesae_digests`; the manifest carries
its own sha256. Rows of a store marked normalized must have unit norm (within NORM_TOL) at append and on read.
Any mismatch is a StoreError naming the file. Stores written by other tools (no `rows_committed`, no digests) are
read in full with whatever checks their files carry; legacy namesae files keep `rows_committed`, and rows past it
are ignored. A legacy base is rewritten once, atomically, in the current layout before its first new segment.

Readers take no lock: they open the base, the manifest and every listed segment, and retry if a writer replaced
something in between, so they see a consistent committed snapshot while a writer appends.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from namesae.errors import StoreError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STRING_FIELDS = ("name", "prompt", "kind")
OPTIONAL_FIELDS = ("seed", "image")
ROW_FIELDS = ("embeddings", *STRING_FIELDS, *OPTIONAL_FIELDS)
KINDS = ("text", "image")
DTYPES = ("float16", "float32")
COMMITTED = "rows_committed"
STORE_ID = "namesae_store_id"
DIGESTS = "namesae_digests"
INTERNAL_ATTRS = (COMMITTED, STORE_ID, DIGESTS)
CORE_ATTRS = ("format_version", "space", "dim", "normalized")
LIBVER = ("v110", "latest")  # the 1.10 file format: checksummed metadata, readable by HDF5 >= 1.10
NORM_TOL = 1e-2
"""|norm - 1| allowed for a row of a normalized store: float16 rounding moves a unit norm by ~1e-3."""
TIER = 16
"""Segments whose row counts share a power of TIER are merged once TIER of them sit at the end."""
MAX_SEGMENTS = 64
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "namesae-store-segments"
MANIFEST_VERSION = 1
LOCK = "writer.lock"
SEGMENT_RE = re.compile(r"seg-\d{6,}-[0-9a-f]{8}\.h5")
TEMP_RE = re.compile(r"\.(seg-\d{6,}-[0-9a-f]{8}\.h5|base|manifest)\.tmp-\d+(-[0-9a-f]{8})?")
BLOCK_ROWS = 16384
OPEN_RETRIES = 40


class StoreBusyError(StoreError):
    """The store is being written by another process."""


# ---- small helpers ---------------------------------------------------------------------------------------------
def _as_array(embeddings: Any) -> np.ndarray:
    """Embeddings from numpy, torch or nested lists as a 2-D float32 array."""
    if hasattr(embeddings, "detach"):  # torch tensor, without importing torch
        embeddings = embeddings.detach().float().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float32)


def _strings(values: Sequence[str] | str, n: int, field: str, where: str) -> list[str]:
    """A list of n strings, broadcasting a single string; refuses wrong lengths and non-strings."""
    if isinstance(values, str):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise StoreError(f"{where}: field '{field}' has {len(values)} values for {n} embeddings")
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise StoreError(f"{where}: field '{field}' row {i} is {type(v).__name__}, expected str")
        if "\x00" in v:
            raise StoreError(f"{where}: field '{field}' row {i} contains a NUL character")
    return values


def segments_dir(path: str | Path) -> Path:
    """The folder beside a store that holds its uncompacted segments, manifest and writer lock."""
    path = Path(path)
    return path.with_name(f"{path.name}.segments")


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest_update(h: Any, raw: Sequence[bytes]) -> None:
    if len(raw):
        h.update(b"\x00".join(raw))
        h.update(b"\x00")


def _short(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _int_attr(value: Any, key: str, where: str, minimum: int) -> int:
    """An attribute that must be a whole number >= minimum, or one clear StoreError."""
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or (isinstance(value, (float, np.floating)) and not float(value).is_integer()) or value < minimum:
        raise StoreError(f"{where}: root attribute '{key}' = {_short(value)} is not a whole number >= {minimum}; "
                         f"fix it (h5py) or rebuild the store")
    return int(value)


def _text_attr(value: Any, key: str, where: str) -> str:
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            value = None
    if not isinstance(value, str) or not value:
        raise StoreError(f"{where}: root attribute '{key}' = {_short(value)} is not a non-empty string; "
                         f"fix it (h5py) or rebuild the store")
    return value


def _bool_attr(value: Any, key: str, where: str) -> bool:
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise StoreError(f"{where}: root attribute '{key}' = {_short(value)} is not a boolean; fix it (h5py) or "
                     f"rebuild the store")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


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


# ---- writing one HDF5 file ------------------------------------------------------------------------------------
Block = tuple[np.ndarray, dict[str, Any]]


def _write_file(file: Path, n: int, dim: int, dtype: str, chunk_rows: int, optional: Sequence[str],
                attrs: dict[str, Any], blocks: Iterable[Block], file_id: str,
                copy_from: h5py.File | None = None) -> None:
    """Write a complete store file of n rows from blocks of (embeddings, columns), with checksums, then fsync."""
    text = h5py.string_dtype("utf-8")
    chunk = max(1, min(int(chunk_rows), n) if n else int(chunk_rows))
    strings = [f for f in (*STRING_FIELDS, "image") if f in STRING_FIELDS or f in optional]
    hashes = {f: hashlib.sha256() for f in strings}
    with h5py.File(file, "w", libver=LIBVER) as h5:
        emb = h5.create_dataset("embeddings", shape=(n, dim), maxshape=(None, dim), dtype=dtype,
                                chunks=(chunk, dim), fletcher32=True)
        # HDF5 filters (fletcher32) do not apply to variable-length strings: their digests guard them instead.
        out = {f: h5.create_dataset(f, shape=(n,), maxshape=(None,), dtype=text, chunks=(chunk,)) for f in strings}
        if "seed" in optional:
            out["seed"] = h5.create_dataset("seed", shape=(n,), maxshape=(None,), dtype="int64", chunks=(chunk,),
                                            fletcher32=True)
        pos = 0
        for x, columns in blocks:
            m = len(x)
            if pos + m > n:
                raise StoreError(f"{file}: more rows than the {n} planned")  # a bug, not bad input
            if m == 0:
                continue
            emb[pos:pos + m] = np.asarray(x).astype(dtype, copy=False)
            for f, ds in out.items():
                values = columns[f]
                if f == "seed":
                    ds[pos:pos + m] = np.asarray(values, dtype=np.int64)
                else:
                    raw = [v.encode("utf-8") for v in values]
                    _digest_update(hashes[f], raw)
                    ds[pos:pos + m] = np.array(raw, dtype=object)
            pos += m
        if pos != n:
            raise StoreError(f"{file}: {pos} rows written of the {n} planned")
        if copy_from is not None:  # extra datasets and groups of the file this one replaces
            for key in copy_from:
                if key not in h5:
                    copy_from.copy(copy_from[key], h5, name=key)
        for key, value in attrs.items():
            if key not in INTERNAL_ATTRS:
                h5.attrs[key] = value
        h5.attrs[COMMITTED] = n
        h5.attrs[STORE_ID] = file_id
        h5.attrs[DIGESTS] = json.dumps({"rows": n, **{f: h.hexdigest() for f, h in hashes.items()}})
    _fsync_path(file)


# ---- reading one HDF5 file ------------------------------------------------------------------------------------
@dataclass
class _Part:
    """One file of a store: the base or a segment, its rows [start, start + rows) of the whole store."""

    file: Path
    h5: h5py.File
    start: int
    rows: int
    file_id: str | None
    digests: dict[str, Any] | None
    entry: dict[str, Any] | None = None  # its manifest entry (segments only)
    attrs: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.close()


def _damaged(file: Path, err: BaseException) -> StoreError:
    text = " ".join(str(err).split()) or type(err).__name__
    if "lock" in text.lower() and ("errno = 11" in text or "unable to lock" in text.lower()):
        return StoreBusyError(f"{file}: in use by another writer (HDF5 file lock: {text[:120]}); wait or use "
                              f"another --out")
    return StoreError(f"{file}: damaged or not an HDF5 store ({text[:160]}); restore it from a copy or rebuild it "
                      f"by re-running the job that wrote it")


READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError, IndexError)


def _open_part(file: Path, start: int) -> _Part:
    """Open and validate one store file (datasets, dtypes, lengths, root attributes); raise StoreError if bad."""
    try:
        h5 = h5py.File(file, "r")
    except FileNotFoundError:
        raise
    except READ_ERRORS as err:
        raise _damaged(file, err) from None
    try:
        return _validate_part(file, h5, start)
    except StoreError:
        h5.close()
        raise
    except READ_ERRORS as err:
        h5.close()
        raise _damaged(file, err) from None
    except BaseException:
        h5.close()
        raise


def _validate_part(file: Path, h5: h5py.File, start: int) -> _Part:
    where = str(file)
    missing = [f for f in ("embeddings", *STRING_FIELDS) if f not in h5]
    if missing:
        raise StoreError(f"{where}: missing dataset(s) {missing}; not a namesae store (see DESIGN.md)")
    emb = h5["embeddings"]
    if not isinstance(emb, h5py.Dataset) or emb.ndim != 2:
        raise StoreError(f"{where}: dataset 'embeddings' has shape {getattr(emb, 'shape', None)}, expected [N, d]")
    if emb.dtype not in (np.float16, np.float32):
        raise StoreError(f"{where}: dataset 'embeddings' has dtype {emb.dtype}; expected float16/32")
    attrs = {k: h5.attrs[k] for k in h5.attrs.keys()}
    for attr in ("space", "dim"):
        if attr not in attrs:
            raise StoreError(f"{where}: missing root attribute '{attr}'")
    values: dict[str, Any] = {"space": _text_attr(attrs["space"], "space", where),
                              "dim": _int_attr(attrs["dim"], "dim", where, 1),
                              "normalized": _bool_attr(attrs.get("normalized", False), "normalized", where),
                              "format_version": _int_attr(attrs.get("format_version", FORMAT_VERSION),
                                                          "format_version", where, 1)}
    if values["dim"] != emb.shape[1]:
        raise StoreError(f"{where}: attribute 'dim' = {values['dim']} but 'embeddings' has {emb.shape[1]} columns; "
                         f"fix the attribute or rebuild the store")
    if values["format_version"] > FORMAT_VERSION:
        raise StoreError(f"{where}: format_version {values['format_version']} is newer than this namesae reads "
                         f"({FORMAT_VERSION}); upgrade namesae")
    lengths = {}
    for f in ROW_FIELDS:
        if f in h5:
            ds = h5[f]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != (2 if f == "embeddings" else 1):
                raise StoreError(f"{where}: dataset '{f}' has shape {getattr(ds, 'shape', None)}; expected "
                                 f"{'[N, d]' if f == 'embeddings' else '[N]'}")
            kind = ds.dtype.kind
            if f == "seed" and kind not in "iu":
                raise StoreError(f"{where}: dataset 'seed' has dtype {ds.dtype}; expected int64")
            if f not in ("embeddings", "seed") and kind not in "OS":
                raise StoreError(f"{where}: dataset '{f}' has dtype {ds.dtype}; expected utf-8 strings")
            lengths[f] = ds.shape[0]
    if COMMITTED in attrs:
        n = _int_attr(attrs[COMMITTED], COMMITTED, where, 0)
        short = {f: m for f, m in lengths.items() if m < n}
        if short:
            raise StoreError(f"{where}: damaged: {COMMITTED} = {n} but dataset(s) {short} are shorter")
        if any(m > n for m in lengths.values()):
            log.warning("%s: ignoring rows past %s=%d left by an interrupted append", where, COMMITTED, n)
    else:
        if len(set(lengths.values())) != 1:
            raise StoreError(f"{where}: datasets have different lengths {lengths}; all must be N")
        n = lengths["embeddings"]
    file_id = None
    if STORE_ID in attrs:
        file_id = _text_attr(attrs[STORE_ID], STORE_ID, where)
    digests = None
    if DIGESTS in attrs:
        try:
            digests = json.loads(_text_attr(attrs[DIGESTS], DIGESTS, where))
            if not isinstance(digests, dict) or digests.get("rows") != n or \
                    not all(isinstance(digests.get(f), str) for f in STRING_FIELDS):
                raise ValueError("fields")
        except ValueError:
            raise StoreError(f"{where}: damaged: root attribute '{DIGESTS}' does not match the file; restore it "
                             f"from a copy or rebuild the store") from None
    user = {}
    for k, v in attrs.items():
        if k not in INTERNAL_ATTRS:
            user[k] = v
    user.update(values)
    return _Part(file, h5, start, n, file_id, digests, attrs=user)


def _validated_rows(where: str, dim: int, normalized: bool, optional: Sequence[str], embeddings: Any,
                    names: Sequence[str], prompts: Sequence[str], kinds: Sequence[str] | str,
                    seeds: Sequence[int] | None, images: Sequence[str] | None) -> Block:
    """Rows to write as (float32 embeddings, columns), or one StoreError naming the store and the field."""
    x = _as_array(embeddings)
    if x.ndim != 2 or x.shape[1] != dim:
        raise StoreError(f"{where}: cannot append embeddings of shape {tuple(x.shape)}; the store's dim is "
                         f"{dim}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise StoreError(f"{where}: refusing to append: new row {int(np.flatnonzero(~finite)[0])} holds NaN/Inf")
    if normalized and len(x):
        norms = np.linalg.norm(x, axis=1)
        off = np.abs(norms - 1.0) > NORM_TOL
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise StoreError(f"{where}: refusing to append: new row {i} has norm {norms[i]:.4g} but the store is "
                             f"marked normalized; L2-normalise the rows or use a store with normalized=False")
    n = x.shape[0]
    columns: dict[str, Any] = {
        "name": _strings(names, n, "name", where),
        "prompt": _strings(prompts, n, "prompt", where),
        "kind": _strings(kinds, n, "kind", where),
    }
    bad_kinds = set(columns["kind"]) - set(KINDS)
    if bad_kinds:
        raise StoreError(f"{where}: field 'kind' has {sorted(bad_kinds)}; use 'text' or 'image'")
    if any(not v for v in columns["name"]):
        raise StoreError(f"{where}: field 'name' has an empty name")
    if seeds is not None:
        if "seed" not in optional:
            raise StoreError(f"{where}: store has no 'seed' dataset; create it with optional=('seed', ...)")
        try:
            seeds_arr = np.asarray(list(seeds), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise StoreError(f"{where}: field 'seed' must hold whole numbers") from None
        if seeds_arr.shape != (n,):
            raise StoreError(f"{where}: field 'seed' has {seeds_arr.size} values for {n} embeddings")
        columns["seed"] = seeds_arr
    elif "seed" in optional:
        columns["seed"] = np.full(n, -1, dtype=np.int64)
    if images is not None:
        if "image" not in optional:
            raise StoreError(f"{where}: store has no 'image' dataset; create it with optional=('image', ...)")
        columns["image"] = _strings(images, n, "image", where)
    elif "image" in optional:
        columns["image"] = [""] * n
    return x, columns


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


# ---- the store ----------------------------------------------------------------------------------------------
class EmbeddingStore:
    """An open embedding store (read with mode "r", append with mode "a"); use as a context manager."""

    def __init__(self, path: Path, mode: str, parts: list[_Part], manifest: dict[str, Any] | None,
                 lock: _WriterLock | None = None) -> None:
        self.path = Path(path)
        self.mode = mode
        self._parts = parts
        self._manifest = manifest
        self._lock = lock
        self._cache: dict[str, Any] = {}
        self._n = sum(p.rows for p in parts)
        base = parts[0]
        self._attrs = base.attrs
        emb = base.h5["embeddings"]
        self._dtype = str(emb.dtype)
        self._chunk_rows = int(emb.chunks[0]) if emb.chunks else 4096
        self._optional = tuple(f for f in OPTIONAL_FIELDS if f in base.h5)
        for part in parts[1:]:
            self._check_segment(part)

    # ---- opening -------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        dim: int,
        space: str,
        normalized: bool = False,
        dtype: str = "float32",
        chunk_rows: int = 4096,
        overwrite: bool = False,
        attrs: dict[str, Any] | None = None,
        optional: Sequence[str] = ("seed", "image"),
        wait: float = 0.0,
    ) -> EmbeddingStore:
        """Create an empty store at `path` (atomically) and open it for appending."""
        path = Path(path)
        if dtype not in DTYPES:
            raise StoreError(f"{path}: dtype '{dtype}' is not supported; use one of {DTYPES}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise StoreError(f"{path}: dim must be a positive integer, got {dim!r}")
        if not space or not isinstance(space, str):
            raise StoreError(f"{path}: space must be a non-empty string such as 'open_clip:ViT-B-32:openai:text'")
        unknown = set(optional) - set(OPTIONAL_FIELDS)
        if unknown:
            raise StoreError(f"{path}: unknown optional field(s) {sorted(unknown)}; use {OPTIONAL_FIELDS}")
        if path.exists() and not overwrite:
            raise StoreError(f"{path}: already exists; open it with mode 'a' to append or pass overwrite=True")
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(path, wait)
        try:
            if path.exists() and not overwrite:
                raise StoreError(f"{path}: already exists; open it with mode 'a' to append or pass overwrite=True")
            core = {"format_version": FORMAT_VERSION, "space": space, "dim": int(dim), "normalized": bool(normalized)}
            _replace_base(path, 0, int(dim), dtype, max(1, int(chunk_rows)), tuple(optional),
                          {**(attrs or {}), **core}, iter(()))
            store = cls._open_locked(path, lock)
        except BaseException:
            lock.release()
            raise
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", wait: float = 0.0) -> EmbeddingStore:
        """Open an existing store for reading ("r") or appending ("a", waiting up to `wait` s for the lock)."""
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not path.is_file():
            raise StoreError(f"{path}: store not found")
        if mode == "r":
            parts, manifest = _snapshot(path)
            return cls(path, "r", parts, manifest)
        lock = _WriterLock(path, wait)
        try:
            return cls._open_locked(path, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(cls, path: Path, lock: _WriterLock) -> EmbeddingStore:
        if not path.is_file():
            raise StoreError(f"{path}: store not found")
        parts, manifest = _snapshot(path)
        try:
            store = cls(path, "a", parts, manifest, lock)
        except BaseException:
            for p in parts:
                p.close()
            raise
        store._remove_leftovers()
        return store

    def _check_segment(self, part: _Part) -> None:
        base = self._parts[0].attrs
        for attr in ("space", "dim", "normalized"):
            if part.attrs[attr] != base[attr]:
                raise StoreError(f"{part.file}: damaged segment: attribute '{attr}' = {part.attrs[attr]!r} but the "
                                 f"base {self.path} has {base[attr]!r}")
        if str(part.h5["embeddings"].dtype) != self._dtype or \
                tuple(f for f in OPTIONAL_FIELDS if f in part.h5) != self._optional:
            raise StoreError(f"{part.file}: damaged segment: its datasets differ from the base {self.path}")
        if part.entry is not None and (part.file_id != part.entry["id"] or part.rows != part.entry["rows"]):
            raise StoreError(f"{part.file}: damaged segment: id/rows differ from {MANIFEST}; restore the store "
                             f"from a copy")

    def close(self, fold: bool = True, raise_errors: bool = True) -> None:
        """Close the store; a writer first folds its segments into the base when they hold as many rows as it.

        A fold reads every row, so it finds damage: it is then raised (the committed segments stay as they are),
        or only logged when `raise_errors` is False (closing on another exception)."""
        try:
            if fold and self._lock is not None and self._lock.fd >= 0:
                seg_rows = self._n - self._parts[0].rows
                if len(self._parts) > 1 and seg_rows >= self._parts[0].rows:
                    try:
                        self.compact()
                    except (StoreError, OSError) as err:
                        if raise_errors:
                            if isinstance(err, StoreError):
                                raise
                            raise StoreError(f"{self.path}: could not fold the segments into the base "
                                             f"({err.strerror or err}); the committed rows are kept") from None
                        log.warning("%s: could not fold the segments into the base (%s); they stay committed",
                                    self.path, err)
        finally:
            for p in self._parts:
                p.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(raise_errors=exc_type is None)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, rows={self._n}, dim={self.dim}, space={self.space!r})"

    # ---- attributes ----------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self._attrs["dim"])

    @property
    def space(self) -> str:
        """The embedding space identifier, e.g. 'open_clip:ViT-bigG-14:laion2b_s39b_b160k:image'."""
        return str(self._attrs["space"])

    @property
    def normalized(self) -> bool:
        """Whether rows were L2-normalised when written (and are checked for unit norm)."""
        return bool(self._attrs["normalized"])

    @property
    def dtype(self) -> str:
        """On-disk dtype of the embeddings."""
        return self._dtype

    @property
    def chunk_rows(self) -> int:
        """Rows per HDF5 chunk of the embeddings (the natural read block)."""
        return self._chunk_rows

    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes as plain Python values (`rows_committed` is the store's row count)."""
        out = {k: _plain(v) for k, v in self._attrs.items()}
        out[COMMITTED] = self._n
        return out

    @property
    def files(self) -> list[Path]:
        """The files that hold the store's rows: the base, then its committed segments."""
        return [p.file for p in self._parts]

    # ---- metadata columns ----------------------------------------------------------------------------------
    def _part_column(self, part: _Part, field: str) -> np.ndarray:
        """One field of one file, checked against its digest (strings) or fletcher32 (numbers)."""
        try:
            ds = part.h5[field]
            if ds.dtype.kind not in "OS":
                return np.asarray(ds[: part.rows]).astype(np.int64)
            raw = ds[: part.rows].tolist() if part.rows else []
            if part.digests is not None and field in part.digests:
                h = hashlib.sha256()
                _digest_update(h, raw)
                if h.hexdigest() != part.digests[field]:
                    raise StoreError(f"{part.file}: damaged dataset '{field}' (checksum mismatch); restore the store "
                                     f"from a copy or rebuild it by re-running the job")
            out = np.empty(len(raw), dtype=object)
            out[:] = [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in raw]
            return out
        except READ_ERRORS as err:
            raise StoreError(f"{part.file}: damaged dataset '{field}' ({' '.join(str(err).split())[:120]}); "
                             f"restore the store from a copy or rebuild it") from None

    def _column(self, field: str) -> np.ndarray | None:
        if field not in self._cache:
            if field not in (*STRING_FIELDS, *self._optional):
                return None
            cols = [self._part_column(p, field) for p in self._parts]
            self._cache[field] = np.concatenate(cols) if len(cols) > 1 else cols[0]
        return self._cache[field]

    @property
    def names(self) -> np.ndarray:
        """Name of each row (object array of str, [N])."""
        return self._column("name")

    @property
    def prompts(self) -> np.ndarray:
        """Prompt of each row (object array of str, [N])."""
        return self._column("prompt")

    @property
    def kinds(self) -> np.ndarray:
        """Kind of each row, 'text' or 'image' (object array of str, [N])."""
        return self._column("kind")

    @property
    def seeds(self) -> np.ndarray:
        """Generation seed of each row, -1 where absent (int64, [N])."""
        seeds = self._column("seed")
        return np.full(self._n, -1, dtype=np.int64) if seeds is None else seeds.astype(np.int64)

    @property
    def images(self) -> np.ndarray | None:
        """Image path of each row relative to the store's folder, or None if the store has no images."""
        return self._column("image")

    def name_index(self) -> dict[str, np.ndarray]:
        """Row indices of every name, names in order of first appearance."""
        if "_name_index" not in self._cache:
            names = self.names
            uniq, first, inverse = np.unique(names.astype(str), return_index=True, return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
            groups = np.split(order.astype(np.int64), bounds)
            self._cache["_name_index"] = {str(uniq[i]): groups[i] for i in np.argsort(first)}
        return self._cache["_name_index"]

    def unique_names(self) -> list[str]:
        """Distinct names in order of first appearance."""
        return list(self.name_index())

    def rows_of(self, name: str) -> np.ndarray:
        """Row indices of one name (empty if the name is absent)."""
        return self.name_index().get(name, np.array([], dtype=np.int64))

    def select(self, kind: str | None = None, names: Sequence[str] | None = None) -> np.ndarray:
        """Row indices matching a kind and/or a set of names, in row order."""
        mask = np.ones(self._n, dtype=bool)
        if kind is not None:
            if kind not in KINDS:
                raise StoreError(f"{self.path}: unknown kind '{kind}'; use one of {KINDS}")
            mask &= self.kinds == kind
        if names is not None:
            mask &= np.isin(self.names.astype(str), np.asarray(list(names), dtype=str))
        return np.flatnonzero(mask).astype(np.int64)

    def done_keys(self) -> set[tuple[str, str, str, int]]:
        """Keys (kind, name, prompt, seed) of rows already written, so a restarted job can skip them."""
        return set(zip(self.kinds.tolist(), self.names.tolist(), self.prompts.tolist(), self.seeds.tolist()))

    def summary(self) -> dict[str, Any]:
        """A small dict describing the store, for printing."""
        kinds, counts = np.unique(self.kinds.astype(str), return_counts=True) if self._n else ([], [])
        return {
            "path": str(self.path), "rows": self._n, "dim": self.dim, "dtype": self.dtype, "space": self.space,
            "normalized": self.normalized, "names": len(self.name_index()),
            "kinds": {str(k): int(c) for k, c in zip(kinds, counts)},
        }

    # ---- embeddings ----------------------------------------------------------------------------------------
    def _checked(self, block: np.ndarray, rows: np.ndarray | int, file: Path) -> np.ndarray:
        """Refuse NaN/Inf rows, and rows off the unit sphere in a normalized store; `rows` numbers the block's rows
        (an array, or the first row of a contiguous block)."""
        block = np.asarray(block, dtype=np.float32)
        if not len(block):
            return block
        squares = np.einsum("ij,ij->i", block, block)  # one pass: NaN/Inf anywhere in a row makes its sum non-finite
        if not np.isfinite(squares).all():
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                i = int(np.flatnonzero(~finite)[0])
                row = rows + i if isinstance(rows, int) else int(rows[i])
                raise StoreError(f"{file}: dataset 'embeddings' row {row} holds NaN/Inf; drop or re-embed it")
        if self.normalized:
            off = ~(np.abs(squares - 1.0) <= 2 * NORM_TOL)  # |x|^2 - 1 ~ 2(|x| - 1); NaN counts as off
            if off.any():
                i = int(np.flatnonzero(off)[0])
                row = rows + i if isinstance(rows, int) else int(rows[i])
                raise StoreError(f"{file}: dataset 'embeddings' row {row} has norm {np.sqrt(squares[i]):.4g} but the "
                                 f"store is marked normalized; the file is damaged or was written unnormalized: "
                                 f"rebuild it")
        return block

    def _raw(self, start: int, stop: int) -> list[tuple[_Part, int, np.ndarray]]:
        """On-disk embeddings of rows [start, stop) as (file, first row, block) pieces, one per file touched."""
        pieces = []
        for part in self._parts:
            a, b = max(start, part.start), min(stop, part.start + part.rows)
            if a >= b:
                continue
            try:
                pieces.append((part, a, part.h5["embeddings"][a - part.start:b - part.start]))
            except READ_ERRORS as err:
                raise StoreError(f"{part.file}: damaged dataset 'embeddings' ({' '.join(str(err).split())[:120]}); "
                                 f"restore the store from a copy or rebuild it") from None
        return pieces

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Embeddings of rows [start, stop) as float32 [rows, d]."""
        stop = self._n if stop is None else min(int(stop), self._n)
        start = max(0, int(start))
        if start >= stop:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = [self._checked(raw, a, part.file) for part, a, raw in self._raw(start, stop)]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def read_rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of the given rows, in the given order, read as contiguous runs (float32 [len, d])."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if idx.min() < 0 or idx.max() >= self._n:
            raise StoreError(f"{self.path}: row index out of range [0, {self._n})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((len(uniq), self.dim), dtype=np.float32)
        # Split where the gap exceeds a chunk (reading a gap is cheaper than another h5py call, up to a point), and
        # into blocks of at most BLOCK_ROWS rows; only the rows asked for are converted and checked.
        breaks = np.flatnonzero((np.diff(uniq) > self.chunk_rows)
                                | (np.diff(uniq // max(BLOCK_ROWS, self.chunk_rows)) != 0)) + 1
        pos = 0
        for run in np.split(uniq, breaks):
            for part, a, raw in self._raw(int(run[0]), int(run[-1]) + 1):
                mine = run[(run >= a) & (run < a + len(raw))]
                out[pos:pos + len(mine)] = self._checked(raw[mine - a], mine, part.file)
                pos += len(mine)
        return out[inverse]

    def iter_chunks(
        self, rows_per_chunk: int | None = None, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, float32 block) over rows [start, stop) in chunk-aligned blocks."""
        stop = self._n if stop is None else min(int(stop), self._n)
        size = rows_per_chunk or self.chunk_rows * max(1, BLOCK_ROWS // self.chunk_rows)
        pos = int(start)
        while pos < stop:
            end = min(stop, pos + size)
            yield pos, self.read(pos, end)
            pos = end

    def _blocks(self, parts: Sequence[_Part]) -> Iterator[Block]:
        """(embeddings, columns) blocks of the given parts, for rewriting them: embeddings copied in their on-disk
        dtype (fletcher32 verified by HDF5; values were checked when appended), strings checked by digest."""
        for part in parts:
            columns = {f: self._part_column(part, f) for f in (*STRING_FIELDS, *self._optional)}
            for a in range(0, part.rows, BLOCK_ROWS):
                b = min(part.rows, a + BLOCK_ROWS)
                try:
                    x = part.h5["embeddings"][a:b]
                except READ_ERRORS as err:
                    raise StoreError(f"{part.file}: damaged dataset 'embeddings' "
                                     f"({' '.join(str(err).split())[:120]}); restore the store from a copy or "
                                     f"rebuild it") from None
                yield x, {f: v[a:b] for f, v in columns.items()}

    # ---- writing -------------------------------------------------------------------------------------------
    def append(
        self,
        embeddings: Any,
        names: Sequence[str],
        prompts: Sequence[str],
        kinds: Sequence[str] | str,
        seeds: Sequence[int] | None = None,
        images: Sequence[str] | None = None,
    ) -> None:
        """Append rows as one new segment; they are committed (and visible) once the manifest lists it."""
        if self.mode != "a" or self._lock is None:
            raise StoreError(f"{self.path}: opened read-only; open with mode 'a' to append")
        x, columns = _validated_rows(str(self.path), self.dim, self.normalized, self._optional, embeddings, names,
                                     prompts, kinds, seeds, images)
        n = len(x)
        if n == 0:
            return
        base = self._parts[0]
        extra = [k for k, ds in base.h5.items() if k not in ROW_FIELDS and isinstance(ds, h5py.Dataset)
                 and ds.maxshape[:1] == (None,)]
        if extra:
            raise StoreError(f"{self.path}: store has extra per-row dataset(s) {extra}; namesae cannot append to it")
        if base.file_id is None:
            self._migrate_base()
        part = self._write_segment([(x, columns)], n)
        self._commit(self._segments() + [part], added=part)
        for f, values in columns.items():  # keep the loaded columns current instead of re-reading every file
            if f in self._cache:
                self._cache[f] = np.concatenate([self._cache[f], np.asarray(values, dtype=self._cache[f].dtype)])
        self._cache.pop("_name_index", None)
        self._merge_tiers()

    def _segments(self) -> list[_Part]:
        return self._parts[1:]

    def _write_segment(self, blocks: Iterable[Block], n: int) -> _Part:
        """Write rows as a new segment file (temp, fsync, rename) and open it; not yet listed in the manifest."""
        directory = segments_dir(self.path)
        generation = (self._manifest or {}).get("generation", 0) + 1
        file_id = uuid.uuid4().hex
        name = f"seg-{generation:06d}-{file_id[:8]}.h5"
        tmp = directory / f".{name}.tmp-{os.getpid()}"
        core = {k: self._attrs[k] for k in CORE_ATTRS}
        try:
            _write_file(tmp, n, self.dim, self._dtype, self._chunk_rows, self._optional, core, blocks, file_id)
            os.replace(tmp, directory / name)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{directory / name}: cannot write the segment ({err.strerror or err}); the committed "
                             f"rows are kept, free disk space and resume") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_path(directory, directory=True)
        part = _open_part(directory / name, 0)
        part.entry = {"file": name, "id": file_id, "rows": n}
        return part

    def _commit(self, segments: list[_Part], added: _Part | None = None, dropped: Sequence[_Part] = ()) -> None:
        """Publish a new list of segments (the commit point), then drop the files it no longer lists."""
        directory = segments_dir(self.path)
        generation = (self._manifest or {}).get("generation", 0) + 1
        entries = [p.entry for p in segments]
        try:
            _write_manifest(directory, self._parts[0].file_id, generation, entries)
        except BaseException:
            if added is not None:
                added.close()
                (directory / added.entry["file"]).unlink(missing_ok=True)
            raise
        self._manifest = {"generation": generation, "base_id": self._parts[0].file_id, "segments": entries}
        start = self._parts[0].rows
        for p in segments:
            p.start = start
            start += p.rows
        self._parts = [self._parts[0], *segments]
        self._n = start
        for p in dropped:
            p.close()
            (directory / p.entry["file"]).unlink(missing_ok=True)

    def _merge_tiers(self) -> None:
        """Merge the trailing segments of one size class (or all, past MAX_SEGMENTS) into one segment, or fold
        them all into the base when they hold as many rows as it (so each row is rewritten O(log N) times)."""
        while True:
            segs = self._segments()
            if len(segs) > MAX_SEGMENTS:
                run = segs
            elif len(segs) >= TIER and len({_tier(p.rows) for p in segs[-TIER:]}) == 1:
                run = segs[-TIER:]
            else:
                return
            if sum(p.rows for p in segs) >= self._parts[0].rows:
                self.compact()  # copies no more than the merge would, and leaves one file
                return
            rows = sum(p.rows for p in run)
            merged = self._write_segment(self._blocks(run), rows)
            keep = segs[:len(segs) - len(run)]
            self._commit(keep + [merged], added=merged, dropped=run)

    def compact(self) -> None:
        """Fold every segment into a new base file renamed over the store's path (atomic); a single file remains."""
        if self.mode != "a" or self._lock is None:
            raise StoreError(f"{self.path}: opened read-only; open with mode 'a' to compact")
        segs = self._segments()
        if not segs and self._parts[0].file_id is not None:
            return
        old = self._parts
        base = old[0]
        user = {k: v for k, v in base.attrs.items() if k not in INTERNAL_ATTRS}
        user["format_version"] = FORMAT_VERSION
        _replace_base(self.path, self._n, self.dim, self._dtype, self._chunk_rows, self._optional, user,
                      self._blocks(old), copy_from=base.h5)
        # The new base holds every row; the manifest now names the old base, so it is stale: remove it.
        directory = segments_dir(self.path)
        (directory / MANIFEST).unlink(missing_ok=True)
        for p in old:
            p.close()
        for p in segs:
            (directory / p.entry["file"]).unlink(missing_ok=True)
        self._parts = [_open_part(self.path, 0)]
        self._manifest = None
        self._n = self._parts[0].rows
        self._attrs = self._parts[0].attrs

    def _migrate_base(self) -> None:
        """Rewrite a base without a namesae id (older namesae, other tools) in the current layout, atomically."""
        log.info("%s: rewriting the store in the current layout (checksums, segment support)", self.path)
        self.compact()

    def _remove_leftovers(self) -> None:
        """Delete what interrupted namesae writers left in the segments folder: temporary files, segments no
        manifest lists, and a manifest that names a base which is no longer there. Holds the writer lock."""
        directory = segments_dir(self.path)
        listed = {p.entry["file"] for p in self._segments()}
        stale_manifest = self._manifest is None and (directory / MANIFEST).exists()
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for name in names:
            leftover = TEMP_RE.fullmatch(name) or (SEGMENT_RE.fullmatch(name) and name not in listed) or \
                (name == MANIFEST and stale_manifest)
            if leftover:
                log.debug("%s: removing %s left by an interrupted writer", self.path, name)
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()

    def truncate_uncommitted(self) -> None:
        """Remove what an interrupted append left behind (never a committed row; appends do this themselves)."""
        if self.mode != "a" or self._lock is None:
            raise StoreError(f"{self.path}: opened read-only; open with mode 'a' to repair")
        self._remove_leftovers()

    def validate(self) -> dict[str, Any]:
        """Read every row and check checksums, values (NaN/Inf, unit norm) and string fields; return the summary."""
        for _ in self.iter_chunks():
            pass
        _ = self.names, self.prompts, self.seeds, self.images
        bad_kinds = set(np.unique(self.kinds.astype(str))) - set(KINDS) if self._n else set()
        if bad_kinds:
            raise StoreError(f"{self.path}: dataset 'kind' holds {sorted(bad_kinds)}; allowed: {KINDS}")
        return self.summary()


def _snapshot(path: Path) -> tuple[list[_Part], dict[str, Any] | None]:
    """Open the base and every segment its manifest lists, as one consistent committed snapshot."""
    directory = segments_dir(path)
    missing, last, unchanged = None, None, 0
    for _attempt in range(OPEN_RETRIES):
        parts: list[_Part] = []
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
        state = (before.st_ino, (manifest or {}).get("generation"), str(missing))
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


def write_store(
    path: str | Path,
    embeddings: Any,
    names: Sequence[str],
    prompts: Sequence[str],
    kinds: Sequence[str] | str,
    space: str,
    normalized: bool = False,
    seeds: Sequence[int] | None = None,
    images: Sequence[str] | None = None,
    dtype: str = "float32",
    attrs: dict[str, Any] | None = None,
    chunk_rows: int = 4096,
    wait: float = 0.0,
) -> Path:
    """Write a whole store at once, atomically (temp file, fsync, rename), replacing any store there; returns path."""
    path = Path(path)
    x = _as_array(embeddings)
    if x.ndim != 2:
        raise StoreError(f"{path}: embeddings must be [N, d], got shape {tuple(x.shape)}")
    if dtype not in DTYPES:
        raise StoreError(f"{path}: dtype '{dtype}' is not supported; use one of {DTYPES}")
    if x.shape[1] == 0:
        raise StoreError(f"{path}: dim must be a positive integer, got 0")
    if not space or not isinstance(space, str):
        raise StoreError(f"{path}: space must be a non-empty string such as 'open_clip:ViT-B-32:openai:text'")
    optional = tuple(f for f, v in (("seed", seeds), ("image", images)) if v is not None)
    core = {"format_version": FORMAT_VERSION, "space": space, "dim": int(x.shape[1]), "normalized": bool(normalized)}
    block = _validated_rows(str(path), int(x.shape[1]), bool(normalized), optional, x, names, prompts, kinds, seeds,
                            images)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _WriterLock(path, wait)
    try:
        _replace_base(path, len(x), x.shape[1], dtype, min(int(chunk_rows), max(1, len(x))), optional,
                      {**(attrs or {}), **core}, [block])
    finally:
        lock.release()
    return path


def merge_stores(shard_paths: Sequence[str | Path], out_path: str | Path, sort: bool = False,
                 rows_per_block: int = 16384, wait: float = 0.0) -> Path:
    """Merge shard stores of one space into one store, in the given shard order (or sorted by key), atomically."""
    out_path = Path(out_path)
    if not shard_paths:
        raise StoreError(f"{out_path}: no shards to merge")
    shards: list[EmbeddingStore] = []
    try:
        for p in shard_paths:
            shards.append(EmbeddingStore.open(p))
        first = shards[0]
        for s in shards[1:]:
            for attr in ("dim", "space", "normalized"):
                if getattr(s, attr) != getattr(first, attr):
                    raise StoreError(f"{s.path}: attribute '{attr}' = {getattr(s, attr)!r} differs from "
                                     f"{first.path} ({getattr(first, attr)!r}); shards must share one space")
        has_seed = any("seed" in s._optional for s in shards)
        has_image = any(s.images is not None for s in shards)
        attrs = {k: v for k, v in first._attrs.items() if k not in CORE_ATTRS}
        optional = tuple(f for f, flag in (("seed", has_seed), ("image", has_image)) if flag)
        pairs = [(i, r) for i, s in enumerate(shards) for r in range(len(s))]
        if sort:  # by (name, prompt, kind, seed)
            pairs.sort(key=lambda p: (shards[p[0]].names[p[1]], shards[p[0]].prompts[p[1]],
                                      shards[p[0]].kinds[p[1]], int(shards[p[0]].seeds[p[1]])))

        def blocks() -> Iterator[Block]:
            for b in range(0, len(pairs), rows_per_block):
                block = pairs[b:b + rows_per_block]
                emb = np.empty((len(block), first.dim), dtype=np.float32)
                by_shard: dict[int, list[int]] = {}
                for pos, (i, _) in enumerate(block):
                    by_shard.setdefault(i, []).append(pos)
                for i, positions in by_shard.items():
                    emb[positions] = shards[i].read_rows([block[p][1] for p in positions])
                cols: dict[str, Any] = {
                    "name": [shards[i].names[r] for i, r in block],
                    "prompt": [shards[i].prompts[r] for i, r in block],
                    "kind": [shards[i].kinds[r] for i, r in block]}
                if has_seed:
                    cols["seed"] = [int(shards[i].seeds[r]) for i, r in block]
                if has_image:
                    cols["image"] = [(shards[i].images[r] if shards[i].images is not None else "") for i, r in block]
                yield emb.astype(first.dtype), cols

        core = {"format_version": FORMAT_VERSION, "space": first.space, "dim": first.dim,
                "normalized": first.normalized}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(out_path, wait)
        try:
            _replace_base(out_path, len(pairs), first.dim, first.dtype, first.chunk_rows, optional,
                          {**attrs, **core}, blocks())
        finally:
            lock.release()
    finally:
        for s in shards:
            s.close()
    return out_path


__all__ = ["EmbeddingStore", "StoreBusyError", "merge_stores", "segments_dir", "write_store", "DTYPES", "KINDS",
           "NORM_TOL", "FORMAT_VERSION"]
