"""Accumulating feature statistics batch by batch from sparse SAE codes (memory grows with the (feature, name)
pairs that fire, never with rows x features); names as integer ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.features.config import FeatureConfig
from namesae.features.stats import FeatureStats, top_k_per_group


def _uniform_hash(key: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) for each int64 key (splitmix64)."""
    z = (key.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1))
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


class FeatureAccumulator:
    """Accumulates feature statistics from batches of sparse SAE codes (sparse, memory-bounded)."""

    def __init__(self, d_sae: int, n_names: int, config: FeatureConfig | None = None,
                 rank_rows: int | None = None) -> None:
        self.d_sae = int(d_sae)
        self.n_names = int(n_names)
        self.config = config or FeatureConfig()
        self.n_rows = 0
        self.fire_count = np.zeros(self.d_sae, dtype=np.int64)
        self.act_sum = np.zeros(self.d_sae, dtype=np.float64)
        self.act_max = np.zeros(self.d_sae, dtype=np.float32)
        self._keys = np.zeros(0, dtype=np.int64)  # consolidated feature * n_names + name, sorted
        self._mass = np.zeros(0, dtype=np.float64)
        self._count = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self._top = _TopK(self.d_sae, self.config.top_rows, (np.int64, np.float32))  # (row, value)
        self._sample = _TopK(self.d_sae, self.config.histogram_samples, (np.float32, np.float64))  # (value, -hash)
        self.rank_rows = self.config.rank_rows if rank_rows is None else min(int(rank_rows), self.config.rank_rows)
        self._rank = _TopK(self.d_sae, self.rank_rows, (np.int64, np.float32))  # (name id, value)

    def update_sparse(self, rows: np.ndarray, feats: np.ndarray, values: np.ndarray, name_ids: np.ndarray,
                      n_batch_rows: int, row_offset: int) -> None:
        """Add one batch given its non-zero entries (local row, feature, value) and each local row's name id."""
        rows = np.asarray(rows, dtype=np.int64)
        feats = np.asarray(feats, dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        name_ids = np.asarray(name_ids, dtype=np.int64)
        if values.size and (values < 0).any():
            raise NamesaeError("SAE codes must be >= 0; got negative activations")
        self.n_rows += int(n_batch_rows)
        if feats.size == 0:
            return
        self.fire_count += np.bincount(feats, minlength=self.d_sae)
        self.act_sum += np.bincount(feats, weights=values, minlength=self.d_sae)
        uf, uv = _unique_max(feats, values)
        self.act_max[uf] = np.maximum(self.act_max[uf], uv)
        keys = feats * self.n_names + name_ids[rows]
        uniq, inverse = np.unique(keys, return_inverse=True)
        self._pending.append((uniq, np.bincount(inverse, weights=values),
                              np.bincount(inverse).astype(np.int64)))
        self._pending_size += uniq.size
        if self._pending_size >= self.config.merge_every:
            self._consolidate()
        global_rows = rows + int(row_offset)
        if self.rank_rows:
            self._rank.add(feats, name_ids[rows], values)
        self._update_top(feats, global_rows, values)
        if self.config.histogram_samples:
            self._update_sample(feats, global_rows, values)

    def update(self, codes: Any, name_ids: np.ndarray, row_offset: int) -> None:
        """Add one batch of dense codes [rows, d_sae] (numpy or torch) with the name id of each row."""
        import torch

        codes_t = codes if isinstance(codes, torch.Tensor) else torch.as_tensor(np.asarray(codes))
        if codes_t.ndim != 2 or codes_t.shape[1] != self.d_sae:
            raise NamesaeError(f"codes have shape {tuple(codes_t.shape)}, expected [rows, {self.d_sae}]")
        rows, feats = torch.nonzero(codes_t, as_tuple=True)
        values = codes_t[rows, feats]
        self.update_sparse(rows.numpy(), feats.numpy(), values.float().numpy(), name_ids, codes_t.shape[0],
                           row_offset)

    def _consolidate(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(p[0] for p in self._pending)])
        mass = np.concatenate([self._mass, *(p[1] for p in self._pending)])
        count = np.concatenate([self._count, *(p[2] for p in self._pending)])
        uniq, inverse = np.unique(keys, return_inverse=True)
        self._keys = uniq
        self._mass = np.bincount(inverse, weights=mass, minlength=uniq.size)
        self._count = np.bincount(inverse, weights=count, minlength=uniq.size).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def _update_top(self, feats: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        self._top.add(feats, rows, values)

    def _update_sample(self, feats: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        # Bottom-k by a hash of (row, feature) is a uniform sample without replacement of each feature's firings.
        self._sample.add(feats, values, -_uniform_hash(rows * self.d_sae + feats, self.config.seed))

    def result(self, names: Sequence[str], name_rows: np.ndarray, row_index: np.ndarray | None = None
               ) -> FeatureStats:
        """The accumulated statistics; `names`/`name_rows` describe the name ids passed to `update`."""
        self._consolidate()
        top_f, top_r, top_v = self._top.arrays()
        top_order = np.lexsort((top_r, -top_v, top_f))
        sample_f, sample_v, _ = self._sample.arrays()
        sample_order = np.argsort(sample_f, kind="stable")
        rank_f, rank_n, rank_v = self._rank.arrays()
        rank_order = np.lexsort((-rank_v, rank_f))
        if len(names) != self.n_names:
            raise NamesaeError(f"got {len(names)} names for an accumulator of {self.n_names}")
        return FeatureStats(
            names=list(names), name_rows=np.asarray(name_rows, dtype=np.int64), d_sae=self.d_sae,
            n_rows=self.n_rows, fire_count=self.fire_count.copy(), act_sum=self.act_sum.copy(),
            act_max=self.act_max.copy(), pair_feature=self._keys // self.n_names,
            pair_name=self._keys % self.n_names, pair_mass=self._mass.copy(), pair_count=self._count.copy(),
            top_feature=top_f[top_order], top_row=top_r[top_order], top_value=top_v[top_order],
            sample_feature=sample_f[sample_order], sample_value=sample_v[sample_order], row_index=row_index,
            config=self.config,
            rank_feature=rank_f[rank_order] if self.rank_rows else None,
            rank_name=rank_n[rank_order] if self.rank_rows else None,
            rank_value=rank_v[rank_order] if self.rank_rows else None,
        )


class _TopK:
    """Per-feature lists of the k entries with the highest score, fed in batches (memory O(d_sae * k)).

    Entries are (feature, payload..., score). A candidate enters only if it beats its feature's floor (the k-th
    best score kept so far, -inf while the list is short); accepted candidates wait in a buffer that is ranked
    together with the kept entries of the same features once it is as large as the kept lists, so the total cost
    stays near O(entries log entries). Ties keep the earlier entry.
    """

    def __init__(self, d_sae: int, k: int, dtypes: tuple[type, ...]) -> None:
        self.k = int(k)
        self.floor = np.full(d_sae, -np.inf)
        self.kept = (np.zeros(0, np.int64), *(np.zeros(0, t) for t in dtypes))
        self.pending: list[tuple[np.ndarray, ...]] = []
        self.n_pending = 0

    def add(self, feats: np.ndarray, *columns: np.ndarray) -> None:
        """Offer candidates: feature ids [n] and the payload columns, the last being the score."""
        if self.k == 0:
            return
        accept = columns[-1] > self.floor[feats]
        if not accept.any():
            return
        self.pending.append((feats[accept], *(c[accept] for c in columns)))
        self.n_pending += int(accept.sum())
        if self.n_pending >= max(self.kept[0].size, 1 << 16):
            self.flush()

    def flush(self) -> None:
        """Rank the buffered candidates into the kept lists and raise the floors."""
        if not self.pending:
            return
        new = tuple(np.concatenate(cols) for cols in zip(*self.pending))
        self.pending, self.n_pending = [], 0
        touched = np.zeros(self.floor.size, dtype=bool)
        touched[new[0]] = True
        sel = touched[self.kept[0]]
        both = tuple(np.concatenate([old[sel], add]) for old, add in zip(self.kept, new))
        keep = top_k_per_group(both[0], both[-1], self.k)
        merged = tuple(a[keep] for a in both)
        g, score = merged[0], merged[-1]
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        full = np.diff(np.r_[starts, g.size]) >= self.k
        self.floor[g[starts][full]] = score[starts[full] + self.k - 1]
        self.kept = tuple(np.concatenate([old[~sel], m]) for old, m in zip(self.kept, merged))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The kept entries (unsorted): feature ids and payload columns."""
        self.flush()
        return self.kept


def _unique_max(feats: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique features, max value of each) so that np.maximum.at touches each feature once."""
    order = np.lexsort((-values, feats))
    f = feats[order]
    first = np.r_[True, f[1:] != f[:-1]]
    return f[first], values[order][first]


def feature_stats_from_codes(codes: Any, names: Sequence[str], config: FeatureConfig | None = None
                             ) -> FeatureStats:
    """Feature statistics of a code matrix [rows, d_sae] whose rows belong to `names` (small inputs, tests)."""
    ids, uniq = factorize_names(names)
    acc = FeatureAccumulator(np.shape(codes)[1], len(uniq), config, rank_rows=largest_name(ids))
    acc.update(codes, ids, 0)
    return acc.result(uniq, np.bincount(ids, minlength=len(uniq)))


def largest_name(ids: np.ndarray) -> int:
    """Length of the strongest-firing lists for these integer name ids: twice the largest name's row count, so
    that every prefix that can qualify a name as an identity (precision >= 0.5) lies within the list."""
    return 2 * int(np.bincount(ids).max()) if np.size(ids) else 0


def factorize_names(names: Sequence[str] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer id of each name (names numbered in first-appearance order) and the distinct names."""
    import pandas as pd

    codes, uniq = pd.factorize(np.asarray(names, dtype=object).astype(str), sort=False)
    return codes.astype(np.int64), [str(u) for u in uniq]
