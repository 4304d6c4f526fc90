"""Identity analysis: does the model hold a name as its own identity or as a composition, and how rigidly.

See `analysis.py` (identity features, dedication, z-scores), `result.py` (IdentityResult and its file format,
identity.json), `config.py` (IdentityConfig), `rigidity.py` (trace, log-det, cosines, diffusion
spectral entropy), `composition.py` (name parts), `attributes.py` (zero-shot ladders) and `pipeline.py` (a store
end to end, output files). `reference.py` holds the plain dense versions. `namesae.synth.score.identity` scores the
analysis against a synthetic world's truth.
"""

from namesae.features.result import write_features
from namesae.identity.analysis import add_z_scores, identity_records, image_measures, part_absorption
from namesae.identity.attributes import Ladder, LadderEmbeddings, attribute_batch, embed_ladders, load_ladders
from namesae.identity.composition import nnls_cosine, part_compositions, split_name
from namesae.identity.config import IdentityConfig
from namesae.identity.pipeline import (
    IdentityRun,
    add_seed_stability,
    load_prior_names,
    run_identity,
    run_identity_files,
)
from namesae.identity.result import (
    FIELDS,
    IDENTITY_FORMAT_VERSION,
    IdentityFeature,
    IdentityRecord,
    IdentityResult,
    TopFeature,
    write_identity,
)
from namesae.identity.rigidity import (
    MEASURES,
    RigidityBatch,
    covariance_measures,
    diffusion_spectral_entropy,
    gram,
    rigidity_batch,
)

__all__ = [
    "FIELDS", "IDENTITY_FORMAT_VERSION", "MEASURES", "IdentityConfig", "IdentityFeature", "IdentityRecord",
    "IdentityResult", "IdentityRun", "Ladder", "LadderEmbeddings", "RigidityBatch", "TopFeature",
    "add_seed_stability", "add_z_scores", "attribute_batch", "covariance_measures", "diffusion_spectral_entropy",
    "embed_ladders", "gram", "identity_records", "image_measures", "load_ladders", "load_prior_names", "nnls_cosine",
    "part_absorption", "part_compositions", "rigidity_batch", "run_identity", "run_identity_files",
    "split_name", "write_features", "write_identity",
]
