"""Training data from an embedding store: row filters, the held-out split, the input scale, a resumable stream.

The stream reads whole HDF5 chunks (contiguous reads are orders of magnitude faster than scattered rows), groups
them into shuffle windows of about `shuffle_buffer` rows, and shuffles rows within a window. Block order and
in-window order come from the seed, the epoch and the window index alone, so the stream is a pure function of
(seed, position): resuming at sample n replays exactly what an uninterrupted run would have seen from n on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from namesae.errors import ConfigError, NamesaeError, StoreError
from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RowSplit:
    """Store rows used for training and held out for metrics (both int64, ascending)."""

    train: np.ndarray  # [n_train] store rows
    heldout: np.ndarray  # [n_heldout] store rows
    by: str
    fraction: float
    seed: int

    def summary(self) -> dict[str, object]:
        """JSON-ready description of the split."""
        return {"by": self.by, "fraction": self.fraction, "seed": self.seed,
                "train_rows": int(self.train.size), "heldout_rows": int(self.heldout.size)}


def read_names_file(path: str | Path) -> tuple[str, ...]:
    """Names listed one per line in a text file (blank lines and '#' comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"names_file: {path} not found")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def select_rows(store: EmbeddingStore, kinds: Sequence[str] = (), names: Sequence[str] = ()) -> np.ndarray:
    """Store rows of the given kinds and names (empty filter: all), ascending; refuses an empty result."""
    if len(store) == 0:
        raise StoreError(f"{store.path}: the store is empty; embed some rows first")
    mask = np.ones(len(store), dtype=bool)
    if kinds:
        mask &= np.isin(store.kinds.astype(str), np.asarray(list(kinds), dtype=str))
    if names:
        mask &= np.isin(store.names.astype(str), np.asarray(list(names), dtype=str))
    rows = np.flatnonzero(mask).astype(np.int64)
    if rows.size == 0:
        raise NamesaeError(f"{store.path}: no rows match the filters kinds={list(kinds)} and "
                           f"{len(names)} name(s); check [train] kinds / names")
    return rows


