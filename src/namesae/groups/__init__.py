"""Feature groups: activation-weighted spherical k-means over an embedding's active SAE features.

`api.py` (groups of codes and direction sets, as records), `name.py` (a name's groups and their stability), `fast.py` (the batched Gram path),
`reference.py` (the plain per-embedding implementation the fast path is tested against), `planted.py` (planted
concept data and scores), `config.py` (settings), `result.py` (groups.json: GroupsResult, EmbeddingGroups), `run.py`
(`namesae groups` as one call: `run_groups`, and feature labels `load_labels`).
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".api": ("BatchGroups", "FeatureGroup", "Grouping", "group_codes", "group_sets", "join_similar"),
    ".config": ("GroupConfig", "init_uniforms"),
    ".fast": ("GramPath", "gram_path"),
    ".name": ("NameGroups", "name_groups"),
    ".planted": (
        "PlantedConcepts", "adjusted_rand_index", "mass_purity", "planted_concepts",
        "score_groups_on_planted",
    ),
    ".reference": ("KPath", "ReferenceGrouping", "reference_grouping", "reference_path"),
    ".result": ("GROUPS_FORMAT_VERSION", "EmbeddingGroups", "GroupsResult"),
})
