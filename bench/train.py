"""Benchmark: training samples/s of `namesae train` against SAELens's SAETrainer and a bare PyTorch TopK loop.

Same data (planted sparse mixes in d dimensions), same architecture (TopK, d=512, 16x = 8192 features, k=32,
batch 4096, float32, Adam), same process and thread count, sides interleaved over rounds:

  a          namesae train_sae, engine "fast", streaming from an HDF5 store (chunked reads, shuffle buffer)
  a_saelens  namesae train_sae, engine "saelens" (our streaming data path + SAELens's own step)
  b          SAELens SAETrainer.fit fed batches of an in-memory tensor
  c          a minimal hand-written PyTorch TopK loop (dense decode, autograd, Adam)
  c_sparse   the same loop with an embedding_bag (sparse) decoder, for reference
  stream_only  the data path of side a alone (store reads, shuffling, batching), no training
  jumprelu_{fast,saelens}_{init,trained}  one JumpReLU step, fused vs SAELens's SAETrainer.step, from SAELens's
             initialisation (the straight-through window spans nearly every pair: dense-window path) and from a
             trained-like state (window ~1% of pairs, L0 ~ tens: pair path)
  sweep4_seconds / sequential4_seconds  wall time of 4 TopK SAEs in one sweep pass vs one after another

Roofline: the measured float32 matmul FLOP/s of the encoder product ([batch, d] @ [d, d_sae]). A dense SAE step
needs 6 such products per batch (encoder and decoder, forward and two backward); the fused step only the
encoder forward, so its bound is 3x higher. Steps after the first are timed (the first warms allocators).
A torch.profiler pass over SAELens's step and ours attributes the time by operator.

Writes bench/results/train.json. Usage: .venv/bin/python bench/train.py [--steps 5] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

from namesae.sae import TrainConfig, train_sae
from namesae.store import write_store


def planted_rows(n: int, d: int, atoms: int = 2048, active: int = 16, seed: int = 0) -> np.ndarray:
    """Rows that are non-negative mixes of `active` of `atoms` random unit directions (float32 [n, d])."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(atoms, d)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    idx = rng.integers(0, atoms, size=(n, active))
    w = rng.uniform(0.2, 1.0, size=(n, active)).astype(np.float32)
    return np.einsum("na,nad->nd", w, dirs[idx]).astype(np.float32)


def matmul_flops(batch: int, d: int, d_sae: int, reps: int = 5) -> float:
    """Measured float32 FLOP/s of [batch, d] @ [d, d_sae] (median of reps)."""
    a, b = torch.randn(batch, d), torch.randn(d, d_sae)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * batch * d * d_sae / statistics.median(times)


def side_namesae(store: Path, args: argparse.Namespace, engine: str) -> float:
    """Samples/s of train_sae's loop (stream + step), steps after the first."""
    cfg = TrainConfig(architecture="topk", d_sae=args.d * args.expansion, k=args.k, batch_size=args.batch,
                      steps=args.steps + 1, lr=3e-4, log_every=1, engine=engine, state_every=0, eval_rows=4096,
                      seed=0, shuffle_buffer=args.shuffle_buffer)
    sae = train_sae(store, cfg)
    log = sae.train_log
    return args.steps * args.batch / (log[-1]["seconds"] - log[0]["seconds"])


def side_stream(store: Path, args: argparse.Namespace, batches: int = 40) -> float:
    """Samples/s of the data path alone: StoreStream reading, shuffling and batching (no training)."""
    from namesae.sae.data import StoreStream
    from namesae.store import EmbeddingStore

    with EmbeddingStore.open(store) as s:
        it = iter(StoreStream(s, np.arange(len(s)), args.batch, 0, args.shuffle_buffer, scale=0.5))
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * args.batch / (time.perf_counter() - start)


