"""Corruption campaign over SAE folders, training state and result files: byte flips, truncations and deletions.

Each damaged copy is run through the real command line (`namesae.cli.main`, in process) and classified:
  refused    exit 2 with exactly one `namesae: error:` line on stderr (what we want for damage that matters)
  identical  exit 0 and an output bit-identical to the undamaged run (damage that changes nothing)
  WRONG      exit 0 with different output (silently wrong numbers: must never happen)
  CRASH      a traceback, another exit code, or more than one error line (must never happen)

Targets: an SAE folder read by `namesae features` (output: features.json/.csv), a training state resumed by
`namesae train` (output: the finished SAE's weights and metrics), and identity.json / features.json read by
`namesae report` (output: the site's pages). Usage: `python bench/reliability_sae.py [--cases 1200]`; writes
bench/results/reliability_sae.json (machine, versions, command, counts). `tests/test_fuzz.py` runs a smaller one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUTCOMES = ("refused", "identical", "WRONG", "CRASH")
TRAIN_TOML = """[train]
architecture = "topk"
d_sae = 32
k = 3
batch_size = 64
steps = 24
state_every = 8
log_every = 8
lr = 0.003
holdout_fraction = 0.1
eval_rows = 200
shuffle_buffer = 256
"""


@dataclass
class CliResult:
    """What one in-process command line run did."""

    code: int | None
    stderr: str
    traceback: str | None = None


def run_cli(args: list[str]) -> CliResult:
    """Run `namesae ARGS` in this process (as the console script would), capturing stderr and any traceback."""
    import traceback

    from namesae.cli import main

    err = io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger()
    root.addHandler(handler)
    old_argv = sys.argv
    sys.argv = ["namesae", *args]
    code: int | None = None
    tb = None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:
                tb = traceback.format_exc()
    finally:
        sys.argv = old_argv
        root.removeHandler(handler)
    return CliResult(code, err.getvalue(), tb)


def classify(result: CliResult, output: bytes | None, baseline: bytes) -> str:
    """One of OUTCOMES for a run of a damaged input against the undamaged run's output."""
    if result.traceback is not None or "Traceback" in result.stderr:
        return "CRASH"
    errors = [line for line in result.stderr.splitlines() if line.startswith("namesae: error:")]
    if result.code == 2:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        return "refused" if len(errors) == 1 and lines[-1] == errors[0] else "CRASH"
    if result.code == 0 and not errors:
        return "identical" if output == baseline else "WRONG"
    return "CRASH"


# ---- fixtures -------------------------------------------------------------------------------------------------
@dataclass
class Fixture:
    """The undamaged inputs of the campaign and the outputs they give."""

    root: Path
    store: Path
    sae: Path
    config: Path
    partial: Path  # a training run killed after its state was saved
    run: Path  # a run folder with identity.json / features.json for the report
    baselines: dict[str, bytes] = field(default_factory=dict)


def planted_store(path: Path, n: int = 400, d: int = 16, seed: int = 0) -> Path:
    """A small store of sparse non-negative mixes of planted directions, 20 names."""
    from namesae.store import write_store

    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(24, d))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n, 24))
    for i in range(n):
        codes[i, rng.choice(24, 3, replace=False)] = rng.uniform(0.5, 1.5, 3)
    names = [f"Name {i % 20}" for i in range(n)]
    return write_store(path, (codes @ atoms).astype(np.float32), names, names, "image", space="bench:image")


def _check(result: CliResult, what: str) -> None:
    if result.code != 0 or result.traceback:
        raise RuntimeError(f"fixture step {what} failed: {result.code}\n{result.stderr}\n{result.traceback}")


def build_fixture(root: Path) -> Fixture:
    """Write the store, a finished SAE, a killed run with saved state, and a run folder of result files."""
    import torch

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    store = planted_store(root / "store.h5")
    config = root / "train.toml"
    config.write_text(TRAIN_TOML)
    fx = Fixture(root, store, root / "sae", config, root / "partial", root / "run")
    _check(run_cli(["train", "--store", str(store), "--out", str(fx.sae), "--config", str(config),
                    "--no-progress"]), "train")
    from namesae.config import load_config
    from namesae.sae import TrainConfig, train_sae

    cfg = load_config(TrainConfig, config, "train")
    train_sae(store, cfg, fx.partial, stop_after_steps=20)  # state saved at steps 8 and 16, then "killed"
    assert (fx.partial / "state" / "state.json").is_file()
    fx.run.mkdir()
    _check(run_cli(["identity", "--sae", str(fx.sae), "--store", str(store), "--out", str(fx.run),
                    "--write-features", "--no-progress"]), "identity")
    fx.baselines = {target: output for target, (_, output) in
                    ((t, run_target(fx, t)) for t in ("sae", "state", "result"))}
    return fx


