"""Every analysis scored against a synthetic world's planted truth: one scorer module per analysis.

Scorers import the analyses and the world; no analysis imports them (or `namesae.synth`), so an analysis never
depends on what was planted. The demo (`namesae.demo`) and the `--world` / `--truth` options of the CLI call them.

- `identity.py`: dedicated-name detection, rigidity ranking, absorption of name parts, seed stability.
- `emergence.py`: a world's progression as a series, and emergence indices and phases against planted onsets.
- `steer.py`: zeroing found identity features: does the name move to its parts, how much identity is removed.
- `basis.py`: compositional names paint from other names' parts; dedicated names resist.
- `search.py`: feature search, anti-patterns and contrast against planted triggers, cancellers and templates.
- `world.py`: truth tables, worlds in memory or on disk, and their rows (shared by the scorers).
"""

from namesae.synth.score.basis import score_basis_on_world
from namesae.synth.score.emergence import (
    TARGETS,
    expected_phase,
    load_series,
    score_emergence,
    truth_frequencies,
    world_series,
    write_score,
)
from namesae.synth.score.identity import score_absorption, score_identity, score_seed_stability
from namesae.synth.score.search import (
    PlantedDictionary,
    feature_labels,
    planted_dictionary,
    score_search_on_world,
    search_rates,
)
from namesae.synth.score.steer import IdentityEditScore, score_identity_edits, score_world_ablation
from namesae.synth.score.world import open_world, truth_of, truth_table, world_rows

__all__ = [
    "TARGETS", "IdentityEditScore", "PlantedDictionary", "expected_phase", "feature_labels", "load_series",
    "open_world", "planted_dictionary", "score_absorption", "score_basis_on_world", "score_emergence",
    "score_identity", "score_identity_edits", "score_search_on_world", "score_seed_stability",
    "score_world_ablation", "search_rates", "truth_frequencies", "truth_of", "truth_table", "world_rows",
    "world_series", "write_score",
]
