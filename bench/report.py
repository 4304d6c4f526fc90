"""Benchmark: the report of 1,000 names x 16 images with icons for 2,000 features from the tiny decoder.

Times, in one run: drawing the icons (first run, and a second run that finds them all cached), the time per icon,
and building the report (target < 60 s on 2 cores). The SAE is random (d=64, 2,000 features), the decoder the
tiny random Kandinsky 2.2 in its space: the cost is realistic for the tiny decoder, the pictures mean nothing."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_report import save_features, save_identity  # noqa: E402  (the tests' writers, through the owners)

from namesae.report import build_report  # noqa: E402
from namesae.store import write_store  # noqa: E402


def make_run(root: Path, n_names: int, n_images: int, n_features: int, d: int = 64) -> None:
    """A run directory shaped like the demo's, at benchmark size."""
    rng = np.random.default_rng(0)
    names = [f"First{i} Last{i % 97}" for i in range(n_names)]
    (root / "world" / "images").mkdir(parents=True)
    # Result files written by their owners (the report reads only through their loaders).
    save_identity(root / "identity.json", [
        {"name": n, "n_rows": n_images, "dedicated": bool(i % 4 == 0), "dedication": float(rng.uniform()),
         "identity_features": [(i % n_features, 0.9, 0.7)],
         "top_features": [(int(j), 0.1, None) for j in rng.integers(0, n_features, 8)],
         "part_composition": float(rng.uniform()), "trace": float(rng.uniform()), "logdet": float(rng.normal()),
         "cos_mean": float(rng.uniform()), "cos_min": 0.1, "cos_max": 0.9, "dse": float(rng.uniform(0, 3)),
         "attributes": {"age": {"mean": 40.0, "std": 5.0}}} for i, n in enumerate(names)])
    save_features(root / "features.json", [
        {"feature": j, "label": f"label {j}", "top_names": [names[int(k)] for k in rng.integers(0, n_names, 10)],
         "histogram_values": tuple(rng.exponential(size=200).round(4).tolist())} for j in range(n_features)],
        n_names)
    (root / "world" / "truth.json").write_text(json.dumps({"names": [
        {"name": n, "frequency": float(rng.integers(10, 10**6))} for n in names]}))
    tile = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    paths = []
    for i in range(n_names):
        for k in range(n_images):
            rel = f"images/{i:05d}_{k:02d}.png"
            tile.save(root / "world" / rel)
            paths.append(rel)
    x = rng.normal(size=(n_names * n_images, d)).astype(np.float32)
    write_store(root / "world" / "image.h5", x, [n for n in names for _ in range(n_images)],
                ["a photo"] * len(x), "image", "bench:image", seeds=list(range(len(x))), images=paths)
    from namesae.runs import record_decoder
    from namesae.sae import build_sae_from_weights

    dec = rng.normal(size=(n_features, d)).astype(np.float32)
    dec /= np.linalg.norm(dec, axis=1, keepdims=True)
    build_sae_from_weights(dec.T, np.zeros(n_features, np.float32), dec, np.zeros(d, np.float32),
                           space="bench:image", out_dir=root / "sae")
    record_decoder(root, "kandinsky22", f"tiny:{root / 'tiny_kandinsky22'}")


def main() -> None:
    """Build the run once, then time the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--features", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        make_run(root, args.names, args.images, args.features)
        from namesae.report.pictures import draw_run_pictures

        draw_run_pictures(root, icons=0, group_icons=0, progress=False)  # builds the tiny decoder (not timed)
        icons = []
        for _ in range(2):
            start = time.perf_counter()
            pictures = draw_run_pictures(root, icons=args.features, group_icons=0, progress=False)
            icons.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = build_report(root, Path(tmp) / "site")
        seconds = time.perf_counter() - start
    n_icons = len(pictures.icons.features)
    out = {"names": args.names, "images_per_name": args.images, "features": args.features, "icons": n_icons,
           "icons_first_run_seconds": round(icons[0], 2), "seconds_per_icon": round(icons[0] / max(n_icons, 1), 4),
           "icons_cached_run_seconds": round(icons[1], 2),
           "seconds": round(seconds, 2), "target_seconds": 60, "meets_target": seconds < 60,
           "name_pages": result.n_name_pages, "feature_pages": result.n_feature_pages, "plots": result.plots}
    print(json.dumps(out, indent=2))
    print(f"wrote {save('report', out)}")


if __name__ == "__main__":
    main()
