"""Benchmark: rows/s of `namesae embed`'s code path against a bare open_clip loop over the same texts.

Both paths use one encoder object (tiny-b32-text: random weights, a ViT-B-32-sized text tower, so the encoder
dominates) on the same texts (first names x portrait templates), in the same run, interleaved. Reported:

  overhead_end_to_end  (namesae time - bare time) / bare time; noisy when the overhead is small
  overhead_direct      time of namesae's path with the encoder replaced by a lookup of precomputed rows (work
                       list, resume keys, store create/append, progress bar) / bare encoder time

Target: overhead < 10% of encoder time. Writes bench/results/embed.json.

Usage: .venv/bin/python bench/embed.py [--texts 1024] [--batch-size 256] [--chunk-rows 4096] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import save

from namesae.embed import EmbedConfig, embed_texts, text_rows
from namesae.encoders import load_encoder
from namesae.names import builtin_names, templates
from namesae.store import EmbeddingStore


def bare_loop(encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """What a script would write by hand: tokenize, encode, normalise, to numpy, batch by batch."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            tokens = encoder.tokenizer(texts[i:i + batch_size]).to(encoder.device)
            x = encoder.model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(x, dim=-1).cpu().numpy())
    return np.concatenate(out)


class Lookup:
    """The encoder interface answered from precomputed rows: isolates namesae's own cost."""

    def __init__(self, encoder, texts: list[str], x: np.ndarray) -> None:
        self.dim, self.normalized, self.attrs, self.space = encoder.dim, encoder.normalized, encoder.attrs, encoder.space
        self.rows = {t: i for i, t in enumerate(texts)}
        self.x = x

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.x[[self.rows[t] for t in texts]]


def main() -> None:
    """Run both paths and save the ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1024, help="number of texts (default 1024)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="tiny-b32-text")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timings of each path; min is kept")
    args = parser.parse_args()

    temps = templates("portrait")
    names = builtin_names("first")[: -(-args.texts // len(temps))]
    work = text_rows(names, temps)[: args.texts]
    names = list(dict.fromkeys(r.name for r in work))
    work = text_rows(names, temps)
    texts = [r.prompt for r in work]
    encoder = load_encoder(args.model, device=args.device, batch_size=args.batch_size)
    cfg = EmbedConfig(model=args.model, batch_size=args.batch_size, chunk_rows=args.chunk_rows)
    encoder.encode_text(texts[: min(32, len(texts))])  # warm-up

    with tempfile.TemporaryDirectory() as tmp:
        bare_times, namesae_times = [], []
        for rep in range(args.repeats):  # alternate, so load from other processes hits both paths alike
            t0 = time.perf_counter()
            bare = bare_loop(encoder, texts, args.batch_size)
            bare_times.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            result = embed_texts(encoder, names, temps, Path(tmp) / f"namesae{rep}.h5", cfg)
            namesae_times.append(time.perf_counter() - t0)
        t_bare, t_namesae = min(bare_times), min(namesae_times)
        with EmbeddingStore.open(result.path) as s:
            stored = s.read()
            assert s.prompts.tolist() == texts
        max_diff = float(np.abs(stored - bare).max())

        lookup = Lookup(encoder, texts, bare)
        t0 = time.perf_counter()
        embed_texts(lookup, names, temps, Path(tmp) / "overhead.h5", cfg)
        t_overhead = time.perf_counter() - t0

        t0 = time.perf_counter()
        resumed = embed_texts(encoder, names, temps, result.path, cfg)
        t_resume = time.perf_counter() - t0
        assert resumed.written == 0

    n = len(texts)
    result = {
        "model": args.model, "device": args.device, "texts": n, "names": len(names), "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows, "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats, "bare_seconds_each": [round(t, 3) for t in bare_times],
        "namesae_seconds_each": [round(t, 3) for t in namesae_times],
        "bare_seconds": round(t_bare, 3), "namesae_seconds": round(t_namesae, 3),
        "bare_rows_per_s": round(n / t_bare, 2), "namesae_rows_per_s": round(n / t_namesae, 2),
        "overhead_end_to_end": round((t_namesae - t_bare) / t_bare, 4),
        "overhead_only_seconds": round(t_overhead, 4), "overhead_direct": round(t_overhead / t_bare, 5),
        "resume_noop_seconds": round(t_resume, 4),
        "max_abs_diff_store_vs_bare": max_diff, "target_overhead": 0.10,
        "meets_target": bool(t_overhead / t_bare < 0.10),
    }
    for key, value in result.items():
        print(f"{key:28s} {value}")
    print(f"wrote {save('embed', result)}")


if __name__ == "__main__":
    main()
