"""SAE training and use on embedding stores, with SAELens as the engine and its on-disk format.

Python API::

    from namesae.sae import TrainConfig, train_sae, load_sae, encode, decode, check_space, encode_store
    sae = train_sae("runs/world/image.h5", TrainConfig(architecture="topk", k=16, steps=2000), "runs/sae")
    sae = load_sae("runs/sae", device="auto")  # TrainedSAE: .d_in, .d_sae, .space, .architecture, .normalization
    f = encode(sae, x)                         # x [n, d_in] store units -> torch float32 [n, d_sae] >= 0
    x_hat = decode(sae, f)                     # [n, d_in] store units
    sae.decoder_directions()                   # [d_sae, d_in], unit rows

Every SAE folder opens with `sae_lens.SAE.load_from_disk(folder)` and gives the same codes on store rows.
Modules: `config` (TrainConfig), `data` (filters, split, stream), `fast` (fused TopK-family step), `train`
(the run: checkpoints, resume, metrics), `state` (resumable state), `metrics` (SAEMetrics, metrics.json),
`model` (TrainedSAE, encode/decode, load/save), `codes` (the space check and every iterator of a store's codes,
dense or sparse: the one path by which other stages read a store through an SAE).
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "namesae.devices": ("resolve_device",),
    ".config": ("ARCHITECTURES", "ENGINES", "TrainConfig"),
    ".data": ("RowSplit", "StoreStream", "select_rows", "split_rows"),
    ".codes": (
        "CodeBlock", "SparseEncoder", "check_space", "encode_store", "iter_codes", "iter_sparse_codes",
        "sparse_encode", "topk_sparse_k",
    ),
    ".metrics": ("METRICS_FORMAT_VERSION", "SAEMetrics"),
    ".model": ("TrainedSAE", "build_sae_from_weights", "decode", "encode", "load_sae"),
    ".train": ("RunPlan", "build_training_sae", "plan_run", "train_sae"),
})
