"""Emergence and phases: when a name gains a dedicated feature along an ordered series, and its phase at each point.

A series is an ordered list of (store, SAE) points: CLIP checkpoints by samples seen, SAE dictionary sizes, or an
SAE's own training steps (`series.py` documents the spec file and folder conventions). Features of different SAEs
are different features, so dedication is measured within each point's SAE (`measures.py`); across SAEs of one
space, feature-family links (decoder cosines between consecutive SAEs) show a shared feature splitting into a
name's own (`families.py`). Per name: the dedication curve, the emergence index (first point from which it stays
dedicated), the least-squares change point of the curve, and the phase 1-4 at each point with the measures that
decided it (`curves.py`; thresholds in `config.py`). `namesae.synth.score.emergence` reads a synthetic world's
progression as a series and scores a run against the world's truth.

Python API::

    from namesae.emergence import EmergenceConfig, load_series, run_emergence, write_emergence
    series = load_series("series.toml", train={"d_sae": 256})    # a spec file or an SAE run's checkpoints
    result = run_emergence(series, EmergenceConfig(), out_dir="runs/emergence", progress=True)
    write_emergence(result, "runs/emergence")

    from namesae.synth.score.emergence import load_series, score_emergence, truth_frequencies
    series = load_series("runs/world", train={"d_sae": 256})     # a synthetic world's progression
    result = run_emergence(series, frequencies=truth_frequencies(series), out_dir="runs/emergence")
    write_emergence(result, "runs/emergence", score=score_emergence(result, "runs/world"))

Outputs (`write_emergence`): emergence.json (series, config, per name: curves, phases with measures and reasons,
links), emergence.csv (one row per name), curves.csv (one row per name and point), families.csv (family links),
score.json (when scored), dedication_curves.png, phase_map.png, emergence_vs_frequency.png (when frequencies are
known).
"""

from namesae._lazy import lazy_exports

# The public API, by the module that defines it (imported on first use); every other name lives in its submodule
# (namesae.emergence.curves, .measures, .plots, ...).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ("EmergenceConfig", "PhaseConfig", "emergence_config_from_dict", "load_emergence_config"),
    ".curves": ("ChangePoint", "change_point", "change_point_reference", "decide_phase", "emergence_index"),
    ".families": ("name_links", "unit_rows"),
    ".measures": ("grouped_stats_from_codes", "name_features", "scenario_measures"),
    ".pipeline": ("run_emergence", "write_emergence"),
    ".result": ("EmergenceResult", "NameSeries", "assemble", "load_emergence", "measure_point"),
    ".series": ("Series", "SeriesPoint", "load_frequencies", "load_series"),
})
