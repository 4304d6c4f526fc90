"""Feature statistics of an SAE over a store and their derived measures: frequency, mass, precision, recall,
rank precision and recall of the strongest firings, top names and rows, tables and records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import ConfigError, NamesaeError
from namesae.features.config import FeatureConfig

if TYPE_CHECKING:
    import pandas as pd



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
