"""Benchmark: TopK SAE training at the real size on the GPU: namesae's fused step in float32, TF32 and bfloat16
beside SAELens's SAETrainer step and a bare bfloat16 PyTorch loop, in one run.

Real size: d_in 1280 (ViT-bigG-14), 64x = 81,920 features, k = 64, batch 4096. Roofline: the sparse-aware FLOP
count of one step, 2 d m (the dense encoder product) + 8 k d (sparse decode, its two backward products and the
sparse encoder-weight gradient) per sample, against the device's measured matmul FLOP/s in each precision.
Every side starts from the same SAELens initialisation and trains on the same in-memory batches (CUDA tensors:
no host traffic); steps after `--warmup` are timed with CUDA synchronisation at the ends only.

Without a GPU it runs at a small size on the CPU (d 128, 8x, k 16, batch 512: so CI can execute it) and says so
in the JSON ("cpu_fallback": true); those numbers say nothing about the GPU.

Writes bench/results/train_gpu.json. Usage: .venv/bin/python bench/train_gpu.py [--steps 20] [--size real|small]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

from namesae.sae import TrainConfig
from namesae.sae.fast import FusedTopKStep
from namesae.sae.train import build_trainer, build_training_sae, use_fused_adam

SIZES = {"real": {"d": 1280, "expansion": 64, "k": 64, "batch": 4096},
         "small": {"d": 128, "expansion": 8, "k": 16, "batch": 512}}


def sync(device: str) -> None:
    """Wait for the device's queued work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_flops(args: argparse.Namespace, dtype: torch.dtype, tf32: bool) -> float:
    """Measured FLOP/s of [batch, d] @ [d, d_sae] in a dtype (and TF32 mode for float32)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(args.batch, args.d, device=args.device, dtype=dtype)
    b = torch.randn(args.d, args.d * args.expansion, device=args.device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(args.device)
    reps = 10
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    return reps * 2 * args.batch * args.d * args.d * args.expansion / (time.perf_counter() - start)


def timed(step, batches: list[torch.Tensor], args: argparse.Namespace) -> float:
    """Samples/s of `step` over the batches after the warm-up ones."""
    for b in batches[:args.warmup]:
        step(b)
    sync(args.device)
    start = time.perf_counter()
    for b in batches[args.warmup:]:
        step(b)
    sync(args.device)
    return (len(batches) - args.warmup) * args.batch / (time.perf_counter() - start)


def side_namesae(batches: list[torch.Tensor], args: argparse.Namespace, dtype: str, tf32: bool,
                 fused: bool = True) -> float:
    """namesae's fused TopK step (or SAELens's step on the same trainer) in a precision mode."""
    d_sae = args.d * args.expansion
    cfg = TrainConfig(architecture="topk", d_sae=d_sae, k=args.k, batch_size=args.batch, steps=1000, lr=3e-4,
                      dtype=dtype, tf32=tf32, device=args.device)
    trainer = build_trainer(cfg, build_training_sae(cfg, args.d, d_sae, "bench", args.device), 1000, args.device)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        if fused:
            use_fused_adam(trainer)
            step = FusedTopKStep(trainer, autocast=cfg.autocast())
            return timed(lambda b: step(b, False), batches, args)
        return timed(trainer.step, batches, args)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def side_bare_bf16(batches: list[torch.Tensor], args: argparse.Namespace) -> float:
    """A minimal PyTorch TopK loop under bfloat16 autocast (dense decode, autograd, fused Adam when available)."""
    torch.manual_seed(0)
    d, S, k = args.d, args.d * args.expansion, args.k
    dev = args.device
    W_dec = torch.nn.Parameter(torch.randn(S, d, device=dev) / d ** 0.5)
    W_enc = torch.nn.Parameter(W_dec.detach().t().clone())
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(S, device=dev)), torch.nn.Parameter(torch.zeros(d, device=dev))
    params = [W_enc, b_enc, W_dec, b_dec]
    try:
        opt = torch.optim.Adam(params, lr=3e-4, fused=True)
    except (RuntimeError, ValueError):
        opt = torch.optim.Adam(params, lr=3e-4)

    def step(x: torch.Tensor) -> None:
        with torch.autocast(device_type=torch.device(dev).type, dtype=torch.bfloat16):
            pre = (x - b_dec) @ W_enc + b_enc
            vals, idx = pre.topk(k, dim=-1)
            codes = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
            x_hat = codes @ W_dec + b_dec
        loss = (x_hat.float() - x).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, batches, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default=None, help="default: real on CUDA, small on CPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    size = args.size or ("real" if cuda else "small")
    for key, value in SIZES[size].items():
        setattr(args, key, value)
    d_sae = args.d * args.expansion
    gen = torch.Generator(device="cpu").manual_seed(0)
    # Sparse non-negative mixes at unit mean squared norm, resident on the device.
    atoms = F.normalize(torch.randn(4 * args.d, args.d, generator=gen), dim=1)
    batches = []
    for _ in range(args.steps + args.warmup):
        w = torch.rand(args.batch, 4 * args.d, generator=gen) * (torch.rand(args.batch, 4 * args.d, generator=gen) < 0.01)
        x = w @ atoms
        batches.append((x / x.pow(2).sum(1).mean().sqrt()).to(args.device))

    sides = {
        "namesae_fp32": lambda: side_namesae(batches, args, "float32", False),
        "namesae_tf32": lambda: side_namesae(batches, args, "float32", True),
        "namesae_bf16": lambda: side_namesae(batches, args, "bfloat16", False),
        "saelens_fp32": lambda: side_namesae(batches, args, "float32", False, fused=False),
        "saelens_bf16": lambda: side_namesae(batches, args, "bfloat16", False, fused=False),
        "bare_bf16": lambda: side_bare_bf16(batches, args),
    }
    sps = {}
    for name, run in sides.items():
        sps[name] = run()
        print(f"{name}: {sps[name]:.0f} samples/s", flush=True)
    peak = {"fp32": matmul_flops(args, torch.float32, False), "tf32": matmul_flops(args, torch.float32, True),
            "bf16": matmul_flops(args, torch.bfloat16, False)}
    flop_per_sample = 2 * args.d * d_sae + 8 * args.k * args.d
    mode = {"namesae_fp32": "fp32", "namesae_tf32": "tf32", "namesae_bf16": "bf16", "saelens_fp32": "fp32",
            "saelens_bf16": "bf16", "bare_bf16": "bf16"}
    result = {
        "setup": {"size": size, "d_in": args.d, "d_sae": d_sae, "k": args.k, "batch": args.batch,
                  "timed_steps": args.steps, "warmup_steps": args.warmup, "architecture": "topk",
                  "device": args.device,
                  "device_name": torch.cuda.get_device_name(args.device) if cuda else "cpu",
                  "cuda": torch.version.cuda, "cpu_fallback": not cuda,
                  "note": ("real size on the GPU" if cuda and size == "real" else
                           "CPU at a small size so CI can run the script: says nothing about GPU speed")},
        "samples_per_second": {n: round(v, 1) for n, v in sps.items()},
        "ratios": {"namesae_fp32_over_saelens_fp32": round(sps["namesae_fp32"] / sps["saelens_fp32"], 3),
                   "namesae_bf16_over_saelens_bf16": round(sps["namesae_bf16"] / sps["saelens_bf16"], 3),
                   "namesae_bf16_over_bare_bf16": round(sps["namesae_bf16"] / sps["bare_bf16"], 3),
                   "namesae_tf32_over_fp32": round(sps["namesae_tf32"] / sps["namesae_fp32"], 3),
                   "namesae_bf16_over_fp32": round(sps["namesae_bf16"] / sps["namesae_fp32"], 3)},
        "roofline": {"flop_per_sample": flop_per_sample,
                     "formula": "2 d m + 8 k d FLOP per sample (dense encoder + sparse rest)",
                     "matmul_flops_per_second": {k: round(v) for k, v in peak.items()},
                     "fraction": {n: round(v * flop_per_sample / peak[mode[n]], 3) for n, v in sps.items()}},
    }
    path = save("train_gpu", result)
    print({k: result[k] for k in ("samples_per_second", "ratios", "roofline")})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
