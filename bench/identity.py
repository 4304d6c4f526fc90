"""Benchmark: `namesae identity` on 10k names x 16 image rows with an 8k-feature SAE, against a dense numpy baseline.

Both sides run in their own subprocess on the same store and SAE (torch/BLAS limited to 2 threads); wall time
and peak RSS (ru_maxrss from wait4) are measured per side, and the outputs are compared for agreement.

- ours:     the real CLI, `namesae identity --sae DIR --store S` (TopK codes taken sparse from the encoder's
            top-k, sparse (feature, name) pairs, Gram matrices of names with equal row counts batched for
            rigidity, reads of bounded contiguous spans).
- baseline: a straightforward dense implementation of the same measures: the same SAE encoding in batches,
            dense feature x name mass/count tables (np.add.at), dense precision/recall/identity tables, and per
            name np.cov (d x d), slogdet, pairwise cosines and the row-normalised diffusion operator's eigvals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

THREADS = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}


def make_inputs(root: Path, n_names: int, rows_per_name: int, d: int, d_sae: int, k: int = 9, seed: int = 0
                ) -> tuple[Path, Path]:
    """An image store of clustered rows (a quarter of the names own a direction) and a TopK SAE whose decoder
    holds those directions and random shared ones. k = 9 = the 8 shared directions of a row + its own, so the
    planted names' own features are precise and the dedicated verdicts of both sides can be compared (with k = 32
    every row also fires 23 stray features and no name is dedicated on either side)."""
    from namesae.sae import build_sae_from_weights
    from namesae.store import EmbeddingStore

    rng = np.random.default_rng(seed)
    n_shared = d_sae - n_names // 4
    directions = rng.normal(size=(d_sae, d)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    space = "bench:identity:image"
    store_path = root / "image.h5"
    with EmbeddingStore.create(store_path, d, space, normalized=True, chunk_rows=4096) as store:
        for start in range(0, n_names, 1000):
            block = range(start, min(n_names, start + 1000))
            centers = np.zeros((len(block), d), dtype=np.float32)
            for i, n in enumerate(block):
                shared = rng.choice(n_shared, 8, replace=False)
                centers[i] = directions[shared].sum(0) * 0.4
                if n % 4 == 0:  # a dedicated name: its own direction
                    centers[i] += 1.5 * directions[n_shared + n // 4]
            spread = rng.uniform(0.05, 0.6, size=len(block)).astype(np.float32)
            x = np.repeat(centers, rows_per_name, axis=0)
            x += rng.normal(size=x.shape).astype(np.float32) * np.repeat(spread, rows_per_name)[:, None] / np.sqrt(d)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            names = [f"Name{n:05d} Last{n % 313}" for n in block for _ in range(rows_per_name)]
            store.append(x, names, ["a photo of {}"] * len(x), "image", seeds=[j for _ in block
                                                                               for j in range(rows_per_name)])
    sae_dir = root / "sae"
    build_sae_from_weights(directions.T, np.zeros(d_sae), directions, np.zeros(d), space=space,
                           architecture="topk", k=k, out_dir=sae_dir)
    return sae_dir, store_path


def run_side(cmd: list[str], limit: float | None = None) -> dict:
    """Run one side in a subprocess; wall seconds and peak RSS (MiB) of that process tree. With `limit`
    (seconds) a side still running then is stopped and reported as unfinished, with what it had used."""
    env = {**os.environ, **THREADS}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if limit is not None and time.perf_counter() - start > limit:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                return {"finished": False, "stopped_after_seconds": round(time.perf_counter() - start, 1),
                        "peak_rss_mib_at_least": round(usage.ru_maxrss / 1024, 1)}
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            out = log.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"finished": True, "seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def dense_baseline(sae_dir: Path, store_path: Path, out: Path, tau_p: float, tau_r: float, epsilon: float,
                   sigma: float, t: float, batch: int) -> None:
    """The same measures, computed the plain dense way; writes baseline.json."""
    import torch

    from namesae.identity.reference import dense_identity, dense_precision_recall, rigidity_reference
    from namesae.sae import encode, load_sae
    from namesae.store import EmbeddingStore

    torch.set_num_threads(2)
    sae = load_sae(sae_dir)
    with EmbeddingStore.open(store_path) as store:
        names = store.names.astype(str)
        uniq, ids = np.unique(names, return_inverse=True)
        n_names, d_sae = len(uniq), int(sae.d_sae)
        mass_nf = np.zeros((n_names, d_sae), dtype=np.float32)
        count_nf = np.zeros((n_names, d_sae), dtype=np.float32)
        for start in range(0, len(store), batch):
            x = store.read(start, start + batch)
            with torch.no_grad():
                codes = encode(sae, x).numpy()
            np.add.at(mass_nf, ids[start:start + len(x)], codes)
            np.add.at(count_nf, ids[start:start + len(x)], (codes > 0).astype(np.float32))
        precision, recall = dense_precision_recall(mass_nf.T, count_nf.T, np.bincount(ids))
        dedicated, dedication, _ = dense_identity(precision, recall, tau_p, tau_r)
        records = {}
        index = store.name_index()
        for n in range(n_names):
            rig = rigidity_reference(store.read_rows(index[str(uniq[n])]), epsilon, sigma, t)
            records[str(uniq[n])] = {"dedicated": bool(dedicated[n]), "dedication": float(dedication[n]), **rig}
    (out / "baseline.json").write_text(json.dumps(records))


def compare(ours_path: Path, base_path: Path) -> dict:
    """Agreement of the two sides' per-name outputs."""
    ours = {r["name"]: r for r in json.loads(ours_path.read_text())["names"]}
    base = json.loads(base_path.read_text())
    names = sorted(base)
    agree = float(np.mean([ours[n]["dedicated"] == base[n]["dedicated"] for n in names]))
    # How many names each side calls dedicated (with this TopK SAE few or none pass tau_p, so the continuous
    # dedication = max precision·recall below is the informative comparison).
    out = {"names_compared": len(names), "dedicated_agreement": agree,
           "dedicated_ours": int(sum(ours[n]["dedicated"] for n in names)),
           "dedicated_baseline": int(sum(base[n]["dedicated"] for n in names))}
    for key in ("dedication", "trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse"):
        a = np.array([ours[n][key] for n in names], dtype=float)
        b = np.array([base[n][key] for n in names], dtype=float)
        out[f"max_abs_diff_{key}"] = float(np.nanmax(np.abs(a - b)))
    return out