def side_saelens(x: torch.Tensor, args: argparse.Namespace) -> float:
    """Samples/s of SAELens's SAETrainer.fit on batches of an in-memory tensor, steps after the first."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d, d_sae=args.d * args.expansion, k=args.k))
    stamps: list[float] = []

    def provider():
        i = 0
        while True:
            stamps.append(time.perf_counter())
            start = (i * args.batch) % (x.shape[0] - args.batch + 1)
            yield x[start:start + args.batch]
            i += 1

    cfg = SAETrainerConfig(total_training_samples=(args.steps + 1) * args.batch,
                           train_batch_size_samples=args.batch, lr=3e-4, lr_end=3e-4, device="cpu",
                           logger=LoggingConfig(log_to_wandb=False))
    SAETrainer(cfg=cfg, sae=sae, data_provider=provider()).fit()
    return args.steps * args.batch / (time.perf_counter() - stamps[1])


def jumprelu_trainer(args: argparse.Namespace, trained_like: bool) -> object:
    """A SAELens JumpReLU TrainingSAE + SAETrainer at the bench size. `trained_like`: the encoder scaled so the
    pre-activations spread ~20x wider than the bandwidth and thresholds set for L0 ~ k (the state of a trained
    SAE, where the straight-through window holds ~1% of pairs); else SAELens's initialisation, where the
    window spans almost every pre-activation."""
    from namesae.sae.train import build_trainer, build_training_sae

    d_sae = args.d * args.expansion
    cfg = TrainConfig(architecture="jumprelu", d_sae=d_sae, batch_size=args.batch, steps=100, lr=3e-4)
    sae = build_training_sae(cfg, args.d, d_sae, "bench")
    if trained_like:
        with torch.no_grad():
            sae.W_enc.mul_(20)
            sae.threshold.fill_(0.2)
    return build_trainer(cfg, sae, 100, "cpu")


def side_jumprelu(x: torch.Tensor, args: argparse.Namespace, fused: bool, trained_like: bool) -> dict:
    """Samples/s of one JumpReLU step (SAELens's SAETrainer.step, or the fused step) on in-memory batches."""
    from namesae.sae.fast_jumprelu import FusedJumpReLUStep
    from namesae.sae.train import use_fused_adam

    trainer = jumprelu_trainer(args, trained_like)
    step = trainer.step
    if fused:
        use_fused_adam(trainer)
        step = FusedJumpReLUStep(trainer)
    xs = x / x.pow(2).sum(1).mean().sqrt()  # unit mean squared norm, as train_sae feeds it
    step(xs[:args.batch])
    start = time.perf_counter()
    for i in range(args.steps):
        s = ((i + 1) * args.batch) % (xs.shape[0] - args.batch + 1)
        step(xs[s:s + args.batch])
    out = {"samples_per_second": args.steps * args.batch / (time.perf_counter() - start)}
    if fused:
        out["paths"] = dict(step.paths)
    with torch.no_grad():
        sae = trainer.sae
        h = (xs[:args.batch] - sae.b_dec) @ sae.W_enc + sae.b_enc
        t = sae.threshold
        out["l0"] = float((h > t).sum(1).float().mean())
        out["window_share"] = float(((h - t).abs() < sae.bandwidth / 2).float().mean())
    return out


def side_sweep(store: Path, args: argparse.Namespace, sweep: bool) -> float:
    """Wall seconds of 4 TopK SAEs (k 16/32 x init seed 0/1) trained in one sweep pass or one after another."""
    from namesae.sae.train import train_saes

    configs = [TrainConfig(architecture="topk", d_sae=args.d * args.expansion, k=k, seed=seed, data_seed=0,
                           batch_size=args.batch, steps=args.sweep_steps, lr=3e-4, state_every=0, eval_rows=4096,
                           shuffle_buffer=args.shuffle_buffer) for k in (16, 32) for seed in (0, 1)]
    start = time.perf_counter()
    if sweep:
        train_saes(store, configs, [None] * 4)
    else:
        for cfg in configs:
            train_sae(store, cfg)
    return time.perf_counter() - start


def side_bare(x: torch.Tensor, args: argparse.Namespace, sparse: bool) -> float:
    """Samples/s of a minimal PyTorch TopK SAE loop (dense or embedding_bag decoder), steps after the first."""
    torch.manual_seed(0)
    d, S, k, B = args.d, args.d * args.expansion, args.k, args.batch
    W_dec = torch.nn.Parameter(torch.randn(S, d) / d ** 0.5)
    W_enc = torch.nn.Parameter(W_dec.detach().t().clone())
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(S)), torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=3e-4)
    start = 0.0
    for i in range(args.steps + 1):
        if i == 1:
            start = time.perf_counter()
        s = (i * B) % (x.shape[0] - B + 1)
        batch = x[s:s + B]
        pre = (batch - b_dec) @ W_enc + b_enc  # (B, S)
        vals, idx = pre.topk(k, dim=-1)
        if sparse:
            x_hat = F.embedding_bag(idx, W_dec, mode="sum", per_sample_weights=vals.relu()) + b_dec
        else:
            x_hat = torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ W_dec + b_dec
        loss = (x_hat - batch).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return args.steps * B / (time.perf_counter() - start)


