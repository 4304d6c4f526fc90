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
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

from namesae.groups import GroupConfig, group_sets, planted_concepts  # noqa: E402
from namesae.groups.config import SHARE_SLACK  # noqa: E402


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


def main() -> None:
    """Build the data, run both side by side, print and save the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embeddings", type=int, default=1000)
    parser.add_argument("--active", type=int, default=300, help="active features per embedding")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--k-max", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=1, help="our restarts = scikit-learn n_init")
    parser.add_argument("--baseline-per-block", type=int, default=8,
                        help="embeddings of each block also run through scikit-learn")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--nuances", type=int, default=3, help="planted data: nuance directions per concept "
                        "(3: sub-structured concepts; 40: isotropic spread)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    cases = [planted_concepts(int(rng.integers(2, 7)), args.active, args.dim, seed=int(rng.integers(2**31)),
                              nuances=args.nuances) for _ in range(args.embeddings)]
    config = GroupConfig(k_max=args.k_max, restarts=args.restarts, seed=args.seed)
    other_seed = GroupConfig(k_max=args.k_max, restarts=args.restarts, seed=args.seed + 1)
    group_sets([c.directions for c in cases[:8]], [c.weights for c in cases[:8]], config, args.device)  # warm-up

    size = -(-args.embeddings // args.blocks)
    ours_s = base_s = 0.0
    ours_k, ours_k2, ours_obj = [], [], []
    base = {"index": [], "k": [], "k_other_seed": [], "objective": []}
    for lo in range(0, args.embeddings, size):
        block = cases[lo:lo + size]
        start = time.perf_counter()
        groups = group_sets([c.directions for c in block], [c.weights for c in block], config, args.device)
        ours_s += time.perf_counter() - start
        ours_k.append(groups.k_mass.numpy())
        ours_obj.append(groups.objective.numpy())
        ours_k2.append(group_sets([c.directions for c in block], [c.weights for c in block], other_seed,
                                  args.device).k_mass.numpy())
        sample = rng.choice(len(block), size=min(args.baseline_per_block, len(block)), replace=False)
        start = time.perf_counter()
        for i in sample:
            run = sklearn_path(block[i].directions.numpy(), block[i].weights.numpy(), args.k_max, args.restarts,
                               args.seed)
            base["index"].append(lo + int(i))
            base["k"].append(chosen_k(run["min_share"], config.m_min))
            base["objective"].append(run["objective"])
        base_s += time.perf_counter() - start
        for i in sample:  # the noise floor: scikit-learn against itself with another seed (not timed)
            run = sklearn_path(block[i].directions.numpy(), block[i].weights.numpy(), args.k_max, args.restarts,
                               args.seed + 1)
            base["k_other_seed"].append(chosen_k(run["min_share"], config.m_min))
        print(f"block {lo // size + 1}: ours {(lo + len(block)) / ours_s:.0f} emb/s so far, "
              f"scikit-learn {len(base['k']) / base_s:.2f} emb/s", flush=True)

    ours_k, ours_k2, ours_obj = np.concatenate(ours_k), np.concatenate(ours_k2), np.concatenate(ours_obj)
    idx = np.array(base["index"])
    base_obj = np.stack(base["objective"])  # [m, k_max]
    diff = ours_obj[idx] - base_obj  # ours - scikit-learn, per sampled embedding and k
    ours_rate = args.embeddings / ours_s
    base_rate = len(idx) / base_s
    same_k = float((ours_k[idx] == np.array(base["k"])).mean())
    out = {
        "data": {"embeddings": args.embeddings, "active": args.active, "dim": args.dim, "k_max": args.k_max,
                 "concepts": "2..6 planted", "nuances": args.nuances},
        "restarts": args.restarts, "device": args.device, "threads": torch.get_num_threads(),
        "ours_embeddings_per_s": round(ours_rate, 2), "sklearn_embeddings_per_s": round(base_rate, 3),
        "sklearn_embeddings_timed": int(len(idx)), "speedup": round(ours_rate / base_rate, 1),
        "objective": {"ours_mean": float(np.nanmean(ours_obj[idx])), "sklearn_mean": float(base_obj.mean()),
                      "mean_diff_ours_minus_sklearn": float(np.nanmean(diff)),
                      "share_of_k_ours_ge_sklearn": float((diff >= -1e-6).mean()),
                      "per_k_mean_diff": [round(float(x), 6) for x in np.nanmean(diff, 0)],
                      "at_chosen_k_mean_diff": float(np.mean([diff[m, ours_k[i] - 1] for m, i in enumerate(idx)]))},
        "chosen_k": {"same_as_sklearn": same_k,
                     "sklearn_vs_sklearn_other_seed": float((np.array(base["k"]) == np.array(base["k_other_seed"]))
                                                            .mean()),
                     "ours_vs_ours_other_seed": float((ours_k == ours_k2).mean()),
                     "ours_histogram": np.bincount(ours_k, minlength=args.k_max + 1).tolist(),
                     "sklearn_histogram": np.bincount(base["k"], minlength=args.k_max + 1).tolist()},
        "targets": {"speedup": 100, "same_k": 0.95},
    }
    print(f"ours {ours_rate:.1f} emb/s, scikit-learn {base_rate:.2f} emb/s: {ours_rate / base_rate:.0f}x; "
          f"objective ours - sklearn {out['objective']['mean_diff_ours_minus_sklearn']:+.5f} "
          f"(ours >= sklearn on {out['objective']['share_of_k_ours_ge_sklearn']:.0%} of (embedding, k)); "
          f"same k {same_k:.0%} (sklearn vs itself, other seed: "
          f"{out['chosen_k']['sklearn_vs_sklearn_other_seed']:.0%})")
    print(f"wrote {save('groups', out)}")


if __name__ == "__main__":
    main()
