"""Benchmark: the name basis and the feature searches, timed and scored, each against a baseline in the same run.

- corpus ranking: `rank_prompts` (encoded and scored in batches) on 100,000 prompts (names x templates) with the
  tiny open_clip encoder and a random 1,024-feature SAE, against a per-prompt loop (encode one prompt, score it
  with the same `FeatureTarget.activation`). Both run in this process, interleaved block by block (ours on a
  block, the loop on all of it or on an evenly spaced sample of it), so load from other processes hits both
  alike; torch at 1 thread (the faster setting for both on this shared 2-core machine), then a short probe at
  2 threads. The loop covers the whole corpus when a pilot projects it under --full-loop-limit seconds, else an
  evenly spaced sample; the JSON says which. Both score the compared prompts the same (max |diff|) and rank
  them the same (ties within tolerance).
- basis fit: 1,000 targets (sparse non-negative mixes of 3 vocabulary rows plus noise) painted with k = 4 atoms
  over a 50,000-term vocabulary (d = 512, random unit embeddings around a shared reference):
  `sparse_nonnegative_fit_batch` (one [batch, d] x [d, V] float32 product per step, near-best atoms re-scored in
  float64) against the same greedy non-negative OMP per target in a Python loop with scipy.optimize.nnls at
  every step (atoms normalised once, untimed; float64 like our per-target fit), on an evenly spaced sample,
  alternating with two runs of ours. Mean residual |t - fit| of both on the same targets; also our per-target
  `sparse_nonnegative_fit` (which re-normalises the vocabulary on every call) on a few targets, and full
  (non-greedy) scipy nnls over the whole vocabulary on a couple of targets as the best residual without a
  sparsity budget.
- pair grid: `best_pairs` scores every (first, surname) pair of a 1,000 x 1,000 vocabulary (d = 1280) in batches
  (one [batch, d] x [d, L] product per batch, pair vectors never formed), against a dense baseline in the same
  run that forms each first name's L pair vectors explicitly and takes their cosines (the plain reading of the
  definition). Both rank the same top pairs; the ratio of their wall times is reported.
- basis score: `score_basis_on_world` on the default world (text and image targets), the demo's scorecard.
- search score: `score_search_on_world` with the planted dictionary (triggers, cancellers, contrast).

Run: `.venv/bin/python bench/search.py` (writes bench/results/search.json).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save


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


def corpus(n: int, n_templates: int = 10, seed: int = 0) -> list[str]:
    """n distinct prompts: random (first name, surname) pairs of the built-in lists in n_templates templates."""
    from namesae.names import first_names, surnames, template_kinds, templates
    from namesae.search import corpus_prompts

    firsts = list(dict.fromkeys(f.name for f in first_names()))
    lasts = [s.name for s in surnames()]
    tmpl = [t for kind in template_kinds() for t in templates(kind)][:n_templates]
    n_names = -(-n // len(tmpl))
    pick = np.random.default_rng(seed).choice(len(firsts) * len(lasts), size=n_names, replace=False)
    names = [f"{firsts[i % len(firsts)]} {lasts[i // len(firsts)]}" for i in pick]
    prompts = corpus_prompts(names, tmpl)[:n]
    assert len(prompts) == n, len(prompts)
    return prompts


def random_target(dim: int, d_sae: int = 1024, features: tuple[int, ...] = (3, 17), seed: int = 0) -> Any:
    """A FeatureTarget on a random standard SAE (unit decoder rows, tied encoder) in the tiny encoder's space."""
    from namesae.sae.model import build_sae_from_weights
    from namesae.search import sae_target

    w = np.random.default_rng(seed).normal(size=(d_sae, dim)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    sae = build_sae_from_weights(w.T, np.zeros(d_sae), w, np.zeros(dim), space="open_clip:tiny:seed0:text")
    return sae_target(sae, features)


def loop_scores(prompts: list[str], encoder: Any, target: Any) -> np.ndarray:
    """Baseline: encode one prompt at a time and score it with the same FeatureTarget.activation."""
    return np.array([float(target.activation(encoder.encode_text([p]))[0]) for p in prompts])


def interleaved_corpus(prompts: list[str], encoder: Any, target: Any, blocks: int, loop_per_block: int | None
                       ) -> dict:
    """Ours (`rank_prompts`) on each block, then the loop on the whole block (None) or an evenly spaced sample."""
    from namesae.search import rank_prompts

    size = -(-len(prompts) // blocks)
    ours_s = loop_s = 0.0
    ours = np.empty(len(prompts))
    loop_idx, loop_act = [], []
    for lo in range(0, len(prompts), size):
        block = prompts[lo:lo + size]
        start = time.perf_counter()
        ranked = rank_prompts(block, encoder, target)
        ours_s += time.perf_counter() - start
        pos = {p: i for i, p in enumerate(block)}
        for item in ranked:
            ours[lo + pos[item.prompt]] = item.activation
        take = np.arange(len(block)) if loop_per_block is None else \
            np.unique(np.linspace(0, len(block) - 1, min(loop_per_block, len(block))).round().astype(int))
        start = time.perf_counter()
        loop_act.append(loop_scores([block[i] for i in take], encoder, target))
        loop_s += time.perf_counter() - start
        loop_idx.append(lo + take)
    return {"ours": ours, "ours_s": ours_s, "loop_idx": np.concatenate(loop_idx),
            "loop": np.concatenate(loop_act), "loop_s": loop_s}


def same_ranking(ours: np.ndarray, loop: np.ndarray, tol: float) -> dict:
    """Do both score the same prompts alike, and rank them alike (swaps only between scores within tol)?"""
    order_loop = np.argsort(-loop, kind="stable")
    order_ours = np.argsort(-ours, kind="stable")
    ours_in_loop_order = ours[order_loop]
    worst_inversion = float(np.max(np.diff(ours_in_loop_order), initial=0.0))
    return {"max_abs_score_diff": float(np.max(np.abs(ours - loop))), "identical_order": bool(
        np.array_equal(order_loop, order_ours)), "worst_inversion": worst_inversion,
        "same_ranking_within_tolerance": worst_inversion <= tol, "tolerance": tol,
        "same_top10": bool(set(order_loop[:10]) == set(order_ours[:10]))}


def bench_corpus(n: int, sample: int, full_loop_limit: float, blocks: int = 10, probe_prompts: int = 5000,
                 probe_loop: int = 100) -> dict:
    """Ours vs the per-prompt loop on an n-prompt corpus: 1 torch thread (whole loop or a sample), 2-thread probe."""
    import torch

    from namesae.encoders import load_encoder

    prompts = corpus(n)
    encoder = load_encoder("tiny")
    target = random_target(encoder.dim)
    out: dict = {"n_prompts": n, "encoder": encoder.space("text"), "encoder_batch_size": encoder.batch_size,
                 "rank_prompts_batch": 1024, "sae": "random standard SAE, 1024 features, target = features 3+17",
                 "examples": prompts[:3]}
    torch.set_num_threads(1)
    loop_scores(prompts[:20], encoder, target)  # warm-up
    pilot = prompts[::max(1, n // 200)][:200]
    start = time.perf_counter()
    loop_scores(pilot, encoder, target)
    projected = n * (time.perf_counter() - start) / len(pilot)
    full = projected <= full_loop_limit
    run = interleaved_corpus(prompts, encoder, target, blocks, None if full else -(-sample // blocks))
    m = len(run["loop_idx"])
    ours_rate, loop_rate = n / run["ours_s"], m / run["loop_s"]
    out["threads_1"] = {
        "torch_threads": 1, "loop_projected_seconds_for_all": projected, "loop_limit_seconds": full_loop_limit,
        "loop_over": "all prompts" if full else f"an evenly spaced sample of {m} prompts (each block's share)",
        "seconds_ours": run["ours_s"], "seconds_loop": run["loop_s"], "prompts_loop": m,
        "prompts_per_s_ours": ours_rate, "prompts_per_s_loop": loop_rate, "speedup": ours_rate / loop_rate,
        "agreement": same_ranking(run["ours"][run["loop_idx"]], run["loop"], tol=1e-4)}
    print("corpus, 1 thread:", out["threads_1"], flush=True)
    torch.set_num_threads(2)
    probe = [prompts[i] for i in np.linspace(0, n - 1, probe_prompts).round().astype(int)]
    run2 = interleaved_corpus(probe, encoder, target, 5, -(-probe_loop // 5))
    m2 = len(run2["loop_idx"])
    out["threads_2_probe"] = {
        "torch_threads": 2, "prompts_ours": len(probe), "prompts_loop": m2,
        "prompts_per_s_ours": len(probe) / run2["ours_s"], "prompts_per_s_loop": m2 / run2["loop_s"],
        "speedup": (len(probe) / run2["ours_s"]) / (m2 / run2["loop_s"]),
        "agreement": same_ranking(run2["ours"][run2["loop_idx"]], run2["loop"], tol=1e-4)}
    print("corpus, 2 threads:", out["threads_2_probe"], flush=True)
    best_ours = max(out["threads_1"]["prompts_per_s_ours"], out["threads_2_probe"]["prompts_per_s_ours"])
    best_loop = max(out["threads_1"]["prompts_per_s_loop"], out["threads_2_probe"]["prompts_per_s_loop"])
    out["speedup_best_vs_best"] = best_ours / best_loop
    out["target_20x_met"] = out["speedup_best_vs_best"] >= 20
    return out


def greedy_nnls_baseline(t: np.ndarray, unit: np.ndarray, atoms: np.ndarray, reference: np.ndarray,
                         usable: np.ndarray, k: int, tol: float = 1e-6) -> tuple[list[int], np.ndarray]:
    """Baseline: greedy non-negative OMP for one target, scipy.optimize.nnls on the support at every step."""
    from scipy.optimize import nnls

    allowed = usable.copy()
    w, _ = nnls(reference[:, None], t)
    fit = w[0] * reference
    chosen: list[int] = []
    while len(chosen) < k:
        scores = np.where(allowed, unit @ (t - fit), -np.inf)
        j = int(np.argmax(scores))
        if not scores[j] > tol:
            break
        chosen.append(j)
        allowed[j] = False
        cols = np.column_stack([reference, atoms[chosen].T])
        w, _ = nnls(cols, t)
        fit = cols @ w
    return [c for c, wc in zip(chosen, w[1:]) if wc > 0], fit


def bench_basis_fit(n_targets: int, vocab: int, dim: int, k: int, sample: int, own: int, full: int,
                    seed: int = 0) -> dict:
    """The batched fit vs the greedy scipy-nnls loop per target; our per-target fit; full nnls as a floor."""
    from scipy.optimize import nnls

    from namesae.basis import sparse_nonnegative_fit, sparse_nonnegative_fit_batch

    rng = np.random.default_rng(seed)
    reference = rng.normal(size=dim)
    reference /= np.linalg.norm(reference)
    emb = reference + 1.2 * rng.normal(size=(vocab, dim)) / np.sqrt(dim)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    reference = reference.astype(np.float32)
    offsets = emb - reference  # [V, d] float32, as a vocabulary stores them
    planted = np.stack([rng.choice(vocab, 3, replace=False) for _ in range(n_targets)])
    targets = np.einsum("nk,nkd->nd", rng.uniform(0.5, 1.5, (n_targets, 3)), emb[planted].astype(np.float64))
    targets += 0.05 * np.linalg.norm(targets, axis=1, keepdims=True) * rng.normal(size=targets.shape) / np.sqrt(dim)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    a64, r64 = offsets.astype(np.float64), reference.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1)
    unit = a64 / np.where(norms > 0, norms, 1.0)[:, None]  # the baseline's normalisation, once and untimed
    idx = np.unique(np.linspace(0, n_targets - 1, sample).round().astype(int))
    halves = [idx[::2], idx[1::2]]
    sparse_nonnegative_fit_batch(targets[:8], offsets, reference, k)  # warm-up
    ours_s, base_s, base = [], 0.0, {}
    for half in halves:  # ours on all targets, the baseline on half the sample, twice: load hits both alike
        start = time.perf_counter()
        fits = sparse_nonnegative_fit_batch(targets, offsets, reference, k)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in half:
            base[int(i)] = greedy_nnls_baseline(targets[i], unit, a64, r64, norms > 0, k)
        base_s += time.perf_counter() - start
    resid = np.array([np.linalg.norm(t - f.final.fit) for t, f in zip(targets, fits)])
    base_resid = np.array([np.linalg.norm(targets[i] - base[int(i)][1]) for i in idx])
    recall = np.mean([len(set(f.final.indices) & set(p)) / 3 for f, p in zip(fits, planted)])
    ours_rate, base_rate = n_targets / float(np.mean(ours_s)), len(idx) / base_s
    out: dict = {
        "n_targets": n_targets, "vocabulary": vocab, "dim": dim, "k": k,
        "targets": "3 planted vocabulary rows, weights U(0.5, 1.5), + 5% gaussian noise, unit norm",
        "seconds_ours_runs": ours_s, "targets_per_s_ours": ours_rate,
        "baseline_targets": len(idx), "seconds_baseline": base_s, "targets_per_s_baseline": base_rate,
        "speedup": ours_rate / base_rate, "target_20x_met": ours_rate / base_rate >= 20,
        "mean_residual_ours_all": float(resid.mean()), "mean_residual_ours_on_baseline_targets":
            float(resid[idx].mean()), "mean_residual_baseline": float(base_resid.mean()),
        "ours_residual_le_baseline_everywhere": bool(np.all(resid[idx] <= base_resid + 1e-9)),
        "same_atoms_as_baseline": float(np.mean([fits[i].final.indices == base[int(i)][0] for i in idx])),
        "planted_atoms_recovered": float(recall)}
    print("basis fit:", out, flush=True)
    own_idx = idx[np.linspace(0, len(idx) - 1, own).round().astype(int)]
    start = time.perf_counter()
    own_fits = [sparse_nonnegative_fit(targets[i], offsets, reference, k) for i in own_idx]
    own_s = time.perf_counter() - start
    out["per_target_fit"] = {"targets": len(own_idx), "seconds": own_s, "targets_per_s": len(own_idx) / own_s,
                             "batched_speedup_over_it": ours_rate / (len(own_idx) / own_s),
                             "same_atoms": all(f.final.indices == fits[i].final.indices
                                               for f, i in zip(own_fits, own_idx))}
    print("per-target fit:", out["per_target_fit"], flush=True)
    if full:
        cols = np.column_stack([r64, a64.T])  # [d, V + 1]: the reference and every atom, no sparsity budget
        full_idx = idx[np.linspace(0, len(idx) - 1, full).round().astype(int)]
        rows = []
        for i in full_idx:
            start = time.perf_counter()
            w, res = nnls(cols, targets[i], maxiter=None)
            rows.append({"target": int(i), "seconds": time.perf_counter() - start, "residual": float(res),
                         "nonzero_weights": int((w > 0).sum()), "ours_residual": float(resid[i])})
        out["full_nnls_reference"] = {
            "note": "scipy.optimize.nnls over all V + 1 columns, no sparsity budget: the best residual at all; "
                    "with V >> d it needs up to d atoms, so it is a floor, not a like-for-like k-atom fit",
            "targets": rows, "mean_residual": float(np.mean([r["residual"] for r in rows]))}
        print("full nnls:", out["full_nnls_reference"], flush=True)
    return out


def main() -> None:
    from namesae.synth import SynthConfig, build_world
    from namesae.synth.score.basis import score_basis_on_world
    from namesae.synth.score.search import score_search_on_world

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--loop-sample", type=int, default=2000, help="loop prompts when the whole loop is too long")
    parser.add_argument("--full-loop-limit", type=float, default=180.0,
                        help="run the loop over the whole corpus when projected under this many seconds")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--vocabulary", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--baseline-targets", type=int, default=250)
    parser.add_argument("--per-target-fits", type=int, default=4)
    parser.add_argument("--full-nnls", type=int, default=2, help="targets for the full nnls reference (0: skip)")
    args = parser.parse_args()

    result: dict = {"corpus_ranking": bench_corpus(args.prompts, args.loop_sample, args.full_loop_limit)}
    result["basis_fit"] = bench_basis_fit(args.targets, args.vocabulary, args.dim, args.k, args.baseline_targets,
                                          args.per_target_fits, args.full_nnls)
    result["pair_grid"] = bench_pair_grid()
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
