"""`EmbeddingStore`: an open store, its rows read as one, appends as committed segments, merges and folds.
See `namesae.store` for the format and the crash-safety design."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from namesae.errors import StoreError
from namesae.store.files import (
    BLOCK_ROWS,
    COMMITTED,
    CORE_ATTRS,
    DTYPES,
    FORMAT_VERSION,
    INTERNAL_ATTRS,
    KINDS,
    NORM_TOL,
    OPTIONAL_FIELDS,
    READ_ERRORS,
    ROW_FIELDS,
    STRING_FIELDS,
    Block,
    _digest_update,
    _fsync_path,
    _open_part,
    _Part,
    _plain,
    _validated_rows,
    _write_file,
)
from namesae.store.segments import (
    MANIFEST,
    MAX_SEGMENTS,
    SEGMENT_RE,
    TEMP_RE,
    TIER,
    _replace_base,
    _snapshot,
    _tier,
    _write_manifest,
    _WriterLock,
    segments_dir,
)

log = logging.getLogger("namesae.store")

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
