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

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".basis": ("score_basis_on_world",),
    ".emergence": (
        "TARGETS", "expected_phase", "load_series", "score_emergence", "truth_frequencies", "world_series",
        "write_score",
    ),
    ".identity": ("score_absorption", "score_identity", "score_seed_stability"),
    ".search": (
        "PlantedDictionary", "feature_labels", "planted_dictionary", "score_search_on_world", "search_rates",
    ),
    ".steer": ("IdentityEditScore", "score_identity_edits", "score_world_ablation"),
    ".world": ("open_world", "truth_of", "truth_table", "world_rows"),
})
