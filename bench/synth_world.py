"""Benchmark: is the default synthetic world learnable as planted? Measured with a plain reference TopK SAE.

Not a benchmark of namesae's own SAE or analyses: a ~30-line TopK SAE (torch, Adam, unit-norm decoder rows,
pre-encoder bias = data mean) trained on the world's stores, scored against truth.json with DESIGN.md's
definitions (identity feature: precision >= 0.8 and recall >= 0.5 on a name's rows). It tells the analyses what
a straightforward SAE reaches on this world, and how it depends on TopK's k, so their numbers can be judged.

Measured: build + write time of the default world; dedicated-name detection precision/recall on the image store
(k = 8, 12, 16) and the text store; Spearman of planted rigidity with mean pairwise cosine and total variance;
name-part composition (NNLS cosine) of compositional vs dedicated full names; attribute ladder accuracy on the
vocabulary store; emergence index (first checkpoint from which a name stays dedicated) against the planted onset.
Writes bench/results/synth_world.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402


def train_topk(x: np.ndarray, d_sae: int, k: int, steps: int, seed: int, batch: int = 256, lr: float = 2e-3
               ) -> tuple[np.ndarray, float]:
    """Codes [n, d_sae] of a TopK SAE trained on x [n, d], and its explained variance on x."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    data = torch.as_tensor(x, dtype=torch.float32)
    n, d = data.shape
    w = torch.randn(d_sae, d, generator=gen)
    w = w / w.norm(dim=1, keepdim=True)
    dec, enc = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone().T.contiguous())
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(d_sae)), torch.nn.Parameter(data.mean(0).clone())
    opt = torch.optim.Adam([dec, enc, b_enc, b_dec], lr=lr)

    def encode(rows: torch.Tensor) -> torch.Tensor:
        pre = torch.relu((rows - b_dec) @ enc + b_enc)
        values, index = pre.topk(k, dim=1)
        return torch.zeros_like(pre).scatter(1, index, values)

    for _ in range(steps):
        rows = data[torch.randint(0, n, (batch,), generator=gen)]
        loss = ((encode(rows) @ dec + b_dec - rows) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            dec /= dec.norm(dim=1, keepdim=True)
    with torch.no_grad():
        codes = encode(data)
        fvu = ((codes @ dec + b_dec - data) ** 2).sum() / ((data - data.mean(0)) ** 2).sum()
    return codes.numpy(), float(1 - fvu)


def dedicated_names(codes: np.ndarray, names: np.ndarray, tau_p: float = 0.8, tau_r: float = 0.5) -> dict[str, bool]:
    """Whether each name has an identity feature (DESIGN.md definitions, dense reference)."""
    uniq, ids = np.unique(names, return_inverse=True)
    mass = np.zeros((len(uniq), codes.shape[1]))
    fired = np.zeros((len(uniq), codes.shape[1]))
    np.add.at(mass, ids, codes)
    np.add.at(fired, ids, codes > 0)
    precision = mass / np.maximum(mass.sum(0, keepdims=True), 1e-12)
    recall = fired / np.bincount(ids)[:, None]
    return dict(zip(uniq.tolist(), ((precision >= tau_p) & (recall >= tau_r)).any(1).tolist()))


def detection(pred: dict[str, bool], records: list) -> dict[str, float]:
    """Precision and recall of predicted dedicated names against the truth."""
    truth = np.array([r.dedicated for r in records])
    got = np.array([pred[r.name] for r in records])
    tp = int((truth & got).sum())
    return {"precision": tp / max(int(got.sum()), 1), "recall": tp / int(truth.sum()), "n_pred": int(got.sum()),
            "n_true": int(truth.sum())}


def main() -> None:
    """Run every measurement and save bench/results/synth_world.json."""
    import torch
    from scipy.optimize import nnls
    from scipy.stats import spearmanr

    from namesae.identity.attributes import attribute_batch, ladders_from_rows, load_ladders
    from namesae.synth import AGE_YEARS, SynthConfig, build_world, write_world

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--d-sae", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)

    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            world = build_world(SynthConfig(seed=args.seed))
            write_world(world, tmp)
            times.append(time.perf_counter() - start)
    records = list(world.names)
    result: dict = {"seed": args.seed, "build_and_write_s": min(times), "sae": {"d_sae": args.d_sae,
                    "steps": args.steps, "batch": 256, "kind": "reference TopK (bench/synth_world.py)"}}

    image = world.stores["image"]
    names = np.asarray(image.names)
    result["image_detection"] = {}
    for k in (8, 12, 16):
        codes, ev = train_topk(image.embeddings, args.d_sae, k, args.steps, seed=0)
        result["image_detection"][f"k{k}"] = {**detection(dedicated_names(codes, names), records),
                                              "explained_variance": ev}
        print("image k", k, result["image_detection"][f"k{k}"], flush=True)
    text = world.stores["text"]
    codes, ev = train_topk(text.embeddings, args.d_sae, 12, args.steps, seed=0)
    text_pred = dedicated_names(codes, np.asarray(text.names))
    result["text_detection_k12"] = {**detection(text_pred, records), "explained_variance": ev}
    print("text", result["text_detection_k12"], flush=True)

    x = image.embeddings
    cos_mean, trace = [], []
    for rec in records:
        rows = x[names == rec.name]
        c = rows @ rows.T
        cos_mean.append((c.sum() - len(rows)) / (len(rows) * (len(rows) - 1)))
        trace.append(float(np.trace(np.cov(rows.T))))
    rigidity = [r.rigidity for r in records]
    result["rigidity_spearman"] = {"cos_mean": float(spearmanr(rigidity, cos_mean).statistic),
                                   "trace": float(spearmanr(rigidity, trace).statistic)}

    tx, tn = text.embeddings, np.asarray(text.names)
    mean = {n: tx[tn == n].mean(0) for n in np.unique(tn)}
    comp: dict[bool, list[float]] = {True: [], False: []}
    for rec in (r for r in records if r.kind == "full"):
        a = np.stack([mean[rec.first], mean[rec.last], mean[world.config.template_name]]).T
        w, _ = nnls(a, mean[rec.name])
        fit = a @ w
        comp[rec.dedicated].append(float(fit @ mean[rec.name] / np.linalg.norm(fit) / np.linalg.norm(mean[rec.name])))
    result["part_composition"] = {"compositional_min": min(comp[False]), "compositional_median":
                                  float(np.median(comp[False])), "dedicated_max": max(comp[True]),
                                  "dedicated_median": float(np.median(comp[True]))}

    vocab = world.stores["vocab"]
    ladders, missing = ladders_from_rows(load_ladders(), np.asarray(vocab.prompts), lambda r: vocab.embeddings[r])
    batch = torch.stack([torch.as_tensor(x[names == r.name]) for r in records])
    ladder_result: dict = {"missing": missing}
    for ladder in ladders:
        out = attribute_batch(batch, ladder, 100.0)
        if ladder.ladder.name == "age":
            years = [AGE_YEARS[r.attribute_anchor["age"]] for r in records]
            ladder_result["age_spearman_with_anchor_years"] = float(spearmanr(years, [o["mean"] for o in out]).statistic)
        std = np.array([o["std"] for o in out])
        phase = np.array([r.phase for r in records])
        ladder_result[f"{ladder.ladder.name}_std_by_phase"] = [float(std[phase == p].mean()) for p in (1, 2, 3, 4)]
    result["ladders"] = ladder_result

    T = world.config.n_checkpoints
    per_ckpt = []
    for t in range(T):
        rows = world.stores[f"progression/ckpt_{t:02d}/image"]
        codes, ev = train_topk(rows.embeddings, args.d_sae, 12, args.steps, seed=t)
        per_ckpt.append(dedicated_names(codes, np.asarray(rows.names)))
        print("checkpoint", t, detection(per_ckpt[-1], records), flush=True)
    errors = []
    for rec in (r for r in records if r.dedicated):
        seq = [per_ckpt[t][rec.name] for t in range(T)]
        emerged = next((t for t in range(T) if all(seq[t:])), None)
        errors.append(None if emerged is None else emerged - rec.onset_index)
    within = sum(e is not None and abs(e) <= 1 for e in errors)
    result["emergence_k12"] = {"within_1": within / len(errors), "errors": {str(e): errors.count(e)
                               for e in sorted(set(errors), key=lambda v: (v is None, v or 0))},
                               "false_emergence_compositional": sum(per_ckpt[T - 1][r.name] for r in records
                                                                    if not r.dedicated)}
    print(result, flush=True)
    print("saved", save("synth_world", result))


if __name__ == "__main__":
    main()