def profile_steps(x: torch.Tensor, args: argparse.Namespace, n: int = 2) -> dict:
    """Self CPU seconds per step by operator, for SAELens's step and the fused step on the same SAE."""
    from torch.profiler import ProfilerActivity, profile

    from namesae.sae.fast import FusedTopKStep
    from namesae.sae.train import build_trainer, build_training_sae, use_fused_adam

    cfg = TrainConfig(architecture="topk", d_sae=args.d * args.expansion, k=args.k, batch_size=args.batch,
                      steps=n + 1, lr=3e-4)
    out = {}
    for name in ("saelens", "fast"):
        trainer = build_trainer(cfg, build_training_sae(cfg, args.d, cfg.d_sae, "bench"), n + 1, "cpu")
        step = trainer.step
        if name == "fast":
            use_fused_adam(trainer)
            step = FusedTopKStep(trainer)
        step(x[:args.batch])  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(n):
                step(x[(i + 1) * args.batch:(i + 2) * args.batch])
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in rows) / 1e6 / n
        out[name] = {"seconds_per_step": round(total, 4),
                     "top_ops": [{"op": e.key, "calls_per_step": e.count // n,
                                  "seconds_per_step": round(e.self_cpu_time_total / 1e6 / n, 4),
                                  "share": round(e.self_cpu_time_total / 1e6 / n / total, 3)}
                                 for e in rows[:12]]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--expansion", type=int, default=16)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side and round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shuffle-buffer", type=int, default=8192,
                        help="rows per shuffle window of side a: small, so that timed steps include store reads")
    parser.add_argument("--sweep-steps", type=int, default=4, help="steps per SAE of the sweep sides")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d_sae = args.d * args.expansion

    x_np = planted_rows(args.rows, args.d)
    x = torch.from_numpy(x_np)
    sides = {
        "a": lambda: side_namesae(store, args, "fast"),
        "a_saelens": lambda: side_namesae(store, args, "saelens"),
        "b": lambda: side_saelens(x, args),
        "c": lambda: side_bare(x, args, sparse=False),
        "c_sparse": lambda: side_bare(x, args, sparse=True),
        "stream_only": lambda: side_stream(store, args),
        "jumprelu_fast_init": lambda: side_jumprelu(x, args, True, False),
        "jumprelu_saelens_init": lambda: side_jumprelu(x, args, False, False),
        "jumprelu_fast_trained": lambda: side_jumprelu(x, args, True, True),
        "jumprelu_saelens_trained": lambda: side_jumprelu(x, args, False, True),
        "sweep4_seconds": lambda: side_sweep(store, args, True),
        "sequential4_seconds": lambda: side_sweep(store, args, False),
    }
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "bench.h5", x_np, [f"n{i % 1000}" for i in range(args.rows)],
                            ["p"] * args.rows, "image", space="bench:image", chunk_rows=4096)
        side_saelens(x[:4 * args.batch], argparse.Namespace(**{**vars(args), "steps": 1}))  # import + warm-up
        for r in range(args.rounds):
            flops = matmul_flops(args.batch, args.d, d_sae)
            result = {"matmul_flops": flops, "loadavg_start": os.getloadavg()[0]}
            for name, run in sides.items():
                value = run()
                if isinstance(value, dict):
                    result[f"{name}_detail"] = {k: v for k, v in value.items() if k != "samples_per_second"}
                    value = value["samples_per_second"]
                result[name] = value
                print(f"round {r}: {name} {value:.1f}", flush=True)
            result["loadavg_end"] = os.getloadavg()[0]
            rounds.append(result)
    names = list(sides)
    median = {n: statistics.median(r[n] for r in rounds) for n in names}

    def ratio(p: str, q: str) -> float:
        return round(statistics.median(r[p] / r[q] for r in rounds), 3)

    flops = statistics.median(r["matmul_flops"] for r in rounds)
    dense_bound = flops / (6 * args.d * d_sae)
    encoder_bound = flops / (2 * args.d * d_sae)
    result = {
        "setup": {"architecture": "topk", "d_in": args.d, "d_sae": d_sae, "k": args.k, "batch": args.batch,
                  "rows": args.rows, "dtype": "float32", "threads": args.threads, "timed_steps": args.steps,
                  "shuffle_buffer_rows": args.shuffle_buffer, "loadavg_note": "2 cores shared with other jobs",
                  "rounds": args.rounds},
        "samples_per_second": {n: round(v, 1) for n, v in median.items()},
        "ratios": {"a_over_b": ratio("a", "b"), "a_over_c": ratio("a", "c"), "a_over_c_sparse": ratio("a", "c_sparse"),
                   "a_saelens_over_b": ratio("a_saelens", "b"), "b_over_c": ratio("b", "c"),
                   "jumprelu_fast_over_saelens_init": ratio("jumprelu_fast_init", "jumprelu_saelens_init"),
                   "jumprelu_fast_over_saelens_trained": ratio("jumprelu_fast_trained", "jumprelu_saelens_trained"),
                   "sweep4_wall_over_sequential4": ratio("sweep4_seconds", "sequential4_seconds")},
        "targets": {"a_at_least_0.95_b": ratio("a", "b") >= 0.95, "a_no_slower_than_c": ratio("a", "c") >= 1.0,
                    "a_at_least_4.5x_b": ratio("a", "b") >= 4.5,
                    "jumprelu_fused_at_least_2.5x_saelens_init": ratio("jumprelu_fast_init",
                                                                        "jumprelu_saelens_init") >= 2.5,
                    "jumprelu_fused_at_least_2.5x_saelens_trained": ratio("jumprelu_fast_trained",
                                                                           "jumprelu_saelens_trained") >= 2.5},
        "jumprelu_states": {n: rounds[-1].get(f"{n}_detail") for n in ("jumprelu_fast_init", "jumprelu_fast_trained")},
        "sweep_note": "4 TopK SAEs (k 16/32 x seed 0/1), --sweep-steps steps each, wall seconds including store "
                      "open, SAE builds and held-out metrics; on CPU the step dominates, so the shared data pass "
                      "saves little",
        "roofline": {"target_a_fraction_of_encoder_bound": 0.75,
                     "matmul_flops_per_second": round(flops), "dense_step_bound_samples_per_second":
                     round(dense_bound, 1), "encoder_only_bound_samples_per_second": round(encoder_bound, 1),
                     "a_fraction_of_encoder_bound": round(median["a"] / encoder_bound, 3),
                     "b_fraction_of_dense_bound": round(median["b"] / dense_bound, 3)},
        "rounds": rounds,
    }
    if not args.no_profile:
        result["profile"] = profile_steps(x, args)
    path = save("train", result)
    print({k: result[k] for k in ("samples_per_second", "ratios", "roofline")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
