"""One-line definitions of every measure the report shows: the glossary page and the hover titles of tables.

The definitions follow README "The science"; each is one sentence a reader can check against the code.
Keys are the field names of identity.json / features.json / metrics.json rows; the table below is "key | title | text",
indented lines continuing the one above.
"""

from __future__ import annotations

_TABLE = """
precision | precision | Under the default rule 'strongest': the share of rows of this name among the feature's
    strongest firings (the best qualifying prefix of its firings sorted by activation).
recall | recall | The share of the name's rows on which the feature fires (within that prefix).
mass_precision | mass precision | DESIGN's original precision: the feature's activation mass on this name over
    its mass on all names (rule 'mass_share').
tau_p | tau_p | Precision threshold of an identity feature (default 0.8).
tau_r | tau_r | Recall threshold of an identity feature (default 0.5).
min_gap | gap | Median activation of the name's rows in the prefix over the median of the feature's next
    firings; an identity feature needs at least min_gap (1.25).
identity_feature | identity feature | A feature with precision >= tau_p and recall >= tau_r for a name (and a
    gap >= min_gap): it fires for this name and almost no other.
dedicated | dedicated | The name has at least one identity feature of its own.
dedication | dedication | The largest precision x recall over the name's features (1 = one feature that fires
    on all its rows and no other name's).
share | mass share | The feature's share of the name's total activation mass.
n_names | names | How many names the feature fires on.
part_composition | name-part composition | Cosine between e('First Last') and the best non-negative
    combination of e('First'), e('Last') and the bare template (text space); low = the full name departs from
    its parts.
trace | tr(Σ) | Total variance of the name's image embeddings (trace of their covariance); low = rigid.
logdet | log det | log det(Σ + 1e-4 I) of the name's image embeddings; low = rigid.
cos_mean | mean cos | Mean pairwise cosine of the name's image embeddings; high = rigid.
cos_min | min cos | Smallest pairwise cosine of the name's image embeddings.
cos_max | max cos | Largest pairwise cosine of the name's image embeddings.
dse | DSE | Diffusion spectral entropy of the name's image embeddings (Gaussian kernel, bandwidth the median
    pairwise distance); low = rigid.
rigidity | rigidity | How little a name's generations vary: mean pairwise cosine of its image embeddings,
    measured in each embedding space (CLIP, DINOv2).
z | z-score | (value - mean over the prior's low-bias names) / their standard deviation.
n_rows | rows | Rows (embeddings) of the name in the store.
n_image_rows | image rows | Image rows of the name (its generations).
absorption | absorption | 1 - min(1, mean activation of a name part's identity feature on the full name's rows
    / on the part's own rows): 1 = the part's feature stops firing here.
activation_ratio | activation ratio | Mean activation of the part's feature on the full name's rows over its
    mean on the part's own rows.
fire_ratio | fire ratio | The same ratio with firing rates (recall) instead of activations.
seed_agreement | seed agreement | Share of SAEs (other seeds) that agree with the majority verdict.
matched_cosine | matched cosine | Decoder cosine between the identity feature and its Hungarian match in the
    other seeds' SAEs.
feature_agreement | feature agreement | Share of seeds where the matched feature is an identity feature of
    this name too.
frequency | frequency | Share of rows on which the feature fires.
fire_count | fire count | Rows on which the feature fires.
mean_activation | mean activation | Mean activation over the rows where the feature fires.
max_activation | max activation | Largest activation seen.
mass | mass | Sum of the feature's activations over all rows.
label | label | The vocabulary phrase whose embedding's cosine with the feature's decoder direction is
    highest; shown only when its margin over the runner-up is at least the report's label margin.
label_cosine | label cosine | Cosine between the feature's decoder direction and its label's embedding.
label_margin | label margin | The label's cosine minus the runner-up phrase's cosine.
activation | activation | The feature's activation on this row.
mass_share | group mass share | The group's share of the name's activation mass.
coherence | coherence | Mean pairwise cosine of the group's decoder directions, weighted by activation.
emergence_index | emergence index | The first point of the series from which the name stays dedicated.
change_point | change point | The split of the dedication curve that most reduces squared error.
phase | phase | 1 name-part biases dominate, 2 coarse attributes stable, 3 identity stable, 4 overfit.
explained_variance | explained variance | 1 - residual variance / variance of held-out rows.
mean_l0 | mean L0 | Mean number of features firing per held-out row.
dead_fraction | dead fraction | Share of features that never fire on held-out rows.
dead_fraction_training | dead in training | Share of features that fired on no training batch of the run's last
    dead-feature window.
dense_fraction | dense fraction | Share of features that fire on more than 10% of held-out rows.
icon | icon | The decoder's image of an embedding that carries the feature alone (the SAE's decode of a code
    where only it fires), same seed for every icon: a preview of its causal effect.
cosine | cosine | Cosine between the name's embedding and the composed prompt's combination.
reencoded_cosine | re-encoded cosine | Cosine between the name's embedding and the composed prompt, embedded
    again by the encoder.
verdict | verdict | PASS when the value meets its target, MISS when not; blank for reported values.
"""

_ENTRIES = _TABLE.strip().replace("\n    ", " ").splitlines()
GLOSSARY: dict[str, tuple[str, str]] = {
    key.strip(): (title.strip(), text.strip())
    for key, title, text in (entry.split(" | ", 2) for entry in _ENTRIES)
}
"""key -> (title, definition)."""


def define(key: str) -> str:
    """The one-line definition of a field (z_* fields share the z-score's), or ''."""
    if key.startswith("z_"):
        base = GLOSSARY.get(key[2:], ("", ""))[0] or key[2:]
        return f"z-score of {base}: (value - prior mean) / prior std over low-bias names."
    entry = GLOSSARY.get(key)
    return entry[1] if entry else ""
