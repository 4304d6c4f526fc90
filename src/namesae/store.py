"""The embedding store: one HDF5 file per embedding space, rows of (embedding, name, prompt, kind[, seed, image]).

Format (DESIGN.md): datasets `embeddings` [N, d] float16/float32, `name`, `prompt`, `kind` (utf-8 strings),
optional `seed` (int64, -1 for text rows) and `image` (path relative to the store's folder); root attributes
`format_version` (1), `space`, `dim`, `normalized`. Any extra dataset or attribute is allowed and preserved.

Crash safety: appends resize every dataset, write, flush, and only then advance the root attribute
`rows_committed`. A job killed mid-append leaves rows past `rows_committed`; readers ignore them and the next
append truncates them, so a restarted job neither loses nor duplicates a row. A file whose HDF5 metadata was cut
off is reported as damaged. Stores written by other tools (no `rows_committed`) are read in full.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from namesae.errors import StoreError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STRING_FIELDS = ("name", "prompt", "kind")
KINDS = ("text", "image")
DTYPES = ("float16", "float32")
COMMITTED = "rows_committed"


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
    return values


class EmbeddingStore:
    """An open embedding store (read with mode "r", append with mode "a"); use as a context manager."""

    def __init__(self, path: Path, h5: h5py.File, mode: str) -> None:
        self.path = Path(path)
        self._h5 = h5
        self.mode = mode
        self._cache: dict[str, np.ndarray] = {}
        self._n = self._validate_layout()

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
    ) -> EmbeddingStore:
        """Create an empty store at `path` and open it for appending."""
        path = Path(path)
        if dtype not in DTYPES:
            raise StoreError(f"{path}: dtype '{dtype}' is not supported; use one of {DTYPES}")
        if not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise StoreError(f"{path}: dim must be a positive integer, got {dim!r}")
        if not space or not isinstance(space, str):
            raise StoreError(f"{path}: space must be a non-empty string such as 'open_clip:ViT-B-32:openai:text'")
        if path.exists() and not overwrite:
            raise StoreError(f"{path}: already exists; open it with mode 'a' to append or pass overwrite=True")
        path.parent.mkdir(parents=True, exist_ok=True)
        chunk_rows = max(1, int(chunk_rows))
        with h5py.File(path, "w") as h5:
            h5.create_dataset("embeddings", shape=(0, dim), maxshape=(None, dim), dtype=dtype,
                              chunks=(chunk_rows, dim))
            text = h5py.string_dtype("utf-8")
            for field in STRING_FIELDS:
                h5.create_dataset(field, shape=(0,), maxshape=(None,), dtype=text, chunks=(chunk_rows,))
            if "seed" in optional:
                h5.create_dataset("seed", shape=(0,), maxshape=(None,), dtype="int64", chunks=(chunk_rows,))
            if "image" in optional:
                h5.create_dataset("image", shape=(0,), maxshape=(None,), dtype=text, chunks=(chunk_rows,))
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["space"] = space
            h5.attrs["dim"] = int(dim)
            h5.attrs["normalized"] = bool(normalized)
            h5.attrs[COMMITTED] = 0
            for key, value in (attrs or {}).items():
                h5.attrs[key] = value
        return cls.open(path, mode="a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> EmbeddingStore:
        """Open an existing store for reading ("r") or appending ("a"), validating its layout."""
        path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not path.is_file():
            raise StoreError(f"{path}: store not found")
        try:
            h5 = h5py.File(path, "r" if mode == "r" else "r+")
        except OSError as err:
            raise StoreError(
                f"{path}: damaged or not an HDF5 store ({err}); rebuild it by re-running the job that wrote it"
            ) from None
        try:
            return cls(path, h5, mode)
        except BaseException:
            h5.close()
            raise

    def _validate_layout(self) -> int:
        """Check datasets, dtypes, lengths and attributes; return the number of readable rows."""
        h5, where = self._h5, str(self.path)
        try:
            missing = [f for f in ("embeddings", *STRING_FIELDS) if f not in h5]
            if missing:
                raise StoreError(f"{where}: missing dataset(s) {missing}; not a namesae store (see DESIGN.md)")
            emb = h5["embeddings"]
            if emb.ndim != 2:
                raise StoreError(f"{where}: dataset 'embeddings' has shape {emb.shape}, expected [N, d]")
            if emb.dtype not in (np.float16, np.float32):
                raise StoreError(f"{where}: dataset 'embeddings' has dtype {emb.dtype}; expected float16/32")
            for attr in ("space", "dim"):
                if attr not in h5.attrs:
                    raise StoreError(f"{where}: missing root attribute '{attr}'")
            if int(h5.attrs["dim"]) != emb.shape[1]:
                raise StoreError(
                    f"{where}: attribute 'dim' = {int(h5.attrs['dim'])} but 'embeddings' has "
                    f"{emb.shape[1]} columns; fix the attribute or rebuild the store"
                )
            version = int(h5.attrs.get("format_version", FORMAT_VERSION))
            if version > FORMAT_VERSION:
                raise StoreError(f"{where}: format_version {version} is newer than this namesae reads "
                                 f"({FORMAT_VERSION}); upgrade namesae")
            lengths = {f: h5[f].shape[0] for f in ("embeddings", *STRING_FIELDS, "seed", "image") if f in h5}
            if COMMITTED in h5.attrs:
                n = int(h5.attrs[COMMITTED])
                short = {f: m for f, m in lengths.items() if m < n}
                if short:
                    raise StoreError(f"{where}: damaged: {COMMITTED} = {n} but dataset(s) {short} are shorter")
                if any(m > n for m in lengths.values()):
                    log.warning("%s: ignoring rows past %s=%d left by an interrupted append", where, COMMITTED, n)
            else:
                if len(set(lengths.values())) != 1:
                    raise StoreError(f"{where}: datasets have different lengths {lengths}; all must be N")
                n = lengths["embeddings"]
            return n
        except OSError as err:
            raise StoreError(f"{where}: damaged store ({err}); rebuild it by re-running the job") from None

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, rows={self._n}, dim={self.dim}, space={self.space!r})"

    # ---- attributes ----------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self._h5.attrs["dim"])

    @property
    def space(self) -> str:
        """The embedding space identifier, e.g. 'open_clip:ViT-bigG-14:laion2b_s39b_b160k:image'."""
        space = self._h5.attrs["space"]
        return space.decode() if isinstance(space, bytes) else str(space)

    @property
    def normalized(self) -> bool:
        """Whether rows were L2-normalised when written."""
        return bool(self._h5.attrs.get("normalized", False))

    @property
    def dtype(self) -> str:
        """On-disk dtype of the embeddings."""
        return str(self._h5["embeddings"].dtype)

    @property
    def chunk_rows(self) -> int:
        """Rows per HDF5 chunk of the embeddings (the natural read block)."""
        chunks = self._h5["embeddings"].chunks
        return int(chunks[0]) if chunks else 4096

    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes as plain Python values."""
        out = {}
        for key, value in self._h5.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, np.generic):
                value = value.item()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[key] = value
        return out

    # ---- metadata columns ----------------------------------------------------------------------------------
    def _column(self, field: str) -> np.ndarray | None:
        if field not in self._cache:
            if field not in self._h5:
                return None
            try:
                ds = self._h5[field]
                if ds.dtype.kind in ("O", "S", "U"):
                    values = ds.asstr()[: self._n] if self._n else np.array([], dtype=object)
                    self._cache[field] = np.asarray(values, dtype=object)
                else:
                    self._cache[field] = np.asarray(ds[: self._n])
            except (OSError, UnicodeDecodeError) as err:
                raise StoreError(f"{self.path}: damaged dataset '{field}' ({err}); rebuild the store") from None
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
            index = {str(uniq[i]): groups[i] for i in np.argsort(first)}
            self._cache["_name_index"] = index  # type: ignore[assignment]
        return self._cache["_name_index"]  # type: ignore[return-value]

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
    def _checked(self, block: np.ndarray, start: int) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise StoreError(f"{self.path}: dataset 'embeddings' row {bad} holds NaN/Inf; drop or re-embed it")
        return block

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Embeddings of rows [start, stop) as float32 [rows, d]."""
        stop = self._n if stop is None else min(int(stop), self._n)
        start = max(0, int(start))
        if start >= stop:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            return self._checked(self._h5["embeddings"][start:stop], start)
        except OSError as err:
            raise StoreError(f"{self.path}: damaged dataset 'embeddings' ({err}); rebuild the store") from None

    def read_rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Embeddings of the given rows, in the given order, read as contiguous runs (float32 [len, d])."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if idx.min() < 0 or idx.max() >= self._n:
            raise StoreError(f"{self.path}: row index out of range [0, {self._n})")
        uniq, inverse = np.unique(idx, return_inverse=True)
        out = np.empty((len(uniq), self.dim), dtype=np.float32)
        # Split where the gap exceeds a chunk: reading a gap is cheaper than another h5py call, up to a point.
        breaks = np.flatnonzero(np.diff(uniq) > self.chunk_rows) + 1
        pos = 0
        for run in np.split(uniq, breaks):
            block = self.read(int(run[0]), int(run[-1]) + 1)
            out[pos:pos + len(run)] = block[run - run[0]]
            pos += len(run)
        return out[inverse]

    def iter_chunks(
        self, rows_per_chunk: int | None = None, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_row, float32 block) over rows [start, stop) in chunk-aligned blocks."""
        stop = self._n if stop is None else min(int(stop), self._n)
        size = rows_per_chunk or self.chunk_rows * max(1, 16384 // self.chunk_rows)
        pos = int(start)
        while pos < stop:
            end = min(stop, pos + size)
            yield pos, self.read(pos, end)
            pos = end

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
        """Append rows; they become visible only once fully written (crash-safe)."""
        where = str(self.path)
        if self.mode != "a":
            raise StoreError(f"{where}: opened read-only; open with mode 'a' to append")
        x = _as_array(embeddings)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise StoreError(f"{where}: cannot append embeddings of shape {tuple(x.shape)}; the store's dim is "
                             f"{self.dim}")
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise StoreError(f"{where}: refusing to append: new row {bad} holds NaN/Inf")
        n = x.shape[0]
        if n == 0:
            return
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
        h5 = self._h5
        if seeds is not None:
            seeds_arr = np.asarray(list(seeds), dtype=np.int64)
            if seeds_arr.shape != (n,):
                raise StoreError(f"{where}: field 'seed' has {seeds_arr.size} values for {n} embeddings")
            if "seed" not in h5:
                raise StoreError(f"{where}: store has no 'seed' dataset; create it with optional=('seed', ...)")
            columns["seed"] = seeds_arr
        elif "seed" in h5:
            columns["seed"] = np.full(n, -1, dtype=np.int64)
        if images is not None:
            if "image" not in h5:
                raise StoreError(f"{where}: store has no 'image' dataset; create it with optional=('image', ...)")
            columns["image"] = _strings(images, n, "image", where)
        elif "image" in h5:
            columns["image"] = [""] * n
        extra = [k for k, ds in h5.items() if k not in columns and k != "embeddings"
                 and isinstance(ds, h5py.Dataset) and ds.maxshape[:1] == (None,)]
        if extra:
            raise StoreError(f"{where}: store has extra per-row dataset(s) {extra}; namesae cannot append to it")
        n0 = self._n
        h5["embeddings"].resize(n0 + n, axis=0)
        h5["embeddings"][n0:] = x.astype(h5["embeddings"].dtype)
        for field, values in columns.items():
            h5[field].resize(n0 + n, axis=0)
            h5[field][n0:] = values
        h5.flush()
        h5.attrs[COMMITTED] = n0 + n
        h5.flush()
        self._n = n0 + n
        self._cache.clear()

    def truncate_uncommitted(self) -> None:
        """Drop rows left past `rows_committed` by an interrupted append."""
        if self.mode != "a":
            raise StoreError(f"{self.path}: opened read-only; open with mode 'a' to repair")
        for key in ("embeddings", *STRING_FIELDS, "seed", "image"):
            if key in self._h5 and self._h5[key].shape[0] > self._n:
                self._h5[key].resize(self._n, axis=0)
        self._h5.attrs[COMMITTED] = self._n
        self._h5.flush()

    def validate(self) -> dict[str, Any]:
        """Read every row and check values (NaN/Inf) and string fields; return the summary or raise StoreError."""
        for _ in self.iter_chunks():
            pass
        bad_kinds = set(np.unique(self.kinds.astype(str))) - set(KINDS) if self._n else set()
        if bad_kinds:
            raise StoreError(f"{self.path}: dataset 'kind' holds {sorted(bad_kinds)}; allowed: {KINDS}")
        return self.summary()


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


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
) -> Path:
    """Write a whole store at once, atomically (temp file + rename); returns its path."""
    path = Path(path)
    x = _as_array(embeddings)
    if x.ndim != 2:
        raise StoreError(f"{path}: embeddings must be [N, d], got shape {tuple(x.shape)}")
    tmp = _tmp_path(path)
    optional = tuple(f for f, v in (("seed", seeds), ("image", images)) if v is not None)
    try:
        store = EmbeddingStore.create(tmp, x.shape[1], space, normalized, dtype,
                                      min(chunk_rows, max(1, len(x))), overwrite=True, attrs=attrs,
                                      optional=optional)
        with store:
            store.append(x, names, prompts, kinds, seeds=seeds, images=images)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def merge_stores(shard_paths: Sequence[str | Path], out_path: str | Path, sort: bool = False,
                 rows_per_block: int = 16384) -> Path:
    """Merge shard stores of one space into one store, in the given shard order (or sorted by key), atomically."""
    out_path = Path(out_path)
    if not shard_paths:
        raise StoreError(f"{out_path}: no shards to merge")
    shards = [EmbeddingStore.open(p) for p in shard_paths]
    try:
        first = shards[0]
        for s in shards[1:]:
            for attr in ("dim", "space", "normalized"):
                if getattr(s, attr) != getattr(first, attr):
                    raise StoreError(f"{s.path}: attribute '{attr}' = {getattr(s, attr)!r} differs from "
                                     f"{first.path} ({getattr(first, attr)!r}); shards must share one space")
        has_seed = any("seed" in s._h5 for s in shards)
        has_image = any(s.images is not None for s in shards)
        attrs = {k: v for k, v in first.attrs.items()
                 if k not in ("format_version", "space", "dim", "normalized", COMMITTED)}
        optional = tuple(f for f, flag in (("seed", has_seed), ("image", has_image)) if flag)
        tmp = _tmp_path(out_path)
        try:
            with EmbeddingStore.create(tmp, first.dim, first.space, first.normalized, first.dtype,
                                       first.chunk_rows, overwrite=True, attrs=attrs, optional=optional) as out:
                # Order: every (shard, row) pair, optionally sorted by (name, prompt, kind, seed).
                pairs = [(i, r) for i, s in enumerate(shards) for r in range(len(s))]
                if sort:
                    pairs.sort(key=lambda p: (shards[p[0]].names[p[1]], shards[p[0]].prompts[p[1]],
                                              shards[p[0]].kinds[p[1]], int(shards[p[0]].seeds[p[1]])))
                for b in range(0, len(pairs), rows_per_block):
                    block = pairs[b:b + rows_per_block]
                    emb = np.empty((len(block), first.dim), dtype=np.float32)
                    by_shard: dict[int, list[int]] = {}
                    for pos, (i, _) in enumerate(block):
                        by_shard.setdefault(i, []).append(pos)
                    for i, positions in by_shard.items():
                        emb[positions] = shards[i].read_rows([block[p][1] for p in positions])
                    out.append(
                        emb,
                        [shards[i].names[r] for i, r in block],
                        [shards[i].prompts[r] for i, r in block],
                        [shards[i].kinds[r] for i, r in block],
                        seeds=[int(shards[i].seeds[r]) for i, r in block] if has_seed else None,
                        images=[(shards[i].images[r] if shards[i].images is not None else "") for i, r in block]
                        if has_image else None,
                    )
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        for s in shards:
            s.close()
    return out_path
