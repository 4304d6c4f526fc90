"""Name basis: paint a target embedding as a short prompt of name parts and attribute phrases; name axes.

Vocabulary. Every term is embedded once, in context, by the encoder that will re-encode the painting: a name
(first name, surname, full name) fills the template ("a photo of Vicki"), a phrase is appended to the template
filled with a neutral filler ("a photo of a person, elderly"); the filled template itself is the reference r.
An atom is a term's offset from the reference, a_i - r: what the term adds to a prompt.

Fit (non-negative OMP). The target t is approximated by c = w_0 r + Σ_{i in S} w_i (a_i - r), w >= 0, |S| <= K:
greedily add the atom most positively correlated with the residual, refit all weights by NNLS on the support
(w_0 free, not counted in K), stop at K atoms or when no atom correlates positively. Why OMP and not NNLS with a
sparsity penalty: K is a hard budget (a prompt holds a few words), OMP meets it exactly with no penalty to tune,
each step costs one pass over the vocabulary (a [V, d] x [d] product) and its NNLS has at most K + 1 columns, and
the greedy order gives a path (1 term, 2 terms, ...) that we also render. Kind constraints follow what a prompt
can say: at most one first name and one surname (rendered "First Last"), or one full name instead of both.

Honest number. The combination's cosine to t is what the linear picture promises; the painting is then rendered
as a prompt (template with "First Last", then ", phrase" per phrase — "a photo of Vicki Sullivan, elderly"),
re-encoded by the real encoder, and its cosine to t is reported too. Both are also given orthogonal to the
reference ("centered": the component along r removed from both vectors), which measures what the name adds
beyond the bare template and is not inflated by the direction every prompt shares.

Axes. PCA over the embeddings of well-known full names; the coordinates of any embedding on those axes; and a walk
along one axis reporting, at each step, the first names and surnames nearest to it (in the axes' coordinates,
each kind centred on its own mean), i.e. which name parts move along the axis.

Modules: `vocabulary.py` (terms, their prompts, the store cache), `fit.py` (non-negative OMP, one target or a
batch), `paint.py` (paintings and best pairs), `axes.py` (PCA name axes and walks), `targets.py` (a target embedding
from a store row or name, a prompt, an image or a file), `run.py` (each `namesae basis` command as one call).
Scored on a synthetic world in `namesae.synth.score.basis`.
"""

from namesae.basis.axes import NameAxes, WalkStep, fit_name_axes, walk_axis
from namesae.basis.fit import (
    FitStep,
    SparseFit,
    centered_cosine,
    cosine,
    sparse_nonnegative_fit,
    sparse_nonnegative_fit_batch,
)
from namesae.basis.paint import (
    CHOOSE,
    Painting,
    PaintTerm,
    PairCandidate,
    PairSearch,
    PathStep,
    best_pairs,
    paint,
)
from namesae.basis.run import BasisRun, VocabRun, run_axes, run_paint, run_pairs, run_vocab
from namesae.basis.targets import Target, TargetSpec, embedding_file, resolve_target
from namesae.basis.vocabulary import (
    DEFAULT_FILLER,
    DEFAULT_MAX_PER_KIND,
    DEFAULT_PHRASES,
    DEFAULT_TEMPLATE,
    NAME_KINDS,
    REFERENCE,
    TERM_KINDS,
    VOCAB_ATTR,
    VOCAB_FORMAT,
    Vocabulary,
    build_vocabulary,
    read_vocabulary,
    render_painting,
    term_prompt,
    write_vocabulary,
)

__all__ = [
    "CHOOSE", "DEFAULT_FILLER", "DEFAULT_MAX_PER_KIND", "DEFAULT_PHRASES", "DEFAULT_TEMPLATE", "NAME_KINDS",
    "REFERENCE", "TERM_KINDS", "VOCAB_ATTR", "VOCAB_FORMAT", "BasisRun", "FitStep", "NameAxes", "PaintTerm",
    "Painting", "PairCandidate", "PairSearch", "PathStep", "SparseFit", "Target", "TargetSpec", "VocabRun",
    "Vocabulary", "WalkStep", "best_pairs", "build_vocabulary", "centered_cosine", "cosine", "embedding_file",
    "fit_name_axes", "paint", "read_vocabulary", "render_painting", "resolve_target", "run_axes", "run_paint",
    "run_pairs", "run_vocab", "sparse_nonnegative_fit", "sparse_nonnegative_fit_batch", "term_prompt",
    "walk_axis", "write_vocabulary",
]
