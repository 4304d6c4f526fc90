"""Identity analysis: does the model hold a name as its own identity or as a composition, and how rigidly.

See `analysis.py` (identity features, dedication, z-scores), `result.py` (IdentityResult and its file format,
identity.json), `config.py` (IdentityConfig), `rigidity.py` (trace, log-det, cosines, diffusion
spectral entropy), `composition.py` (name parts), `attributes.py` (zero-shot ladders) and `pipeline.py` (a store
end to end, output files). `reference.py` holds the plain dense versions. `namesae.synth.score.identity` scores the
analysis against a synthetic world's truth.
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "namesae.features.result": ("write_features",),
    ".analysis": ("add_z_scores", "identity_records", "image_measures", "part_absorption"),
    ".attributes": ("Ladder", "LadderEmbeddings", "attribute_batch", "embed_ladders", "load_ladders"),
    ".composition": ("nnls_cosine", "part_compositions", "split_name"),
    ".config": ("IdentityConfig",),
    ".pipeline": (
        "IdentityRun", "add_seed_stability", "load_prior_names", "run_identity", "run_identity_files",
    ),
    ".result": (
        "FIELDS", "IDENTITY_FORMAT_VERSION", "IdentityFeature", "IdentityRecord", "IdentityResult",
        "TopFeature", "write_identity",
    ),
    ".rigidity": (
        "MEASURES", "RigidityBatch", "covariance_measures", "diffusion_spectral_entropy", "gram",
        "rigidity_batch",
    ),
})
