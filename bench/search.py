"""Benchmark: the name basis and the feature searches, timed and scored on the default synthetic world.

- pair grid: `best_pairs` scores every (first, surname) pair of a 1,000 x 1,000 vocabulary (d = 1280) in batches
  (one [batch, d] x [d, L] product per batch, pair vectors never formed), against a dense baseline in the same
  run that forms each first name's L pair vectors explicitly and takes their cosines (the plain reading of the
  definition). Both rank the same top pairs; the ratio of their wall times is reported.
- basis score: `score_basis_on_world` on the default world (text and image targets), the demo's scorecard.
- search score: `score_search_on_world` with the planted dictionary (triggers, cancellers, contrast).

Run: `.venv/bin/python bench/search.py` (writes bench/results/search.json).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402


class RandomEncoder:
    """Stands in for CLIP in the pair-grid timing: re-encoding 50 prompts is not what is measured."""

    def __init__(self, dim: int) -> None:
        self.dim, self.normalized = dim, True

    def encode_text(self, texts):
        rng = np.random.default_rng(len(texts))
        x = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def space(self, kind):
        return f"random:{kind}"


def dense_pair_scores(target, firsts, lasts, reference, keep):
    """Baseline: form every pair vector (a_f - r) + (a_l - r), project out r, cosine to the target; top `keep`."""
    u = reference / np.linalg.norm(reference)
    t = target - (target @ u) * u
    best = []
    for i, af in enumerate(firsts):
        pair = (af - reference)[None] + (lasts - reference)  # [L, d]
        pair -= np.outer(pair @ u, u)
        cos = pair @ t / (np.linalg.norm(pair, axis=1) * np.linalg.norm(t))
        top = np.argpartition(-cos, keep)[:keep]
        best += [(float(cos[j]), i, int(j)) for j in top]
        best = sorted(best, reverse=True)[:keep]
    return best


def bench_pair_grid(n_first: int = 1000, n_last: int = 1000, dim: int = 1280, keep: int = 50) -> dict:
    from namesae.basis import Vocabulary, best_pairs

    rng = np.random.default_rng(0)
    shared = rng.normal(size=dim)
    emb = (shared + 0.5 * rng.normal(size=(n_first + n_last, dim))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    reference = (shared / np.linalg.norm(shared)).astype(np.float32)
    terms = tuple(f"F{i}" for i in range(n_first)) + tuple(f"L{i}" for i in range(n_last))
    vocab = Vocabulary(terms, ("first",) * n_first + ("last",) * n_last, emb, reference, "a photo of {name}",
                       "a person", "random:text")
    target = emb[3] + emb[n_first + 7] - reference
    t0 = time.perf_counter()
    ours = best_pairs(target, vocab, RandomEncoder(dim), top=keep, reencode=keep)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = dense_pair_scores(target.astype(np.float64), emb[:n_first].astype(np.float64),
                             emb[n_first:].astype(np.float64), reference.astype(np.float64), keep)
    t_base = time.perf_counter() - t0
    ours_set = {(p.first, p.last) for p in ours.pairs}
    base_set = {(f"F{i}", f"L{j}") for _, i, j in base}
    pred = {(p.first, p.last): p.predicted_centered_cosine for p in ours.pairs}
    return {"n_pairs": n_first * n_last, "dim": dim, "keep": keep, "seconds_ours": t_ours,
            "seconds_dense_baseline": t_base, "speedup": t_base / t_ours,
            "same_top_pairs": ours_set == base_set,
            "max_abs_score_diff": max(abs(pred[f"F{i}", f"L{j}"] - c) for c, i, j in base),
            "pairs_per_second": n_first * n_last / t_ours}


def main() -> None:
    from namesae.basis import score_basis_on_world
    from namesae.search import score_search_on_world
    from namesae.synth import SynthConfig, build_world

    result: dict = {"pair_grid": bench_pair_grid()}
    print("pair grid:", {k: v for k, v in result["pair_grid"].items()})
    world = build_world(SynthConfig(seed=0, progression=False))
    for target in ("text", "image"):
        t0 = time.perf_counter()
        score = score_basis_on_world(world, k=4, target=target)
        score.pop("names")
        result[f"basis_{target}"] = {**score, "seconds": time.perf_counter() - t0}
        print(f"basis ({target}):", {k: v for k, v in result[f"basis_{target}"].items()})
    t0 = time.perf_counter()
    search = score_search_on_world(world, steps=2)
    result["search"] = {"seconds": time.perf_counter() - t0, "triggers": {k: v for k, v in search["triggers"].items()
                                                                          if k != "items"},
                        "cancellers": {k: v for k, v in search["cancellers"].items() if k != "items"},
                        "contrast": search["contrast"]}
    print("search:", result["search"])
    print("wrote", save("search", result))


if __name__ == "__main__":
    main()
