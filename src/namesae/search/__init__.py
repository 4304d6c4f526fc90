"""Feature search: prompts that drive an SAE feature (or group), additions that cancel it, and feature contrasts.

A `FeatureTarget` is a set of SAE features and a way to compute codes; its activation on an embedding is the sum
of the features' codes (a group of one feature is a feature). Every search goes through the real text encoder:
candidate prompts are encoded in batches and scored on the SAE's codes, never estimated in embedding space.

- `rank_prompts`: every prompt of a corpus (names x templates, vocabulary phrases) ranked by activation.
- `improve_prompt`: discrete search from a prompt, word by word: each step tries substituting every word and
  inserting at every gap each vocabulary token (beam search; beam 1 is greedy) and keeps the best candidates;
  the activation gained at each step is reported. It stops when no candidate gains.
- `find_cancellers`: for a prompt and an unwanted feature, every vocabulary addition (appended as ", word", or
  inserted at any gap) is tried; additions are ranked by the feature's drop, among those that keep the rest of
  the embedding close: cosine to the original embedding with the features' decoder directions projected out
  (`rest_cosine`) >= min_rest_cosine. Additions stack greedily for `steps` > 1.
- `contrast_codes` / `contrast_store`: every feature's mean difference and Cohen's d between two row sets,
  ranked by |d|, with a percentile bootstrap CI of d for the top features (resampling rows of each set).

Modules: `target.py` (FeatureTarget, prompt encoding), `prompts.py` (corpus ranking, token search), `cancel.py`
(anti-patterns), `contrast.py` (effect sizes between row sets), `run.py` (each `namesae search` command as one
call, handed its encoder and features). Scored on a synthetic world in `namesae.synth.score.search`.
"""

from namesae._lazy import lazy_exports

# Public name -> the module that defines it (imported on first use).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".cancel": ("POSITIONS", "Addition", "AntiPatternSearch", "addition_candidates", "find_cancellers"),
    ".contrast": (
        "SD_FLOOR", "Contrast", "ContrastRow", "Moments", "bootstrap_d", "cohen_d", "contrast_codes",
        "contrast_store", "select_rows",
    ),
    ".prompts": (
        "OPS", "RankedPrompt", "SearchStep", "TokenSearch", "corpus_prompts", "improve_prompt",
        "prompt_edits", "rank_prompts",
    ),
    ".run": (
        "CancelRun", "ContrastRun", "DriveRun", "FeatureCodes", "run_cancel", "run_contrast", "run_drive",
    ),
    ".target": ("Codes", "FeatureTarget", "as_numpy", "encode_prompts", "parse_features", "sae_target"),
})
