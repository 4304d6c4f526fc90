"""The feature statistics of a whole store, read through an SAE by `namesae.sae.codes` (its space check and
sparse codes), in batches sized to a byte budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from namesae.errors import NamesaeError
from namesae.features.accumulate import FeatureAccumulator, factorize_names, largest_name
from namesae.features.config import FeatureConfig
from namesae.features.stats import FeatureStats
from namesae.sae.codes import check_space, iter_sparse_codes

if TYPE_CHECKING:
    from namesae.sae.model import TrainedSAE
    from namesae.store import EmbeddingStore


def batch_rows_for(d_sae: int, config: FeatureConfig) -> int:
    """Rows per encoding batch so that one dense batch of codes stays under the configured byte budget."""
    return int(max(1, min(config.batch_rows, config.batch_bytes // (4 * max(d_sae, 1)))))


def compute_feature_stats(sae: TrainedSAE, store: EmbeddingStore, config: FeatureConfig | None = None,
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
