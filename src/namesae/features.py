"""Feature statistics of an SAE over a store: firing, activation, selectivity for names, top rows, zero-shot labels.

All statistics are accumulated batch by batch from the non-zero entries of the SAE codes, so memory grows with
the number of (feature, name) pairs that ever fire, never with rows x features or features x names.

Definitions (DESIGN.md, "The science"), for SAE codes f = SAE.encode(x) >= 0 of the rows x of a store:
- frequency(j)        = fraction of rows with f_j > 0
- mean_activation(j)  = mean of f_j over the rows where it fires; max_activation(j) = max of f_j
- mass(j, n)          = sum of f_j over the rows of name n
- precision(j, n)     = mass(j, n) / sum_n' mass(j, n')      (how much of feature j's mass belongs to n)
- recall(j, n)        = fraction of n's rows with f_j > 0    (how reliably j fires on n)
- strongest firings   : each feature's L highest activations (L = min(rank_rows, 2 x the largest name's rows)),
                        with the name of each row. For a pair
                        (j, n) and a prefix of c of them, h_c = how many are rows of n;
                        rank precision = h_c / c, rank recall = h_c / (rows of n), at the prefix c that best
                        qualifies (`rank_precision_recall`). Rank-based, so weak fill activations that TopK
                        spreads over every code do not dilute it, and it does not fall as the store grows.
- label(j)            = the vocabulary phrase whose embedding has the highest cosine to the decoder direction d_j;
                        margin(j) = that cosine minus the runner-up phrase's cosine.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import ConfigError, NamesaeError, SpaceMismatchError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of `namesae features` (TOML section `[features]`)."""

    kind: str | None = None
    """Use only rows of this kind ('text' or 'image'); None uses every row of the store."""
    batch_rows: int = 1024
    """Rows encoded per batch (lowered automatically so one dense code batch stays under `batch_bytes`)."""
    batch_bytes: int = 64 * 2**20
    """Upper bound on the bytes of one dense batch of codes [rows, d_sae] (float32)."""
    top_rows: int = 10
    """Rows kept per feature, highest activation first."""
    top_names: int = 10
    """Names kept per feature, highest mass first."""
    histogram_samples: int = 64
    """Activations kept per feature as a uniform random sample of its firing rows (for histograms); 0: none."""
    label_center: bool = False
    """Subtract the mean phrase embedding before taking cosines to decoder directions (off: the plain definition)."""
    merge_every: int = 1_000_000
    """Consolidate pending (feature, name) pairs once this many have accumulated (bounds memory)."""
    seed: int = 0
    """Seed of the histogram sample (the sample is a deterministic function of row, feature and seed)."""
    rank_rows: int = 512
    """Most strongest firings kept per feature for the rank precision and recall of the identity rule
    (`rule = "strongest"`); the lists hold min(this, 2 x the largest name's row count) entries, so the verdict is
    exact for every name with at most rank_rows / 2 rows and tau_p >= 0.5 (a larger name is measured over its
    feature's strongest `rank_rows` firings)."""

    def __post_init__(self) -> None:
        if self.kind not in (None, "text", "image"):
            raise ConfigError(f"kind must be 'text', 'image' or unset, got {self.kind!r}")
        for name in ("batch_rows", "batch_bytes", "merge_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("top_rows", "top_names", "histogram_samples", "rank_rows"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class FeatureLabels:
    """Zero-shot labels of features: best phrase, its cosine, the runner-up and the margin between them."""

    label: np.ndarray  # object [d_sae] str
    cosine: np.ndarray  # float32 [d_sae]
    runner_up: np.ndarray  # object [d_sae] str ("" when the vocabulary has one phrase)
    margin: np.ndarray  # float32 [d_sae] cosine(label) - cosine(runner_up); nan with one phrase


@dataclass
class FeatureStats:
    """Per-feature and sparse per-(feature, name) statistics of an SAE over the rows of a store."""

    names: list[str]  # [N] name of each name index, first-appearance order
    name_rows: np.ndarray  # int64 [N] rows per name
    d_sae: int
    n_rows: int  # rows seen
    fire_count: np.ndarray  # int64 [d_sae] rows with f_j > 0
    act_sum: np.ndarray  # float64 [d_sae] sum of f_j
    act_max: np.ndarray  # float32 [d_sae]
    pair_feature: np.ndarray  # int64 [P] sparse (feature, name) pairs, sorted by feature then name
    pair_name: np.ndarray  # int64 [P]
    pair_mass: np.ndarray  # float64 [P] mass(j, n)
    pair_count: np.ndarray  # int64 [P] rows of n with f_j > 0
    top_feature: np.ndarray  # int64 [T] top rows, sorted by feature then activation (descending)
    top_row: np.ndarray  # int64 [T] store row index
    top_value: np.ndarray  # float32 [T]
    sample_feature: np.ndarray  # int64 [S] histogram sample, sorted by feature
    sample_value: np.ndarray  # float32 [S]
    row_index: np.ndarray | None = None  # int64 [n_rows] store row of each seen row (None: rows 0..n_rows-1)
    labels: FeatureLabels | None = None
    config: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    rank_feature: np.ndarray | None = None  # int64 [R] strongest firings, sorted by feature then activation desc
    rank_name: np.ndarray | None = None  # int64 [R] name index of each
    rank_value: np.ndarray | None = None  # float32 [R]

    def rank_precision_recall(self, tau_p: float = 0.8, tau_r: float = 0.5, min_gap: float = 1.0
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Rank precision and recall of every stored pair, float64 [P] each (see the module docstring).

        Walking down feature j's strongest firings, after c of them h_c are rows of n: precision h_c / c, recall
        h_c / rows(n). A prefix qualifies when it meets both thresholds and its gap is >= min_gap: the median of
        n's activations in the prefix over the median of the feature's next c firings (the feature's rest; an
        unknown rest, past a truncated list, fails; no rest at all passes); a prefix that meets both thresholds
        but fails the gap counts with precision 0. The prefix reported is the qualifying one with the highest
        precision·recall, or, when none qualifies, the highest precision·recall overall (longer prefix on ties)."""
        n_pairs = self.pair_feature.size
        prec, rec = np.zeros(n_pairs), np.zeros(n_pairs)
        if self.rank_feature is None:
            raise NamesaeError("these feature statistics hold no strongest-firing lists (rank_rows = 0); "
                               "recompute them with rank_rows > 0 or use rule = 'mass_share'")
        if n_pairs == 0 or self.rank_feature.size == 0:
            return prec, rec
        n_names = max(len(self.names), 1)
        f, value = self.rank_feature, self.rank_value
        start = np.searchsorted(f, f, side="left")
        rank = np.arange(f.size) - start  # 0-based position within the feature's list
        # Prefixes end only at the end of a run of equal activations (ties are not split by row order), and a
        # run that touches the end of a truncated list (the feature fired more often than it holds) is not
        # evaluated: its end is unknown.
        new_run = np.r_[True, (f[1:] != f[:-1]) | (value[1:] != value[:-1])]
        run_id = np.cumsum(new_run) - 1
        run_end = np.r_[np.flatnonzero(new_run)[1:], f.size][run_id]  # exclusive end index of each entry's run
        length = np.bincount(f, minlength=self.d_sae)
        list_end = start + length[f]
        cut = (run_end == list_end) & (self.fire_count[f] > length[f])
        pair_keys = self.pair_feature * n_names + self.pair_name  # sorted (feature, then name)
        keys = f * n_names + self.rank_name
        pos = np.minimum(np.searchsorted(pair_keys, keys), n_pairs - 1)
        ok = pair_keys[pos] == keys
        ends = (run_end - start)[ok]  # c: firings up to the end of the entry's run
        pos, rank, cut, vals, fstart = pos[ok], rank[ok], cut[ok], value[ok], start[ok]
        order = np.lexsort((rank, pos))
        pos, ends, cut, vals, fstart = pos[order], ends[order], cut[order], vals[order], fstart[order]
        first = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
        h = np.arange(pos.size) - np.repeat(first, np.diff(np.r_[first, pos.size])) + 1
        # Within a run, the pair's last entry holds its full count h at c = the run's end; earlier entries of
        # the same run give a smaller h at the same c, never a better prefix.
        p_e = np.where(cut, 0.0, h / ends)
        r_e = np.where(cut, 0.0, h / np.maximum(self.name_rows[self.pair_name[pos]], 1))
        qualifies = (p_e >= tau_p) & (r_e >= tau_r)
        if min_gap > 1.0:
            group_first = np.repeat(first, np.diff(np.r_[first, pos.size]))
            for e in np.flatnonzero(qualifies):
                if self._gap(vals[group_first[e]:e + 1], int(fstart[e]), int(ends[e])) < min_gap:
                    qualifies[e], p_e[e] = False, 0.0  # a prefix that fails the gap is no evidence of identity
        # Best entry per pair: qualifying first, then precision·recall, then the longer prefix.
        best = np.lexsort((h, p_e * r_e, qualifies, pos))
        last = np.r_[pos[best][1:] != pos[best][:-1], True]
        chosen = best[last]
        prec[pos[chosen]] = p_e[chosen]
        rec[pos[chosen]] = r_e[chosen]
        return prec, rec

    def _gap(self, mine: np.ndarray, start: int, c: int) -> float:
        """Median of a name's activations in a prefix of c firings over the median of the feature's next c."""
        f = int(self.rank_feature[start])
        stop = start + int(np.searchsorted(self.rank_feature[start:], f, side="right"))
        rest = self.rank_value[start + c:min(start + 2 * c, stop)]
        if rest.size < c and self.fire_count[f] > stop - start:
            return 0.0 if rest.size == 0 else float(np.median(mine) / np.median(rest))  # rest only partly known
        if rest.size == 0:
            return float("inf")
        return float(np.median(mine) / max(float(np.median(rest)), 1e-30))

    def rule_precision_recall(self, rule: str, tau_p: float = 0.8, tau_r: float = 0.5, min_gap: float = 1.25
                              ) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) of every stored pair under an identity rule: 'strongest' or 'mass_share'."""
        if rule == "strongest":
            return self.rank_precision_recall(tau_p, tau_r, min_gap)
        if rule == "mass_share":
            return self.pair_precision, self.pair_recall
        raise ConfigError(f"rule must be 'strongest' or 'mass_share', got {rule!r}")

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of rows on which each feature fires, float64 [d_sae]."""
        return self.fire_count / max(self.n_rows, 1)

    @property
    def mean_activation(self) -> np.ndarray:
        """Mean activation of each feature over the rows where it fires (0 for dead features)."""
        return np.divide(self.act_sum, self.fire_count, out=np.zeros(self.d_sae), where=self.fire_count > 0)

    @property
    def feature_mass(self) -> np.ndarray:
        """Total mass of each feature over all names, float64 [d_sae]."""
        return np.bincount(self.pair_feature, weights=self.pair_mass, minlength=self.d_sae)

    @property
    def name_mass(self) -> np.ndarray:
        """Total activation mass of each name over all features, float64 [N]."""
        return np.bincount(self.pair_name, weights=self.pair_mass, minlength=len(self.names))

    @property
    def pair_precision(self) -> np.ndarray:
        """precision(j, n) of every stored pair, float64 [P]."""
        total = self.feature_mass[self.pair_feature]
        return np.divide(self.pair_mass, total, out=np.zeros_like(self.pair_mass), where=total > 0)

    @property
    def pair_recall(self) -> np.ndarray:
        """recall(j, n) of every stored pair, float64 [P]."""
        return self.pair_count / np.maximum(self.name_rows[self.pair_name], 1)

    def pairs(self) -> pd.DataFrame:
        """Every (feature, name) pair that fires: feature, name, mass, count, precision, recall."""
        import pandas as pd

        return pd.DataFrame({
            "feature": self.pair_feature, "name": np.asarray(self.names, dtype=object)[self.pair_name],
            "mass": self.pair_mass, "count": self.pair_count,
            "precision": self.pair_precision, "recall": self.pair_recall,
        })

    def top_names_of(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the pair arrays of each feature's top-k names by mass, and their feature ids."""
        k = self.config.top_names if k is None else k
        keep = top_k_per_group(self.pair_feature, self.pair_mass, k)
        return keep, self.pair_feature[keep]

    def frame(self) -> pd.DataFrame:
        """One row per feature: frequency, mean/max activation, mass, label, label cosine and margin."""
        import pandas as pd

        df = pd.DataFrame({
            "feature": np.arange(self.d_sae), "frequency": self.frequency, "fire_count": self.fire_count,
            "mean_activation": self.mean_activation, "max_activation": self.act_max.astype(np.float64),
            "mass": self.feature_mass, "n_names": np.bincount(self.pair_feature, minlength=self.d_sae),
        })
        if self.labels is not None:
            df["label"] = self.labels.label
            df["label_cosine"] = self.labels.cosine
            df["runner_up"] = self.labels.runner_up
            df["label_margin"] = self.labels.margin
        return df

    def records(self, store_names: np.ndarray | None = None, store_prompts: np.ndarray | None = None
                ) -> list[dict[str, Any]]:
        """JSON-ready per-feature records (features.json): stats, label, top names, top rows, histogram sample."""
        frame = self.frame()
        prec, rec = self.pair_precision, self.pair_recall
        keep, kfeat = self.top_names_of()
        tops_by_f = _split_by(kfeat, keep, self.d_sae)
        rows_by_f = _split_by(self.top_feature, np.arange(len(self.top_feature)), self.d_sae)
        samples_by_f = _split_by(self.sample_feature, np.arange(len(self.sample_feature)), self.d_sae)
        out = []
        for j, row in enumerate(frame.to_dict("records")):
            item: dict[str, Any] = {k: _py(v) for k, v in row.items()}
            item["top_names"] = [
                {"name": self.names[int(self.pair_name[p])], "mass": float(self.pair_mass[p]),
                 "precision": float(prec[p]), "recall": float(rec[p])} for p in tops_by_f[j]]
            top_rows = []
            for t in rows_by_f[j]:
                r = int(self.top_row[t])
                entry: dict[str, Any] = {"row": r, "activation": float(self.top_value[t])}
                if store_names is not None:
                    entry["name"] = str(store_names[r])
                if store_prompts is not None:
                    entry["prompt"] = str(store_prompts[r])
                top_rows.append(entry)
            item["top_rows"] = top_rows
            item["histogram_values"] = [round(float(v), 6) for v in self.sample_value[samples_by_f[j]]]
            out.append(item)
        return out


def _py(value: Any) -> Any:
    """A numpy scalar as a JSON-ready Python value (nan becomes None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _split_by(group: np.ndarray, payload: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """payload split into n_groups lists by a sorted group id array."""
    bounds = np.searchsorted(group, np.arange(n_groups + 1))
    return [payload[bounds[i]:bounds[i + 1]] for i in range(n_groups)]


def top_k_per_group(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores within each group, ordered by group then score descending (stable ties)."""
    group = np.asarray(group)
    if k <= 0 or group.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-np.asarray(score), group))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    lengths = np.diff(np.r_[starts, g.size])
    rank = np.arange(g.size) - np.repeat(starts, lengths)
    return order[rank < k].astype(np.int64)


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


