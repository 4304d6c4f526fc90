"""Benchmark: identity detection F1 of the two identity rules over SAE architectures, trained by `namesae train`.

A planted world (`namesae synth`) and one SAE per architecture (TopK k = 16/32/64, BatchTopK, JumpReLU, standard
L1), each trained through the real CLI with the same data, steps and width; then feature statistics once per SAE
and both rules ("strongest", the default, and "mass_share", DESIGN's original) scored against truth.json. Every
SAE's explained variance is reported beside its F1, so rules are compared at the reconstruction each reached.

Sizes: `--world small` (d = 384, 600 names x 16 rows, 200 dedicated: the world the identity issue measured) or
`--world real` (the `real` preset: d = 1280, 5,000 names; slow on CPU). Results: bench/results/identity_rules.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

WORLDS = {
    "small": ["--config", "{cfg}"],
    "real": ["--preset", "real"],
}
SMALL_WORLD = """[synth]
seed = 0
dim = 384
n_first = 100
n_last = 100
n_full = 400
n_dedicated = 200
progression = false
"""
ARCHITECTURES = {
    "topk16": {"architecture": "topk", "k": 16},
    "topk32": {"architecture": "topk", "k": 32},
    "topk64": {"architecture": "topk", "k": 64},
    "batchtopk32": {"architecture": "batchtopk", "k": 32},
    "jumprelu": {"architecture": "jumprelu", "l0_coefficient": 0.005, "jumprelu_sparsity_loss": "tanh",
                 "jumprelu_ste_to_input": True},  # the defaults (Anthropic's setup)
    "jumprelu_step": {"architecture": "jumprelu", "l0_coefficient": 0.005, "jumprelu_sparsity_loss": "step",
                      "jumprelu_ste_to_input": False},  # DeepMind's setup (the default before 2026-12-02)
    "jumprelu_l0_32": {"architecture": "jumprelu", "jumprelu_sparsity_loss": "quadratic", "jumprelu_target_l0": 32,
                       "jumprelu_ste_to_input": False},
    "standard_l1_0.1": {"architecture": "standard", "l1_coefficient": 0.1},  # the default before 2026-12-02
    "standard_l1_0.01": {"architecture": "standard", "l1_coefficient": 0.01},
    "standard_l1_0.03": {"architecture": "standard", "l1_coefficient": 0.03},  # the default
}


def namesae(*args: str) -> None:
    """Run the namesae CLI as a user would (same interpreter)."""
    subprocess.run([sys.executable, "-c", "from namesae.cli import main; main()", *args], check=True,
                   stdout=subprocess.DEVNULL)


def toml(fields: dict) -> str:
    """A [train] table."""
    return "[train]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


def learned_share(sae: Any, world: Path, truth: dict, cosine: float = 0.9) -> float:
    """Share of the planted identity directions that some decoder direction of `sae` (a loaded TrainedSAE)
    matches at cosine > `cosine`."""
    import numpy as np

    from namesae.synth.io import load_world

    planted = load_world(world).truth.directions.astype(np.float32)
    planted = planted[[d["id"] for d in truth["directions"] if d["kind"] == "identity"]]
    dec = sae.decoder_directions().numpy()
    dec /= np.linalg.norm(dec, axis=1, keepdims=True) + 1e-12
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    return float(((planted @ dec.T).max(axis=1) > cosine).mean())


def score(sae_dir: Path, world: Path) -> dict:
    """Feature statistics once, then both rules against the truth."""
    from namesae.features import FeatureConfig, compute_feature_stats
    from namesae.identity import IdentityConfig, identity_records
    from namesae.sae import load_sae
    from namesae.sae.metrics import SAEMetrics
    from namesae.store import EmbeddingStore
    from namesae.synth.io import load_truth
    from namesae.synth.score.identity import score_identity

    truth = load_truth(world)
    sae = load_sae(sae_dir)
    with EmbeddingStore.open(world / "image.h5") as store:
        stats = compute_feature_stats(sae, store, FeatureConfig(kind="image"))
    metrics = SAEMetrics.load(sae_dir / "metrics.json")
    out = {k: getattr(metrics, k) for k in ("explained_variance", "mean_l0", "dead_fraction", "dense_fraction",
                                            "train_seconds")}
    out["identity_directions_learned"] = learned_share(sae, world, truth)
    # Scale: the same SAE over a store of every 20th full name with its parts; the same verdicts?
    from identity_scale import subset_store

    small, _ = subset_store(world, world.parent / f"{world.name}-subset-20.h5")
    with EmbeddingStore.open(small) as store:
        small_stats = compute_feature_stats(sae, store, FeatureConfig(kind="image"))
    for rule in ("strongest", "mass_share"):
        records = identity_records(stats, IdentityConfig(rule=rule))
        s = score_identity(records, truth)
        out[rule] = {k: s[k] for k in ("f1", "precision", "recall", "n_pred_dedicated", "n_true_dedicated")}
        few = identity_records(small_stats, IdentityConfig(rule=rule))
        big = {r.name: r.dedicated for r in records}
        out[rule]["scale"] = {"names_small": len(few), "agreement": sum(r.dedicated == big[r.name] for r in few)
                              / len(few), "dedicated_small": sum(r.dedicated for r in few)}
    return out


def main() -> None:
    """Train each architecture, score both rules, save the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=sorted(WORLDS), default="small")
    ap.add_argument("--d-sae", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--only", nargs="*", default=None, help="architectures to run (default: all)")
    ap.add_argument("--dir", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()
    os.environ.update({"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
    work = args.dir or Path(tempfile.mkdtemp(prefix="identity_rules-"))
    work.mkdir(parents=True, exist_ok=True)
    world = work / f"world-{args.world}"
    if not (world / "truth.json").is_file():
        (work / "world.toml").write_text(SMALL_WORLD)
        namesae("synth", "--out", str(world), *[a.format(cfg=work / "world.toml") for a in WORLDS[args.world]])
    rows: dict = {}
    previous = Path(__file__).resolve().parent / "results" / f"identity_rules_{args.world}.json"
    if args.only and previous.is_file():  # --only adds to the saved table instead of replacing it
        rows = json.loads(previous.read_text()).get("results", {})
    for name, arch in ARCHITECTURES.items():
        if args.only and name not in args.only:
            continue
        sae_dir = work / f"sae-{name}"
        cfg = work / f"{name}.toml"
        cfg.write_text(toml({**arch, "d_sae": args.d_sae, "steps": args.steps, "batch_size": args.batch_size,
                             "lr": args.lr, "seed": 0}))
        if not (sae_dir / "metrics.json").is_file():
            namesae("train", "--store", str(world / "image.h5"), "--config", str(cfg), "--out", str(sae_dir))
        rows[name] = {"train": arch, **score(sae_dir, world)}
        print(name, json.dumps(rows[name]), flush=True)
        path = save(f"identity_rules_{args.world}", {  # after every SAE: a stopped run keeps what it measured
            "world": args.world, "d_sae": args.d_sae, "steps": args.steps, "batch_size": args.batch_size,
            "lr": args.lr, "results": rows,
            "note": "F1 of dedicated-name detection against truth.json; both rules from the same feature "
                    "statistics. identity_directions_learned: share of planted identity directions some decoder "
                    "direction matches at cosine > 0.9 (a ceiling the SAE sets, not the rule)."})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
