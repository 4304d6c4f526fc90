"""One file of an embedding store (the base or a segment): its layout, checks and checksums; writing one whole.

See `namesae.store` for the format and the crash-safety design.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from namesae.errors import StoreError

log = logging.getLogger("namesae.store")

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
BLOCK_ROWS = 16384


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
        if not file.exists():  # removed as we opened it (HDF5 then says "can't retrieve stat info")
            raise FileNotFoundError(errno.ENOENT, "store file not found", str(file)) from None
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
    attrs = {k: h5.attrs[k] for k in h5.attrs}
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
