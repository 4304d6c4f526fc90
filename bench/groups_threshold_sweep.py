"""Sweep of the concept-join threshold (GroupConfig.join_cos) on planted concept data.

For each data setting (concept-concept cosine, member-concept cosine, nuance structure) the mass-rule groups are
computed once; then groups are joined at each threshold and scored against the planted concepts: k = c, adjusted
Rand index, mass-weighted purity. The default threshold is the one with the best worst-case (over settings) rate of
"k = c and ARI >= 0.9", ties broken towards the middle of the plateau. Writes bench/results/groups_threshold_sweep.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

from namesae.groups import GroupConfig, group_sets, join_similar, planted_concepts
from namesae.groups.planted import adjusted_rand_index, mass_purity

SETTINGS = [
    {"name": "default", "concept_cos": 0.3, "min_cos": 0.85, "nuances": 3},
    {"name": "orthogonal concepts", "concept_cos": 0.0, "min_cos": 0.85, "nuances": 3},
    {"name": "correlated concepts", "concept_cos": 0.5, "min_cos": 0.85, "nuances": 3},
    {"name": "very correlated concepts", "concept_cos": 0.6, "min_cos": 0.85, "nuances": 3},
    {"name": "loose members", "concept_cos": 0.3, "min_cos": 0.75, "nuances": 3},
    {"name": "one nuance", "concept_cos": 0.3, "min_cos": 0.85, "nuances": 1},
    {"name": "isotropic members", "concept_cos": 0.3, "min_cos": 0.85, "nuances": 40},
]
THRESHOLDS = [round(float(x), 2) for x in np.arange(0.30, 0.96, 0.05)]


def sweep_setting(setting: dict, n_cases: int, d: int, seed: int, config: GroupConfig) -> dict:
    """Mass-rule groups once, then the join at every threshold, scored against the planted truth."""
    rng = np.random.default_rng(seed)
    cases = [planted_concepts(int(rng.integers(2, 7)), int(rng.integers(60, 301)), d, min_cos=setting["min_cos"],
                              seed=int(rng.integers(2**31)), concept_cos=setting["concept_cos"],
                              nuances=setting["nuances"]) for _ in range(n_cases)]
    batch = group_sets([p.directions for p in cases], [p.weights for p in cases], config)
    K = config.k_max
    sums = torch.zeros(n_cases, K, d, dtype=torch.float64)
    for i, p in enumerate(cases):
        lab = batch.labels_mass[i, :len(p.labels)]
        sums[i].index_add_(0, lab, p.weights.double()[:, None] * p.directions.double())
    dots = torch.bmm(sums, sums.transpose(1, 2))
    alive = torch.arange(K)[None, :] < batch.k_mass[:, None]
    rows = {}
    mass_scores = _score(cases, [batch.labels_mass[i, :len(p.labels)].numpy() for i, p in enumerate(cases)])
    for t in THRESHOLDS:
        into = join_similar(dots, alive, t)
        labels = [into[i][batch.labels_mass[i, :len(p.labels)]].numpy() for i, p in enumerate(cases)]
        rows[str(t)] = _score(cases, labels)
    return {"setting": setting, "n_cases": n_cases, "mass": mass_scores, "concepts": rows}


def _score(cases: list, labels: list) -> dict:
    k_ok = np.array([len(np.unique(g)) == len(p.concepts) for g, p in zip(labels, cases)])
    ari = np.array([adjusted_rand_index(g, p.labels.numpy()) for g, p in zip(labels, cases)])
    purity = np.array([mass_purity(g, p.labels.numpy(), p.weights.numpy()) for g, p in zip(labels, cases)])
    return {"k_eq_c": float(k_ok.mean()), "ari_ge_0.9": float((ari >= 0.9).mean()),
            "k_eq_c_and_ari_ge_0.9": float((k_ok & (ari >= 0.9)).mean()), "mean_ari": round(float(ari.mean()), 4),
            "purity_ge_0.95": float((purity >= 0.95).mean())}


def main() -> None:
    """Run every setting, choose the threshold, print a table and save the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=200, help="planted embeddings per setting")
    parser.add_argument("--d", type=int, default=512, help="embedding dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = GroupConfig()
    start = time.perf_counter()
    results = [sweep_setting(s, args.cases, args.d, args.seed + i, config) for i, s in enumerate(SETTINGS)]
    worst = {str(t): min(r["concepts"][str(t)]["k_eq_c_and_ari_ge_0.9"] for r in results) for t in THRESHOLDS}
    main_setting = {str(t): results[0]["concepts"][str(t)]["k_eq_c_and_ari_ge_0.9"] for t in THRESHOLDS}
    top = max(worst.values())
    plateau = [t for t in THRESHOLDS if worst[str(t)] >= top - 0.02]
    chosen = plateau[len(plateau) // 2]
    print("threshold  " + "  ".join(f"{s['name'][:12]:>12}" for s in SETTINGS) + "   worst")
    for t in THRESHOLDS:
        cells = "  ".join(f"{r['concepts'][str(t)]['k_eq_c_and_ari_ge_0.9']:>12.3f}" for r in results)
        print(f"{t:>9.2f}  {cells}   {worst[str(t)]:.3f}")
    print("mass rule  " + "  ".join(f"{r['mass']['k_eq_c_and_ari_ge_0.9']:>12.3f}" for r in results))
    print(f"plateau (worst case within 0.02 of best {top:.3f}): {plateau}; chosen join_cos = {chosen}")
    out = {"thresholds": THRESHOLDS, "worst_case_k_eq_c_and_ari": worst, "default_setting_k_eq_c_and_ari":
           main_setting, "plateau": plateau, "chosen_join_cos": chosen, "config_join_cos": config.join_cos,
           "d": args.d, "seed": args.seed, "seconds": round(time.perf_counter() - start, 1), "settings": results}
    print(f"wrote {save('groups_threshold_sweep', out)}")


if __name__ == "__main__":
    main()