def _name_uniforms(names: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per name from a hash of (seed, name): stable as names come and go."""
    out = np.empty(len(names), dtype=np.float64)
    for i, name in enumerate(names):
        digest = hashlib.blake2b(f"{seed}\x1f{name}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0 ** 64
    return out


def split_rows(store: EmbeddingStore, rows: np.ndarray, fraction: float, by: str, seed: int) -> RowSplit:
    """Split rows into training and held-out parts, deterministically from the seed, by row or by name."""
    if fraction == 0:
        return RowSplit(rows, np.zeros(0, dtype=np.int64), by, fraction, seed)
    if by == "row":
        # The i-th draw of a seeded generator does not depend on how many follow, so a row keeps its side.
        u = np.random.Generator(np.random.Philox(key=seed)).random(len(store))[rows]
    elif by == "name":
        uniq, inverse = np.unique(store.names[rows].astype(str), return_inverse=True)
        u = _name_uniforms(uniq, seed)[inverse]
    else:
        raise ConfigError(f"holdout_by must be 'row' or 'name', got {by!r}")
    held = u < fraction
    split = RowSplit(rows[~held], rows[held], by, fraction, seed)
    if split.train.size == 0:
        raise NamesaeError(f"{store.path}: the held-out split (holdout_fraction = {fraction}, by {by}) leaves no "
                           "training rows; lower holdout_fraction")
    return split


def evenly_spaced(rows: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` rows, evenly spaced over the given ones (all of them when limit is None)."""
    if limit is None or rows.size <= limit:
        return rows
    return rows[np.linspace(0, rows.size - 1, limit).round().astype(np.int64)]


def mean_squared_norm(store: EmbeddingStore, rows: np.ndarray, max_rows: int = 65536) -> float:
    """Mean squared L2 norm of the given rows, from whole chunks evenly spaced over the store (about max_rows
    rows); reading them also catches NaN/Inf rows before training starts."""
    chunk = store.chunk_rows
    blocks = np.unique(rows // chunk)
    blocks = evenly_spaced(blocks, max(1, max_rows // chunk))
    member = np.zeros(len(store), dtype=bool)
    member[rows] = True
    total, count = 0.0, 0
    for b in blocks:
        start, stop = int(b) * chunk, min(len(store), (int(b) + 1) * chunk)
        try:
            x = store.read(start, stop)[member[start:stop]].astype(np.float64)
        except StoreError as err:
            raise StoreError(f"{err} (found while sampling the training rows)") from None
        total += float((x * x).sum())
        count += x.shape[0]
    msn = total / max(count, 1)
    if not msn > 0:
        raise NamesaeError(f"{store.path}: the training rows are all zero; nothing to learn")
    return msn



def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable; None when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def training_memory(batch_size: int, d_in: int, d_sae: int, shuffle_buffer: int, on_cpu: bool,
                    itemsize: int = 4) -> int:
    """Bytes a training step holds beyond the weights: the shuffle buffer and batch on the host ([rows, d_in]),
    and on CPU the step's [batch, d_sae] activations (pre-activations, codes and their gradients)."""
    host = (shuffle_buffer + 2 * batch_size) * d_in * itemsize
    return host + (4 * batch_size * d_sae * itemsize if on_cpu else 0)


def check_training_memory(batch_size: int, d_in: int, d_sae: int, shuffle_buffer: int, on_cpu: bool,
                          itemsize: int = 4) -> None:
    """Refuse up front a batch whose buffers would not fit in the available memory (ConfigError with the limit)."""
    need = training_memory(batch_size, d_in, d_sae, shuffle_buffer, on_cpu, itemsize)
    have = available_memory()
    if have is None or need <= have:
        return
    per_row = training_memory(1, d_in, d_sae, 0, on_cpu, itemsize)
    largest = max(0, (have - shuffle_buffer * d_in * itemsize) // per_row)
    raise ConfigError(f"batch_size = {batch_size}: its buffers need about {need / 2**30:.1f} GiB (d_in {d_in}, "
                      f"d_sae {d_sae}, shuffle_buffer {shuffle_buffer}), more than the {have / 2**30:.1f} GiB "
                      f"available; the limit here is about batch_size = {largest:,}: lower batch_size")


class StoreStream:
    """Endless stream of shuffled training batches (torch float32 [batch, d], times `scale`) from a store."""

    def __init__(self, store: EmbeddingStore, rows: np.ndarray, batch_size: int, seed: int,
                 shuffle_buffer: int, scale: float = 1.0, start_sample: int = 0) -> None:
        self.store = store
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.scale = float(scale)
        self.position = int(start_sample)  # training rows yielded so far, over all epochs
        chunk = store.chunk_rows
        member = np.zeros(len(store), dtype=bool)
        member[rows] = True
        self._member = member
        n_blocks = -(-len(store) // chunk)
        counts = np.bincount(rows // chunk, minlength=n_blocks)
        self._blocks = np.flatnonzero(counts).astype(np.int64)  # blocks holding training rows
        self._block_counts = counts[self._blocks]
        self._chunk = chunk
        self._blocks_per_window = max(1, int(shuffle_buffer) // chunk)
        self.n_rows = int(rows.size)
        if self.n_rows < self.batch_size:
            log.warning("%s: batch_size %d exceeds the %d training rows; batches repeat rows",
                        store.path, self.batch_size, self.n_rows)

    def _windows(self, epoch: int) -> list[np.ndarray]:
        """The epoch's shuffle windows, each an array of block numbers."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self._blocks.size)
        step = self._blocks_per_window
        return [order[i:i + step] for i in range(0, order.size, step)]

    def _window_rows(self, epoch: int, index: int, window: np.ndarray) -> np.ndarray:
        """Store rows of a window's training rows, in their shuffled order ([rows] int64)."""
        parts = []
        for b in np.sort(self._blocks[window]):  # ascending block order: sequential reads
            start, stop = int(b) * self._chunk, min(len(self.store), (int(b) + 1) * self._chunk)
            parts.append(start + np.flatnonzero(self._member[start:stop]))
        rows = np.concatenate(parts)
        perm = np.random.default_rng([self.seed, epoch, index]).permutation(rows.shape[0])
        return rows[perm]

    def _read_window(self, epoch: int, index: int, window: np.ndarray) -> np.ndarray:
        """The training rows of a window's blocks, shuffled (float32 [rows, d])."""
        parts = []
        for b in np.sort(self._blocks[window]):
            start, stop = int(b) * self._chunk, min(len(self.store), (int(b) + 1) * self._chunk)
            block = self.store.read(start, stop)
            parts.append(block[self._member[start:stop]])
        rows = np.concatenate(parts)
        perm = np.random.default_rng([self.seed, epoch, index]).permutation(rows.shape[0])
        return rows[perm]

    def _windows_from(self, position: int, read: bool = True) -> Iterator[np.ndarray]:
        """Consecutive shuffled row blocks (data, or store rows when not `read`), starting at row `position`."""
        epoch, offset = divmod(position, self.n_rows)
        while True:
            windows = self._windows(epoch)
            for index, window in enumerate(windows):
                size = int(self._block_counts[window].sum())
                if offset >= size:
                    offset -= size
                    continue
                part = self._read_window if read else self._window_rows
                yield part(epoch, index, window)[offset:]
                offset = 0
            epoch += 1

    def _rows_from(self, position: int) -> Iterator[np.ndarray]:
        """Consecutive shuffled row blocks of the stream, starting at row `position`."""
        return self._windows_from(position, read=True)

    def _batches(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Cut consecutive blocks into batch_size pieces, advancing `position`."""
        pending: list[np.ndarray] = []
        have = 0
        for block in blocks:
            pending.append(block)
            have += block.shape[0]
            while have >= self.batch_size:
                flat = np.concatenate(pending) if len(pending) > 1 else pending[0]
                batch, rest = flat[:self.batch_size], flat[self.batch_size:]
                pending, have = ([rest] if rest.shape[0] else []), rest.shape[0]
                self.position += self.batch_size
                yield batch

    def __iter__(self) -> Iterator:
        """Yield batches forever; `position` counts the rows handed out."""
        import torch

        for batch in self._batches(self._rows_from(self.position)):
            out = torch.from_numpy(np.ascontiguousarray(batch))
            yield out * self.scale if self.scale != 1.0 else out


class ResidentStream(StoreStream):
    """StoreStream's batches, in the same order, gathered from a copy of all training rows on the device."""

    def __init__(self, store: EmbeddingStore, rows: np.ndarray, batch_size: int, seed: int,
                 shuffle_buffer: int, scale: float = 1.0, start_sample: int = 0, device: str = "cpu") -> None:
        import torch

        super().__init__(store, rows, batch_size, seed, shuffle_buffer, scale, start_sample)
        self.rows = np.asarray(rows, dtype=np.int64)  # ascending store rows: row i of `data`
        d = store.dim
        self.data = torch.empty((self.rows.size, d), dtype=torch.float32, device=device)  # [n_train, d]
        step = max(1, (64 << 20) // (4 * d))  # 64 MiB reads
        for start in range(0, self.rows.size, step):
            part = torch.from_numpy(store.read_rows(self.rows[start:start + step]))
            self.data[start:start + part.shape[0]] = part.to(device) * self.scale if self.scale != 1.0 else part.to(device)

    def __iter__(self) -> Iterator:
        """Yield batches (on the device) forever; `position` counts the rows handed out."""
        import torch

        for batch in self._batches(self._windows_from(self.position, read=False)):
            index = torch.from_numpy(np.searchsorted(self.rows, batch)).to(self.data.device)
            yield self.data.index_select(0, index)


def prefetched(batches: Iterator, depth: int, device: str) -> Iterator:
    """Read `depth` batches ahead on a background thread; on CUDA each is pinned and copied without blocking."""
    import queue
    import threading


    if depth <= 0:
        yield from batches
        return
    cuda = device.startswith("cuda")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for batch in batches:
                if cuda and batch.device.type == "cpu":
                    batch = batch.pin_memory().to(device, non_blocking=True)
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except Exception as err:  # hand the error to the consumer
            q.put(err)
        q.put(done)

    thread = threading.Thread(target=work, name="namesae-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