def main() -> None:
    """Build the inputs once, run both sides, save the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--features", type=int, default=8192)
    parser.add_argument("--side", choices=["dense"], help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "dense":
        dense_baseline(**{k: (Path(v) if k in ("sae_dir", "store_path", "out") else v)
                          for k, v in json.loads(args.args).items()})
        return
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        sae_dir, store_path = make_inputs(root, args.names, args.rows, args.dim, args.features)
        build_seconds = time.perf_counter() - start
        load_before = os.getloadavg()
        cli = str(Path(sys.executable).parent / "namesae")
        ours_out = root / "ours"
        ours = run_side([cli, "identity", "--sae", str(sae_dir), "--store", str(store_path), "--out", str(ours_out),
                         "--no-progress"])
        produced = json.loads((ours_out / "identity.json").read_text())
        config = produced["config"]
        base_args = {"sae_dir": str(sae_dir), "store_path": str(store_path), "out": str(root),
                     "tau_p": config["tau_p"], "tau_r": config["tau_r"], "epsilon": config["epsilon"],
                     "sigma": produced["dse_sigma"], "t": config["dse_t"], "batch": 2048}
        baseline = run_side([sys.executable, __file__, "--side", "dense", "--args", json.dumps(base_args)])
        agreement = compare(ours_out / "identity.json", root / "baseline.json")
        load_after = os.getloadavg()
    result = {
        "names": args.names, "rows_per_name": args.rows, "dim": args.dim, "features": args.features,
        "threads": 2, "input_build_seconds": round(build_seconds, 1),
        # 1/5/15-minute load averages of the (shared, 2-core) machine around the two timed runs.
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "ours": {"command": "namesae identity --sae DIR --store S", **ours},
        "baseline": {"command": "dense numpy (this file, --side dense)", **baseline},
        "speedup": round(baseline["seconds"] / ours["seconds"], 2),
        "memory_ratio": round(baseline["peak_rss_mib"] / ours["peak_rss_mib"], 2),
        "ours_faster": ours["seconds"] < baseline["seconds"],
        "ours_less_memory": ours["peak_rss_mib"] < baseline["peak_rss_mib"],
        "agreement": agreement,
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {save('identity', result)}")


if __name__ == "__main__":
    main()
