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

Modules: `config.py` (FeatureConfig), `stats.py` (FeatureStats and its measures), `accumulate.py` (the batched
accumulator), `encode.py` (the statistics of a whole store, read through `namesae.sae.codes`), `labels.py`
(zero-shot labels, encoder spaces).
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".accumulate": ("FeatureAccumulator", "factorize_names", "feature_stats_from_codes", "largest_name"),
    ".config": ("FeatureConfig",),
    ".encode": ("batch_rows_for", "compute_feature_stats"),
    # Reading a store through an SAE belongs to namesae.sae; these names stay here for code that imports them.
    "namesae.sae.codes": ("check_space", "iter_codes", "iter_sparse_codes", "sparse_encode", "topk_sparse_k"),
    ".labels": (
        "check_vocab_space", "iter_name_batches", "labels_from_store", "same_encoder", "zero_shot_labels",
    ),
    ".stats": ("FeatureLabels", "FeatureStats", "top_k_per_group"),
})
