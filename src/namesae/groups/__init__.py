"""Feature groups: activation-weighted spherical k-means over an embedding's active SAE features.

`api.py` (groups of codes and direction sets, as records), `name.py` (a name's groups and their stability), `fast.py` (the batched Gram path),
`reference.py` (the plain per-embedding implementation the fast path is tested against), `planted.py` (planted
concept data and scores), `config.py` (settings), `result.py` (groups.json: GroupsResult, EmbeddingGroups), `run.py`
(`namesae groups` as one call: `run_groups`, and feature labels `load_labels`).
"""

from namesae.groups.api import (
    BatchGroups,
    FeatureGroup,
    Grouping,
    group_codes,
    group_sets,
    join_similar,
)
from namesae.groups.config import GroupConfig, init_uniforms
from namesae.groups.fast import GramPath, gram_path
from namesae.groups.name import NameGroups, name_groups
from namesae.groups.planted import (
    PlantedConcepts,
    adjusted_rand_index,
    mass_purity,
    planted_concepts,
    score_groups_on_planted,
)
from namesae.groups.reference import KPath, ReferenceGrouping, reference_grouping, reference_path
from namesae.groups.result import GROUPS_FORMAT_VERSION, EmbeddingGroups, GroupsResult

__all__ = [
    "GROUPS_FORMAT_VERSION", "BatchGroups", "EmbeddingGroups", "FeatureGroup", "GramPath", "GroupConfig",
    "Grouping", "GroupsResult", "KPath", "NameGroups", "PlantedConcepts", "ReferenceGrouping",
    "adjusted_rand_index", "gram_path", "group_codes", "group_sets", "init_uniforms", "join_similar",
    "mass_purity", "name_groups", "planted_concepts", "reference_grouping", "reference_path",
    "score_groups_on_planted",
]