_factorize = factorize_names  # the earlier private name, still imported by namesae.emergence


def batch_rows_for(d_sae: int, config: FeatureConfig) -> int:
    """Rows per encoding batch so that one dense batch of codes stays under the configured byte budget."""
    return int(max(1, min(config.batch_rows, config.batch_bytes // (4 * max(d_sae, 1)))))


def check_space(sae: Any, store: EmbeddingStore) -> None:
    """Refuse a store whose space or dimension differs from the SAE's (SpaceMismatchError naming both)."""
    sae_space = getattr(sae, "space", None)
    if int(getattr(sae, "d_in", store.dim)) != store.dim:
        raise SpaceMismatchError(f"{store.path}: store dim {store.dim} differs from the SAE's d_in {sae.d_in} "
                                 f"(SAE space {sae_space!r}); use the store the SAE was trained on")
    if sae_space and sae_space != store.space:
        raise SpaceMismatchError(f"{store.path}: store space {store.space!r} differs from the SAE's space "
                                 f"{sae_space!r}; use a store embedded with the SAE's encoder")


def iter_codes(sae: Any, store: EmbeddingStore, rows: np.ndarray, batch_rows: int, progress: bool = False,
               desc: str = "encode") -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
    """Yield (offset into rows, store rows of the batch, codes [b, d_sae]) over the given store rows."""
    import torch
    from tqdm.auto import tqdm

    from namesae.sae import encode

    contiguous = rows.size > 0 and rows[-1] - rows[0] + 1 == rows.size
    with tqdm(total=int(rows.size), desc=desc, unit="row", disable=not progress) as bar:
        for start in range(0, rows.size, batch_rows):
            chunk = rows[start:start + batch_rows]
            x = store.read(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else store.read_rows(chunk)
            with torch.no_grad():
                codes = encode(sae, x)
            yield start, chunk, codes
            bar.update(chunk.size)


def topk_sparse_k(sae: Any) -> int | None:
    """k when `sae` wraps a plain SAELens TopK SAE (no hooks, stock encode), whose codes can be read off its
    top-k directly (`sparse_encode`); None otherwise (codes then come from the dense `encode`)."""
    try:
        from sae_lens.saes.topk_sae import TopK, TopKSAE
    except ImportError:  # pragma: no cover - sae_lens is a dependency
        return None
    model = getattr(sae, "model", None)
    if not isinstance(model, TopKSAE) or type(model).encode is not TopKSAE.encode:
        return None
    act = getattr(model, "activation_fn", None)
    if type(act) is not TopK or act.use_sparse_activations:
        return None
    for hook in (model.hook_sae_input, model.hook_sae_acts_pre, model.hook_sae_acts_post):
        if hook._forward_hooks or hook._forward_pre_hooks:
            return None
    return int(act.k)


def sparse_encode(sae: Any, x: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero SAE codes of finite rows x [b, d_in] as (row, feature, value) arrays, row-major with features
    ascending within a row (the order of `torch.nonzero` on the dense codes, with the same values).

    With k (a plain TopK SAE, `topk_sparse_k`) the codes are taken from the top-k of the pre-activations as
    SAELens computes them, never scattered into a dense [b, d_sae] matrix; otherwise from `namesae.sae.encode`."""
    import torch

    from namesae.sae import encode

    with torch.no_grad():
        if k is None:
            codes = encode(sae, x)
            rows, feats = torch.nonzero(codes, as_tuple=True)
            return rows.numpy(), feats.numpy(), codes[rows, feats].float().numpy()
        model = sae.model
        t = torch.as_tensor(np.asarray(x)).to(model.device, model.dtype)
        pre = model.hook_sae_acts_pre(model.process_sae_in(t) @ model.W_enc + model.b_enc)
        if model.cfg.rescale_acts_by_decoder_norm:
            pre = pre * model.W_dec.norm(dim=-1)
        values, index = torch.topk(pre, k=k, dim=-1, sorted=False)
        index, order = index.sort(dim=-1)
        values = values.relu().gather(-1, order).float().cpu()
        keep = values != 0
        rows = torch.arange(values.shape[0]).unsqueeze(1).expand_as(values)[keep]
        return rows.numpy(), index.cpu()[keep].numpy(), values[keep].numpy()


def _sparse_path_agrees(sae: Any, x: np.ndarray, k: int, n: int = 64) -> bool:
    """Whether the top-k sparse path gives the dense encoder's non-zero codes on the first n rows of x."""
    dense = sparse_encode(sae, x[:n], None)
    fast = sparse_encode(sae, x[:n], k)
    return all(a.shape == b.shape for a, b in zip(dense, fast)) and bool(
        np.array_equal(dense[0], fast[0]) and np.array_equal(dense[1], fast[1])
        and np.allclose(dense[2], fast[2], rtol=1e-6, atol=1e-7))


def iter_sparse_codes(sae: Any, store: EmbeddingStore, rows: np.ndarray, batch_rows: int, progress: bool = False,
                      desc: str = "encode") -> Iterator[tuple[int, np.ndarray, tuple[np.ndarray, ...]]]:
    """Yield (offset into rows, store rows of the batch, (local row, feature, value) non-zero codes) over the
    given store rows; for a TopK SAE no dense code matrix is built (`sparse_encode`)."""
    from tqdm.auto import tqdm

    k = topk_sparse_k(sae)
    contiguous = rows.size > 0 and rows[-1] - rows[0] + 1 == rows.size
    with tqdm(total=int(rows.size), desc=desc, unit="row", disable=not progress) as bar:
        for start in range(0, rows.size, batch_rows):
            chunk = rows[start:start + batch_rows]
            # store.read/read_rows refuse non-finite rows, so the encoder's own finiteness check is not repeated.
            x = store.read(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else store.read_rows(chunk)
            if k is not None and start == 0 and not _sparse_path_agrees(sae, x, k):
                log.warning("top-k sparse encoding disagrees with the SAE's encode; using the dense encoder")
                k = None
            yield start, chunk, sparse_encode(sae, x, k)
            bar.update(chunk.size)


def compute_feature_stats(sae: Any, store: EmbeddingStore, config: FeatureConfig | None = None,
                          progress: bool = False) -> FeatureStats:
    """Encode a store's rows with an SAE and accumulate every feature statistic (one streaming pass)."""
    config = config or FeatureConfig()
    check_space(sae, store)
    rows = store.select(kind=config.kind) if config.kind else np.arange(len(store), dtype=np.int64)
    if rows.size == 0:
        raise NamesaeError(f"{store.path}: no rows" + (f" of kind '{config.kind}'" if config.kind else ""))
    ids, uniq = factorize_names(store.names[rows])
    d_sae = int(sae.d_sae)
    acc = FeatureAccumulator(d_sae, len(uniq), config, rank_rows=largest_name(ids))
    for offset, chunk, (r, f, v) in iter_sparse_codes(sae, store, rows, batch_rows_for(d_sae, config), progress,
                                                      "features"):
        acc.update_sparse(r, f, v, ids[offset:offset + chunk.size], chunk.size, offset)
    stats = acc.result(uniq, np.bincount(ids, minlength=len(uniq)), row_index=rows)
    # Top rows were recorded as offsets into `rows`; map them to store rows.
    stats.top_row = rows[stats.top_row]
    return stats


def zero_shot_labels(directions: Any, phrases: Any, phrase_labels: Sequence[str], center: bool = False,
                     batch: int = 4096) -> FeatureLabels:
    """Label each decoder direction [d_sae, d] by the phrase label whose mean embedding is closest in cosine."""
    import torch

    dirs = torch.as_tensor(np.asarray(directions) if not isinstance(directions, torch.Tensor) else directions)
    emb = torch.as_tensor(np.asarray(phrases) if not isinstance(phrases, torch.Tensor) else phrases)
    dirs, emb = dirs.float(), emb.float()
    if emb.ndim != 2 or dirs.ndim != 2 or emb.shape[1] != dirs.shape[1]:
        raise SpaceMismatchError(f"phrase embeddings {tuple(emb.shape)} and decoder directions "
                                 f"{tuple(dirs.shape)} differ in dimension; embed the vocabulary in the SAE's space")
    ids, labels = factorize_names(phrase_labels)
    if len(labels) == 0:
        raise NamesaeError("the label vocabulary is empty")
    # One vector per label: the mean of its unit-normalised phrase rows.
    unit = torch.nn.functional.normalize(emb, dim=1)
    means = torch.zeros(len(labels), emb.shape[1]).index_add_(0, torch.as_tensor(ids), unit)
    if center:
        means = means / torch.bincount(torch.as_tensor(ids)).unsqueeze(1) - unit.mean(0, keepdim=True)
    means = torch.nn.functional.normalize(means, dim=1)
    k = min(2, len(labels))
    best_idx, best_cos = [], []
    for start in range(0, dirs.shape[0], batch):
        cos = torch.nn.functional.normalize(dirs[start:start + batch], dim=1) @ means.T
        values, index = cos.topk(k, dim=1)
        best_idx.append(index)
        best_cos.append(values)
    index = torch.cat(best_idx).numpy() if best_idx else np.zeros((0, k), np.int64)
    cos = torch.cat(best_cos).numpy() if best_cos else np.zeros((0, k), np.float32)
    names = np.asarray(labels, dtype=object)
    return FeatureLabels(
        label=names[index[:, 0]], cosine=cos[:, 0].astype(np.float32),
        runner_up=names[index[:, 1]] if k == 2 else np.full(index.shape[0], "", dtype=object),
        margin=(cos[:, 0] - cos[:, 1]).astype(np.float32) if k == 2 else np.full(index.shape[0], np.nan, np.float32),
    )


def labels_from_store(sae: Any, vocab: EmbeddingStore, center: bool = False) -> FeatureLabels:
    """Zero-shot labels of an SAE's features from a vocabulary store (row name = the phrase's label)."""
    check_vocab_space(sae, vocab)
    directions = sae.decoder_directions()
    return zero_shot_labels(directions, vocab.read(), vocab.names, center=center)


def same_encoder(space_a: str, space_b: str) -> bool:
    """Whether two store spaces come from the same encoder (they may differ in the text/image modality suffix)."""
    def strip(space: str) -> str:
        parts = space.split(":")
        return ":".join(parts[:-1]) if parts[-1] in ("text", "image") and len(parts) > 1 else space
    return strip(space_a) == strip(space_b)


def check_vocab_space(sae: Any, vocab: EmbeddingStore) -> None:
    """Refuse a vocabulary store embedded by another encoder than the SAE's store (modality may differ)."""
    sae_space = getattr(sae, "space", None)
    if vocab.dim != int(sae.d_in) or (sae_space and not same_encoder(sae_space, vocab.space)):
        raise SpaceMismatchError(f"{vocab.path}: vocabulary space {vocab.space!r} (dim {vocab.dim}) is not the "
                                 f"SAE's encoder {sae_space!r} (dim {sae.d_in}); embed the phrases with it")


def iter_name_batches(name_rows: dict[str, np.ndarray], max_rows: int) -> Iterable[list[str]]:
    """Names grouped into batches of at most max_rows rows (a name larger than max_rows gets its own batch)."""
    batch: list[str] = []
    size = 0
    for name, rows in name_rows.items():
        if batch and size + len(rows) > max_rows:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += len(rows)
    if batch:
        yield batch
