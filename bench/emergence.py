"""Benchmark: `namesae emergence` on the default synthetic world's progression, scored against the planted truth.

One SAE is trained per checkpoint of the progression (6 checkpoints, 10M ... 2.43B samples seen) with the given
TrainConfig, then every name's dedication curve, emergence index and phase are measured and scored:
emergence_within_1 (dedicated names: detected emergence index within +-1 of the planted onset), no_emergence_
compositional (compositional names never emerge) and phase_agreement (phase at the last checkpoint equals the
planted one there). Targets: >= 0.90, >= 0.95, >= 0.80. The same world with the planted directions as the
dictionary ("oracle SAE") is scored too, which separates the analysis from SAE training.

    python bench/emergence.py                       # default world (seed 0), the demo's SAE settings (JumpReLU)
    python bench/emergence.py --architecture topk --k 12 --steps 3000 --batch-size 256 --lr 2e-3 --name emergence_topk12
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402


def oracle_series(world, root: Path, out: Path):
    """A series over the world's progression whose SAEs are the planted directions (ReLU, threshold 0.15)."""
    from namesae.emergence import Series, SeriesPoint
    from namesae.sae import build_sae_from_weights
    from namesae.store import EmbeddingStore

    d = world.truth.directions.astype(np.float32)
    points = []
    for t in range(world.config.n_checkpoints):
        folder = root / "progression" / f"ckpt_{t:02d}"
        with EmbeddingStore.open(folder / "image.h5") as s:
            space = s.space
        sae = out / "oracle_saes" / f"ckpt_{t:02d}"
        build_sae_from_weights(d.T, np.full(len(d), -0.15, np.float32), d, np.zeros(d.shape[1], np.float32),
                               space=space, architecture="standard", out_dir=sae)
        points.append(SeriesPoint(f"ckpt_{t:02d}", float(world.config.samples_seen[t]), folder / "image.h5", sae=sae,
                                  text_store=folder / "text.h5", vocab=folder / "vocab.h5"))
    return Series("samples_seen", tuple(points), prior_names=root / "prior_names.txt", truth=root / "truth.json")


def main() -> None:
    """Build the world, run and score the emergence analysis with trained and with oracle SAEs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/namesae-bench-emergence"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--architecture", default="jumprelu", help="SAE architecture (default: the demo's)")
    ap.add_argument("--k", type=int, default=12, help="k of the TopK family")
    ap.add_argument("--l0", type=float, default=0.005, help="l0 coefficient of JumpReLU")
    ap.add_argument("--d-sae", type=int, default=512)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="emergence")
    args = ap.parse_args()

    import torch

    from namesae.emergence import EmergenceConfig, run_emergence, write_emergence
    from namesae.synth import SynthConfig, build_world, write_world
    from namesae.synth.score.emergence import score_emergence, truth_frequencies, world_series

    torch.set_num_threads(args.threads)
    root, out = args.out / "world", args.out
    world = build_world(SynthConfig(seed=args.seed))
    write_world(world, root)
    result: dict = {"seed": args.seed, "world": "SynthConfig defaults", "targets": None}

    start = time.perf_counter()
    series = oracle_series(world, root, out)
    oracle = run_emergence(series, EmergenceConfig(), out / "oracle", frequencies=truth_frequencies(series))
    oracle_score = score_emergence(oracle, root)
    write_emergence(oracle, out / "oracle", score=oracle_score)
    result["oracle"] = {"seconds": time.perf_counter() - start, "score": oracle_score}
    print("oracle", {k: oracle_score[k] for k in ("emergence_within_1", "no_emergence_compositional",
                                                  "phase_agreement")}, flush=True)

    train = {"architecture": args.architecture, "d_sae": args.d_sae, "steps": args.steps,
             "batch_size": args.batch_size, "lr": args.lr}
    if args.architecture == "jumprelu":
        train["l0_coefficient"] = args.l0
    elif args.architecture != "standard":
        train["k"] = args.k
    start = time.perf_counter()
    series = world_series(root, train)
    trained = run_emergence(series, EmergenceConfig(), out / "trained", frequencies=truth_frequencies(series),
                            progress=True)
    seconds = time.perf_counter() - start
    score = score_emergence(trained, root)
    write_emergence(trained, out / "trained", score=score)
    from namesae.sae import load_sae
    ev = [load_sae(p["sae"]).metrics.get("explained_variance") for p in trained.points]
    result["targets"] = score["targets"]
    result["trained"] = {"train": train, "seconds": seconds, "explained_variance": ev,
                         "n_dedicated_per_point": [p["n_dedicated"] for p in trained.points], "score": score}
    print("trained", {k: score[k] for k in ("emergence_within_1", "no_emergence_compositional", "phase_agreement")},
          flush=True)
    print(json.dumps(score["phase_confusion"]["matrix"]))
    print(f"wrote {save(args.name, result)}")


if __name__ == "__main__":
    main()
