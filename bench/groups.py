"""Benchmark: feature groups of 1,000 embeddings (300 active features, d = 1280, k = 1..20) against scikit-learn.

Ours: `namesae.groups.group_sets` (batched Gram path, all k and restarts at once). Baseline: scikit-learn KMeans on
the unit directions with sample_weight, one fit per embedding and k (n_init = our restarts), then the same mass
rule. Both run in this process, interleaved block by block (ours on a block, the baseline on a sample of the same
block), so load from other processes hits both alike. Reported: embeddings/s of each and their ratio; the
objective (weighted mean cosine to centroid) of both for every k on the sampled embeddings; how often both choose
the same k, next to how often scikit-learn agrees with itself under another seed (the rule's own instability).
Writes bench/results/groups.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

from namesae.groups import GroupConfig, group_sets, planted_concepts
from namesae.groups.config import SHARE_SLACK


def sklearn_path(units: np.ndarray, weights: np.ndarray, k_max: int, n_init: int, seed: int) -> dict:
    """scikit-learn KMeans for k = 1..k_max on one embedding: objective per k and the k the mass rule keeps."""
    from sklearn.cluster import KMeans

    u = torch.as_tensor(units, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    total = float(w.sum())
    objective, min_share = [], []
    for k in range(1, k_max + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning when fewer distinct points than k
            labels = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(units, sample_weight=weights).labels_
        lab = torch.as_tensor(labels, dtype=torch.int64)
        sums = torch.zeros(k, u.shape[1], dtype=torch.float64).index_add_(0, lab, w[:, None] * u)
        objective.append(float(sums.norm(dim=1).sum()) / total)
        min_share.append(float((torch.bincount(lab, weights=w, minlength=k) / total).min()))
    return {"objective": np.array(objective), "min_share": np.array(min_share)}


def chosen_k(min_share: np.ndarray, m_min: float) -> int:
    """The mass rule: the largest k whose every group holds >= m_min of the mass."""
    return int(np.nonzero(min_share >= m_min * (1 - SHARE_SLACK))[0].max()) + 1


def run_setting(cases: list, configs: dict[str, GroupConfig], args: argparse.Namespace, rng: np.random.Generator,
                threads: int, floor: bool) -> dict:
    """Ours (each config) on every block and scikit-learn on a sample of it, alternating, `threads` threads."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    first = next(iter(configs.values()))
    size = -(-len(cases) // args.blocks)
    ours_s = dict.fromkeys(configs, 0.0)
    ours_k: dict[str, list] = {c: [] for c in configs}
    ours_obj: dict[str, list] = {c: [] for c in configs}
    ours_k2 = []
    base_s = 0.0
    base: dict[str, list] = {"index": [], "k": [], "k_other_seed": [], "objective": []}
    # One padded batch [N, n, d], built once: every block of it is used in place (no copies).
    directions = torch.stack([c.directions for c in cases])
    weights = torch.stack([c.weights for c in cases])
    with threadpool_limits(threads):
        for cfg in configs.values():  # warm-up
            group_sets(directions[:8], weights[:8], cfg, args.device)
        for lo in range(0, len(cases), size):
            block = cases[lo:lo + size]
            for name, cfg in configs.items():
                start = time.perf_counter()
                groups = group_sets(directions[lo:lo + size], weights[lo:lo + size], cfg, args.device)
                ours_s[name] += time.perf_counter() - start
                ours_k[name].append(groups.k_mass.numpy())
                ours_obj[name].append(groups.objective.numpy())
            if floor:
                other = dataclasses.replace(first, seed=first.seed + 1)
                ours_k2.append(group_sets(directions[lo:lo + size], weights[lo:lo + size], other,
                                          args.device).k_mass.numpy())
            sample = rng.choice(len(block), size=min(args.baseline_per_block, len(block)), replace=False)
            start = time.perf_counter()
            for i in sample:
                run = sklearn_path(block[i].directions.numpy(), block[i].weights.numpy(), first.k_max,
                                   args.sklearn_n_init, args.seed)
                base["index"].append(lo + int(i))
                base["k"].append(chosen_k(run["min_share"], first.m_min))
                base["objective"].append(run["objective"])
            base_s += time.perf_counter() - start
            if floor:  # scikit-learn against itself with another seed (not timed)
                for i in sample:
                    run = sklearn_path(block[i].directions.numpy(), block[i].weights.numpy(), first.k_max,
                                       args.sklearn_n_init, args.seed + 1)
                    base["k_other_seed"].append(chosen_k(run["min_share"], first.m_min))
            done = lo + len(block)
            print(f"threads {threads}, {done} embeddings: " + ", ".join(
                f"ours[{n}] {done / ours_s[n]:.1f} emb/s" for n in configs) +
                f", scikit-learn {len(base['k']) / base_s:.3f} emb/s", flush=True)
    idx = np.array(base["index"])
    base_obj = np.stack(base["objective"])  # [m, k_max]
    base_rate = len(idx) / base_s
    out: dict = {"threads": threads, "sklearn_embeddings_per_s": round(base_rate, 4),
                 "sklearn_embeddings_timed": len(idx), "ours": {}}
    for name, cfg in configs.items():
        k, obj = np.concatenate(ours_k[name]), np.concatenate(ours_obj[name])
        diff = obj[idx] - base_obj  # ours - scikit-learn, per sampled embedding and k
        rate = len(cases) / ours_s[name]
        out["ours"][name] = {
            "restarts": cfg.restarts, "embeddings_per_s": round(rate, 2),
            "speedup": round(rate / base_rate, 1),
            "objective": {"ours_mean": float(np.nanmean(obj[idx])), "sklearn_mean": float(base_obj.mean()),
                          "mean_diff_ours_minus_sklearn": float(np.nanmean(diff)),
                          "share_of_k_ours_ge_sklearn": float((diff >= -1e-6).mean()),
                          "per_k_mean_diff": [round(float(x), 6) for x in np.nanmean(diff, 0)],
                          "at_our_chosen_k_mean_diff": float(np.mean([diff[m, k[i] - 1] for m, i in enumerate(idx)]))},
            "chosen_k": {"same_as_sklearn": float((k[idx] == np.array(base["k"])).mean()),
                         "histogram": np.bincount(k, minlength=first.k_max + 1).tolist()}}
    out["sklearn_chosen_k_histogram"] = np.bincount(base["k"], minlength=first.k_max + 1).tolist()
    if floor:
        out["noise_floor"] = {
            "sklearn_vs_sklearn_other_seed": float((np.array(base["k"]) == np.array(base["k_other_seed"])).mean()),
            "ours_vs_ours_other_seed": float((np.concatenate(ours_k[next(iter(configs))]) ==
                                              np.concatenate(ours_k2)).mean())}
    return out


def main() -> None:
    """Build the data, run both side by side for each thread count, print and save the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embeddings", type=int, default=1000)
    parser.add_argument("--active", type=int, default=300, help="active features per embedding")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k-max", type=int, default=20)
    parser.add_argument("--restarts", type=int, nargs="+", default=[1, 3],
                        help="our restarts, one timed run each (1: the same work as n_init=1; 3: our default)")
    parser.add_argument("--sklearn-n-init", type=int, default=1, help="scikit-learn n_init (its default with "
                        "k-means++, 'auto', is 1)")
    parser.add_argument("--baseline-per-block", type=int, default=6,
                        help="embeddings of each block also run through scikit-learn")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to measure (both libraries get the same)")
    parser.add_argument("--nuances", type=int, default=3, help="planted data: nuance directions per concept "
                        "(3: sub-structured concepts; 40: isotropic spread)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    cases = [planted_concepts(int(rng.integers(2, 7)), args.active, args.dim, seed=int(rng.integers(2**31)),
                              nuances=args.nuances) for _ in range(args.embeddings)]
    configs = {f"restarts={r}": GroupConfig(k_max=args.k_max, restarts=r, seed=args.seed) for r in args.restarts}
    runs = [run_setting(cases, configs, args, rng, t, floor=(i == 0)) for i, t in enumerate(args.threads)]
    out = {"data": {"embeddings": args.embeddings, "active": args.active, "dim": args.dim, "k_max": args.k_max,
                    "concepts": "2..6 planted", "nuances": args.nuances},
           "sklearn_n_init": args.sklearn_n_init, "device": args.device, "load_average": list(os.getloadavg()),
           "runs": runs, "targets": {"speedup": 100, "same_k": 0.95}}
    for r in runs:
        for name, o in r["ours"].items():
            print(f"threads {r['threads']}, ours {name}: {o['embeddings_per_s']:.1f} emb/s vs scikit-learn "
                  f"{r['sklearn_embeddings_per_s']:.3f} emb/s = {o['speedup']:.0f}x; objective ours - sklearn "
                  f"{o['objective']['mean_diff_ours_minus_sklearn']:+.5f} (ours >= sklearn on "
                  f"{o['objective']['share_of_k_ours_ge_sklearn']:.0%} of (embedding, k)); same k "
                  f"{o['chosen_k']['same_as_sklearn']:.0%}")
    floor = runs[0]["noise_floor"]
    print(f"chosen k, the rule's own instability: scikit-learn vs itself (other seed) "
          f"{floor['sklearn_vs_sklearn_other_seed']:.0%}, ours vs ours {floor['ours_vs_ours_other_seed']:.0%}")
    print(f"wrote {save('groups', out)}")


if __name__ == "__main__":
    main()
