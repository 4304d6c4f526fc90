"""Sweep SAE settings on one store and tabulate held-out metrics (explained variance against L0, dead features).

Each grid point is a normal `train_sae` run folder under --out (resumable, SAELens format); sweep.csv and
sweep.json collect their metrics. Grid values are TrainConfig fields, given as field=v1,v2,...

  .venv/bin/python train/sweep.py --store runs/bigG/image.h5 --config configs/kandinsky22-bigG.toml \\
      --out runs/bigG/sweep --grid k=32,64,128 --grid d_sae=10240,20480 --set total_samples=20000000
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
from pathlib import Path

import tomllib

from namesae.cli.train import load_train_config
from namesae.sae import train_sae

FIELDS = ("run", "explained_variance", "mse", "mean_l0", "dead_fraction", "dense_fraction", "rows",
          "train_samples_per_second")


def grid_values(items: list[str]) -> dict[str, list]:
    """{field: [values]} from field=v1,v2 strings (values in TOML syntax)."""
    out = {}
    for item in items:
        key, _, values = item.partition("=")
        out[key] = [tomllib.loads(f"v = {v}")["v"] for v in values.split(",")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None, help="TOML with a [train] section (the base)")
    parser.add_argument("--grid", action="append", default=[], help="field=v1,v2,... (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="field=value for every run")
    args = parser.parse_args()
    base, _ = load_train_config(args.config, args.set)
    grid = grid_values(args.grid)
    rows = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo))
        name = "_".join(f"{k}-{v}" for k, v in point.items()) or "base"
        sae = train_sae(args.store, dataclasses.replace(base, **point), args.out / name, progress=True)
        rows.append({"run": name, **point, **{k: sae.metrics.get(k) for k in FIELDS[1:]}})
        print(json.dumps(rows[-1]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))
    with (args.out / "sweep.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["run", *grid, *FIELDS[1:]])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out / 'sweep.csv'}")


if __name__ == "__main__":
    main()