# ---- targets --------------------------------------------------------------------------------------------------
def _folder_bytes(folder: Path, skip: tuple[str, ...] = ()) -> bytes:
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in skip:
            out.append(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return b"\0\0".join(out)


def run_target(fx: Fixture, target: str) -> tuple[CliResult, bytes | None]:
    """Run the command that reads `target` and return its result and output bytes (None when it wrote none)."""
    out = fx.root / f"out-{target}"
    shutil.rmtree(out, ignore_errors=True)
    if target == "sae":
        result = run_cli(["features", "--sae", str(fx.sae), "--store", str(fx.store), "--out", str(out),
                          "--no-progress"])
        output = _folder_bytes(out) if out.is_dir() else None
    elif target == "state":
        work = fx.root / "partial-work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(fx.partial, work)
        result = run_cli(["train", "--store", str(fx.store), "--out", str(work), "--config", str(fx.config),
                          "--no-progress"])
        # the resumed SAE: weights and held-out metrics (timings and provenance left out)
        output = None
        if (work / "sae_weights.safetensors").is_file():
            metrics = json.loads((work / "metrics.json").read_text())
            keep = {k: v for k, v in metrics.items() if "second" not in k and k not in ("resumed_at_step",
                                                                                         "steps_this_call")}
            output = (work / "sae_weights.safetensors").read_bytes() + json.dumps(keep, sort_keys=True).encode()
    elif target == "result":
        result = run_cli(["report", "--run", str(fx.run), "--out", str(out)])
        output = _folder_bytes(out, skip=(".namesae-report",)) if out.is_dir() else None
    else:
        raise ValueError(target)
    return result, output


def target_files(fx: Fixture, target: str) -> list[Path]:
    """The files of a target that the campaign damages."""
    if target == "sae":
        return [fx.sae / n for n in ("cfg.json", "sae_weights.safetensors", "namesae.json", "metrics.json",
                                     "train_log.json")]
    if target == "state":
        return [fx.partial / "state" / "state.json", fx.partial / "state" / "tensors.safetensors"]
    return [fx.run / "identity.json", fx.run / "features.json"]


def damages(data: bytes, rng: np.random.Generator, n: int, delete: bool = True) -> list[tuple[str, bytes | None]]:
    """n damaged versions of a file: mostly single-bit flips (a third of them in the first 512 bytes, where
    headers live), some truncations, and (with `delete`) one deletion (None)."""
    out: list[tuple[str, bytes | None]] = [("delete", None)] if delete else []
    out.append(("truncate 0", b""))
    while len(out) < n:
        if rng.uniform() < 0.15:
            cut = int(rng.integers(1, max(2, len(data))))
            out.append((f"truncate {cut}", data[:cut]))
            continue
        head = rng.uniform() < 0.35
        pos = int(rng.integers(0, min(len(data), 512) if head else len(data)))
        bit = int(rng.integers(0, 8))
        damaged = bytearray(data)
        damaged[pos] ^= 1 << bit
        out.append((f"flip byte {pos} bit {bit}", bytes(damaged)))
    return out[:n]


def campaign(fx: Fixture, cases: dict[str, int], seed: int = 0) -> dict[str, Any]:
    """Damage each target's files `cases[target]` times in all, run its command, and count the outcomes."""
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {}
    failures: list[dict[str, Any]] = []
    for target, n in cases.items():
        files = target_files(fx, target)
        counts: Counter[str] = Counter()
        per_file = {f.name: Counter() for f in files}
        for i, path in enumerate(files):
            k = n // len(files) + (1 if i < n % len(files) else 0)
            original = path.read_bytes()
            try:
                # A result file that is gone is an artefact the report leaves out, by design: not damage.
                for label, damaged in damages(original, rng, k, delete=target != "result"):
                    if damaged is None:
                        path.unlink()
                    else:
                        path.write_bytes(damaged)
                    result, output = run_target(fx, target)
                    outcome = classify(result, output, fx.baselines[target])
                    counts[outcome] += 1
                    per_file[path.name][outcome] += 1
                    if outcome in ("WRONG", "CRASH"):
                        failures.append({"target": target, "file": path.name, "damage": label, "outcome": outcome,
                                         "code": result.code, "stderr": result.stderr[-2000:],
                                         "traceback": (result.traceback or "")[-3000:]})
            finally:
                path.write_bytes(original)
        report[target] = {"cases": sum(counts.values()), **{o: counts[o] for o in OUTCOMES},
                          "per_file": {f: dict(c) for f, c in per_file.items()}}
    report["total_cases"] = sum(report[t]["cases"] for t in cases)
    report["failures"] = failures
    return report


def environment() -> dict[str, Any]:
    """Machine and library versions of this run."""
    import h5py
    import sae_lens
    import safetensors
    import torch

    import namesae

    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "namesae": namesae.__version__, "torch": torch.__version__,
            "sae_lens": sae_lens.__version__, "safetensors": safetensors.__version__, "h5py": h5py.__version__}


def main() -> None:
    """Run the campaign and write bench/results/reliability_sae.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1200, help="damaged inputs in all (split over the targets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "reliability_sae.json")
    args = parser.parse_args()
    import tempfile

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        start = time.perf_counter()
        fx = build_fixture(work / "campaign")
        cases = {"sae": args.cases // 2, "state": args.cases // 4, "result": args.cases - args.cases // 2
                 - args.cases // 4}
        report = campaign(fx, cases, args.seed)
        seconds = time.perf_counter() - start
    result = {"benchmark": "reliability_sae", "command": " ".join(["python", *sys.argv]),
              "environment": environment(), "seed": args.seed, "seconds": round(seconds, 1), **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for target in cases:
        r = report[target]
        print(f"{target:7s} {r['cases']:5d} cases: " + ", ".join(f"{o} {r[o]}" for o in OUTCOMES))
    print(f"total {report['total_cases']} cases in {seconds:.0f} s; wrote {args.out}")
    if report["failures"]:
        print(f"{len(report['failures'])} WRONG/CRASH cases; first: {report['failures'][0]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
