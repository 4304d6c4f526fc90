"""Benchmark: the cost of steering over a bare diffusers call, and sharded generation with 2 processes vs 1.

1. Steering overhead (in one process, interleaved repetitions, medians). On the tiny Kandinsky 2.2 pipeline
   (random weights, 32x32, 2 steps: the smallest decoder, so the overhead is as large as it gets) and a 64 -> 2048
   SAE in SAELens format:
     bare        `pipe(image_embeds=x', negative_image_embeds=..., generator=...)`: the diffusers call alone,
                 with the already-edited embedding
     steer       `steer_images(x, edits, ...)` with originals=False: SAE encode, 3 stacked edits, decode, error
                 term, the decoder wrapper (checks, generators) and the same pipeline call
     steer_pair  the same with the original image too (what `namesae steer` draws) vs two bare calls
   Target: steer / bare <= 1.05.
2. Sharded generation: `namesae generate` on the tiny pipeline, NAMES x 2 templates x N images, as one process
   (1 and 2 intra-op threads) and as `torchrun --nproc_per_node 2` (1 thread each); wall time including start-up
   and the final merge. Reports the speed-up and checks that the merged rows are identical. Also the generation
   phase alone: 1 or 2 spawned workers load the models first, then time their slices (max over workers).

Writes bench/results/steer.json. Usage: .venv/bin/python bench/steer.py [--reps 15] [--names 6] [--n 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import save

from namesae.decoders import build_tiny_pipeline, load_decoder
from namesae.decoders.real import _generators
from namesae.sae import build_sae_from_weights
from namesae.steer import AddFeature, ScaleGroup, ZeroGroup, sae_functions, steer_embeddings
from namesae.steer.images import steer_images
from namesae.store import EmbeddingStore

BIN = Path(sys.executable).parent


def bare_call(decoder, x: torch.Tensor, seeds: list[int]):
    """The diffusers pipeline call alone, as a script would write it."""
    s = decoder.settings
    negative = decoder.negative_embedding().expand(len(seeds), -1)
    return decoder.pipe(image_embeds=x, negative_image_embeds=negative, height=s.height, width=s.width,
                        num_inference_steps=s.steps, guidance_scale=s.guidance_scale,
                        generator=_generators(seeds), output_type="pil").images


def steering_overhead(root: Path, reps: int) -> dict:
    torch.set_num_threads(1)
    pipe_dir = build_tiny_pipeline("kandinsky22", root / "k22", dim=64)
    decoder = load_decoder("kandinsky22", str(pipe_dir))
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(2048, 64, generator=g), dim=1)
    sae = build_sae_from_weights(W_dec.T.clone(), -0.02 * torch.ones(2048), W_dec, torch.zeros(64),
                                 space=decoder.space)
    encode, decode = sae_functions(sae)
    x = torch.nn.functional.normalize(torch.randn(1, 64, generator=g), dim=1)
    edits = [ZeroGroup(tuple(range(40))), AddFeature(100, 0.5), ScaleGroup(tuple(range(200, 260)), 2.0)]
    seeds = [0]
    x_edit = steer_images(x, edits, encode, decode, decoder, seeds, originals=False).result.embeddings
    same = np.array_equal(np.asarray(bare_call(decoder, x_edit, seeds)[0]),
                          np.asarray(steer_images(x, edits, encode, decode, decoder, seeds, originals=False).edited[0]))
    times: dict[str, list[float]] = {"bare": [], "steer": [], "bare_pair": [], "steer_pair": []}
    runs = {
        "bare": lambda: bare_call(decoder, x_edit, seeds),
        "steer": lambda: steer_images(x, edits, encode, decode, decoder, seeds, originals=False),
        "bare_pair": lambda: (bare_call(decoder, x, seeds), bare_call(decoder, x_edit, seeds)),
        "steer_pair": lambda: steer_images(x, edits, encode, decode, decoder, seeds, originals=True),
    }
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(reps):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    t0 = time.perf_counter()
    for _ in range(50):
        steer_embeddings(x, edits, encode, decode)
    maths = (time.perf_counter() - t0) / 50
    return {
        "decoder": "tiny kandinsky22 (random weights), 32x32, 2 steps, guidance 4", "sae": "standard 64 -> 2048",
        "edits": 3, "reps": reps, "median_s": {k: round(v, 5) for k, v in med.items()},
        "steer_maths_s": round(maths, 6),
        "ratio_steer_vs_bare": round(med["steer"] / med["bare"], 4),
        "ratio_steer_pair_vs_two_bare": round(med["steer_pair"] / med["bare_pair"], 4),
        "same_image_as_bare": bool(same), "target": "<= 1.05",
    }


def _cli(out: Path, names: Path, pipe_dir: Path, n: int) -> list[str]:
    return ["generate", "--names", str(names), "--pipeline", "kandinsky22", "--model", str(pipe_dir),
            "--n-images", str(n), "--templates", "a photo of {name}", "--templates", "{name} as an astronaut",
            "--batch-size", "4", "--out", str(out), "--no-progress"]


def sharded_generation(root: Path, n_names: int, n: int) -> dict:
    pipe_dir = root / "k22"
    names = root / "names.txt"
    names.write_text("\n".join(f"Person{i}" for i in range(n_names)) + "\n")
    runs = {
        "one_process_1_thread": ([str(BIN / "namesae")], "1"),
        "one_process_2_threads": ([str(BIN / "namesae")], "2"),
        "torchrun_2_processes": ([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
                                  str(BIN / "namesae")], "1"),
    }
    wall, stores = {}, {}
    for key, (launcher, threads) in runs.items():
        out = root / key
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONWARNINGS": "ignore"}
        t0 = time.perf_counter()
        subprocess.run([*launcher, *_cli(out, names, pipe_dir, n)], env=env, check=True, capture_output=True)
        wall[key] = time.perf_counter() - t0
        with EmbeddingStore.open(out / "image.h5") as s:
            stores[key] = (s.names.tolist(), s.prompts.tolist(), s.seeds.tolist(), s.read())
    ref = stores["one_process_1_thread"]
    same = {k: v[:3] == ref[:3] and bool(np.allclose(v[3], ref[3], atol=1e-5)) for k, v in stores.items()}
    images = n_names * 2 * n
    return {
        "images": images, "batch_size": 4, "wall_s": {k: round(v, 2) for k, v in wall.items()},
        "images_per_s": {k: round(images / v, 3) for k, v in wall.items()},
        "speedup_2_processes_vs_1": round(wall["one_process_1_thread"] / wall["torchrun_2_processes"], 3),
        "speedup_2_processes_vs_1_process_2_threads":
            round(wall["one_process_2_threads"] / wall["torchrun_2_processes"], 3),
        "same_rows_as_one_process": same,
        "note": "wall time includes Python/torch start-up of each process and the merge; the machine's 2 cores "
                "are shared with other jobs, so the speed-up is a lower bound of what idle cores give",
    }


def _worker(rank: int, world: int, root: str, names: list[str], n: int, barrier, queue) -> None:
    """One generation worker: load (untimed), wait for the others, then time this rank's slice."""
    torch.set_num_threads(1)
    from namesae.encoders import load_encoder
    from namesae.generate import GenerateConfig, generate_shard, work_list

    decoder = load_decoder("kandinsky22", str(Path(root) / "k22"))
    encoder = load_encoder("tiny", "seed0")
    cfg = GenerateConfig(n=n, templates=("a photo of {name}", "{name} as an astronaut"), batch_size=4)
    work = work_list(names, cfg.templates, n)
    barrier.wait()
    t0 = time.perf_counter()
    generate_shard(decoder, encoder, work, Path(root) / f"workers{world}", cfg, rank, world)
    queue.put((rank, time.perf_counter() - t0))


def worker_generation(root: Path, n_names: int, n: int) -> dict:
    """Generation time without process start-up: W spawned workers load first, then run their slices together."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    names = [f"Person{i}" for i in range(n_names)]
    out = {}
    for world in (1, 2):
        barrier, queue = ctx.Barrier(world), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(r, world, str(root), names, n, barrier, queue))
                 for r in range(world)]
        for p in procs:
            p.start()
        times = [queue.get(timeout=1800)[1] for _ in procs]
        for p in procs:
            p.join()
        out[world] = max(times)
    return {"generation_s": {"1_process": round(out[1], 2), "2_processes": round(out[2], 2)},
            "speedup_2_vs_1": round(out[1] / out[2], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--names", type=int, default=6)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overhead = steering_overhead(root, args.reps)
        print("steering overhead:", overhead)
        sharding = sharded_generation(root, args.names, args.n)
        sharding["without_start_up"] = worker_generation(root, args.names, args.n)
        print("sharded generation:", sharding)
    load = os.getloadavg()
    path = save("steer", {"steering_overhead": overhead, "sharded_generation": sharding,
                          "load_average_1_5_15": [round(v, 2) for v in load]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
