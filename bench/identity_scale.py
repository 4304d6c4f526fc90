"""Benchmark: `namesae identity` at the real size, against a dense numpy baseline, and its verdicts' F1 and scale.

The world is `namesae synth --preset real` (d = 1280, 5,000 names x 16 image rows, mean pairwise cosine ~0.5,
1,000 dedicated full names and 100 dedicated name parts). The SAE is an SAELens TopK SAE of 81,920 features with
k = 64 whose decoder holds every planted direction exactly, the other features random unit directions, so every
code carries the weak fill that k above the data's number of components gives (as trained k = 64 SAEs do).

Measured, each side in its own subprocess with 2 threads (wall time and peak RSS from wait4):
- ours: the real CLI, `namesae identity --sae DIR --store S` (rule "strongest", the default);
- baseline: bench/identity.py's dense implementation (dense feature x name tables, per-name covariances);
- F1 of the dedicated verdict against truth.json under both rules (`--rule mass_share` is a second CLI run);
- scale: the same CLI on a store of about 500 names (every 20th full name with its first name and surname);
  agreement of those names' verdicts with the 5,000-name run.
Results: bench/results/identity_scale.json. The first run builds the world and the SAE under --dir (kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402
from identity import run_side  # noqa: E402

CLI = [sys.executable, "-c", "from namesae.cli import main; main()"]


def build_inputs(root: Path, d_sae: int, k: int) -> tuple[Path, Path]:
    """The real-size world and the planted-dictionary TopK SAE (built once)."""
    from namesae.sae import build_sae_from_weights
    from namesae.store import EmbeddingStore

    world = root / "world"
    if not (world / "truth.json").is_file():
        run_side([*CLI, "synth", "--preset", "real", "--out", str(world)])
    sae_dir = root / f"sae-topk{k}-{d_sae}"
    if not (sae_dir / "cfg.json").is_file():
        from safetensors.numpy import load_file

        planted = load_file(str(world / "directions.safetensors"))
        planted = next(iter(planted.values())).astype(np.float32)
        rng = np.random.default_rng(0)
        extra = rng.normal(size=(d_sae - len(planted), planted.shape[1])).astype(np.float32)
        extra /= np.linalg.norm(extra, axis=1, keepdims=True)
        dec = np.concatenate([planted, extra])
        with EmbeddingStore.open(world / "image.h5") as s:
            space = s.space
        build_sae_from_weights(dec.T, np.zeros(d_sae, np.float32), dec, np.zeros(dec.shape[1], np.float32),
                               space=space, architecture="topk", k=k, out_dir=sae_dir)
    return world, sae_dir


def subset_store(world: Path, out: Path, share: int = 20) -> tuple[Path, list[str]]:
    """A store of every `share`-th full name with its parts (a smaller corpus of the same world)."""
    from namesae.store import EmbeddingStore, write_store
    from namesae.synth.io import load_truth

    truth = load_truth(world)
    full = [n["name"] for n in truth["names"] if n["kind"] == "full"][::share]
    names = sorted(set(full) | {p for n in full for p in n.split()})
    if not out.is_file():
        with EmbeddingStore.open(world / "image.h5") as s:
            rows = np.sort(np.concatenate([s.rows_of(n) for n in names]))
            write_store(out, s.read_rows(rows), s.names[rows], s.prompts[rows], s.kinds[rows], space=s.space,
                        normalized=True)
    return out, names


def f1_of(identity_json: Path, truth: dict) -> dict:
    """Dedicated-name detection against the truth."""
    from namesae.identity import IdentityResult
    from namesae.synth.score.identity import score_identity

    s = score_identity(IdentityResult.load(identity_json).records, truth)
    return {k: s[k] for k in ("f1", "precision", "recall", "n_pred_dedicated", "n_true_dedicated")}


def main() -> None:
    """Build once, then time ours and the baseline, score both rules and the scale agreement."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("runs/bench-identity-scale"))
    ap.add_argument("--d-sae", type=int, default=81920)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--no-baseline", action="store_true", help="skip the dense baseline (slow, ~7 GB)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--baseline-limit", type=float, default=1800,
                    help="stop the dense baseline after this many seconds and report it unfinished")
    args = ap.parse_args()
    root = args.dir
    root.mkdir(parents=True, exist_ok=True)
    world, sae_dir = build_inputs(root, args.d_sae, args.k)
    from namesae.identity import IdentityResult
    from namesae.synth.io import load_truth

    truth = load_truth(world)
    result: dict = {"d": 1280, "d_sae": args.d_sae, "k": args.k, "names": len(truth["names"]),
                    "rows_per_name": 16}
    out = root / "ours"
    common = ["identity", "--sae", str(sae_dir), "--store", str(world / "image.h5"), "--no-progress"]
    result["ours"] = run_side([*CLI, *common, "--out", str(out)])
    result["ours"]["f1"] = f1_of(out / "identity.json", truth)
    out_mass = root / "ours-mass-share"
    run_side([*CLI, *common, "--rule", "mass_share", "--out", str(out_mass)])
    result["mass_share_f1"] = f1_of(out_mass / "identity.json", truth)
    small, names = subset_store(world, root / "subset-20.h5")
    out_small = root / "ours-small"
    result["ours_small"] = run_side([*CLI, "identity", "--sae", str(sae_dir), "--store", str(small), "--no-progress",
                                   "--out", str(out_small)])
    big = {r.name: r.dedicated for r in IdentityResult.load(out / "identity.json").records}
    few = {r.name: r.dedicated for r in IdentityResult.load(out_small / "identity.json").records}
    result["scale"] = {"names_small": len(few), "agreement": float(np.mean([few[n] == big[n] for n in few])),
                       "dedicated_small": int(sum(few.values())),
                       "dedicated_same_names_in_full": int(sum(big[n] for n in few))}
    result["ours_small"]["f1"] = f1_of(out_small / "identity.json", truth)
    if not args.no_baseline:
        base = root / "baseline"
        base.mkdir(exist_ok=True)
        cmd = [sys.executable, "-c",
               "import sys; sys.path.insert(0, 'bench'); from identity import dense_baseline; from pathlib import "
               f"Path; dense_baseline(Path({str(sae_dir)!r}), Path({str(world / 'image.h5')!r}), Path({str(base)!r})"
               ", 0.8, 0.5, 1e-4, 0.3, 1.0, 1024)"]
        result["baseline"] = base_side = run_side(cmd, args.baseline_limit)
        if base_side["finished"]:
            result["speedup"] = round(base_side["seconds"] / result["ours"]["seconds"], 2)
            result["rss_ratio"] = round(base_side["peak_rss_mib"] / result["ours"]["peak_rss_mib"], 2)
        else:
            result["speedup_at_least"] = round(base_side["stopped_after_seconds"] / result["ours"]["seconds"], 2)
            result["rss_ratio_at_least"] = round(base_side["peak_rss_mib_at_least"] / result["ours"]["peak_rss_mib"],
                                                 2)
    result["targets"] = {"ours_seconds_at_most": 120, "ours_peak_rss_mib_under": 4096, "f1_at_least": 0.95,
                         "scale_agreement_at_least": 0.97}
    path = save("identity_scale", result)
    print(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
