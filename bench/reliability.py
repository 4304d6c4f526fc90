"""Reliability campaigns: nothing lost, nothing silently wrong. Writes bench/results/reliability.json.

Each campaign is a function `campaign_<what>(root, count, seed, **options) -> dict` that returns its counts and a
`failures` list (empty when the claim held); `main` runs the selected ones.

Kills (SIGKILL at uniform random moments of a job, the job rerun until it finishes):
  store_kills_api    a raw `EmbeddingStore.append` loop (random batch sizes, tier merges, folds); after every kill
                     the store must open and validate, hold an exact prefix of the rows (none lost, none
                     duplicated, count never falling), and each finished job must equal an uninterrupted
                     reference bit for bit.
  store_kills_embed  the same with `namesae embed` (the CLI, tiny offline model) as the job.
  train_kills        `namesae train` (fused TopK with aux-k, cosine schedule and checkpoints; fused JumpReLU with
                     sparsity warm-up), state every 20 steps: every state a kill leaves passes its checks, and the
                     finished folder equals the uninterrupted run's (weights, cfg and checkpoints bit for bit;
                     metrics, train log and namesae.json equal but for wall-clock fields).
  generate_kills     `namesae generate` (tiny offline Kandinsky 2.2): after every kill the shard holds a prefix of
                     the reference's rows and every PNG on disk is the reference's; the finished folder (image.h5,
                     shard, every PNG, images.csv, generate.json but for per-call counts) equals the reference.
Damage (in process, after the kills):
  store_flips        random byte flips (1, 2, 8 bytes, or a 64-byte run) and truncations of a store's files
                     (single-file stores and stores with committed segments): every full read either raises one
                     StoreError line naming the file or returns bit-identical rows; a sample also runs
                     `namesae embed` (resume) on the damaged copy: exit 2 with one line, or exit 0 and a store
                     that is then bit-identical to the reference (or refused when read).
  sae_damage         byte flips, truncations and deletions of SAE folders, training state and result files, each
                     run through `namesae features` / `train` / `report`: refused in one line or bit-identical.

Children are forked from this process (fork is cheap; importing torch is not), so the kill moments fall inside
the job rather than inside interpreter start-up. Jobs run with one intra-op thread (two threads change float
rounding; the reference and its resumed copies must run alike).

Usage: .venv/bin/python bench/reliability.py [--kills-api 400] [--kills-embed 100] [--kills-train 300]
       [--kills-generate 100] [--flips 1000] [--sae-cases 1500] [--seed 0] [--only train_kills ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from namesae.errors import StoreError
from namesae.store import EmbeddingStore, segments_dir, write_store

TEMPLATES = ("a photo of {name}", "{name} as a child")
TINY_SPACE = "open_clip:tiny:seed0:text"


# ---- forking jobs and killing them ---------------------------------------------------------------------------
def forked(job: Callable[[Callable[[], None]], None], kill_after: float | None, log_file: Path,
           timeout: float = 300.0) -> dict[str, Any]:
    """Run job(ready) in a forked child; SIGKILL it `kill_after` s after it calls ready() (None: let it finish)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(r)
        code = 1
        try:
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            job(lambda: os.write(w, b"r"))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - report anything, then exit
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    t0 = time.perf_counter()
    ready = os.read(r, 1) == b"r"
    os.close(r)
    t_ready = time.perf_counter()
    killed = hung = False
    deadline = t_ready + (kill_after if kill_after is not None and ready else timeout)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() >= deadline:
            killed, hung = True, kill_after is None or not ready
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(min(0.002, max(0.0, deadline - time.perf_counter())))
    return {"killed": killed and not hung, "hung": hung, "exit": os.waitstatus_to_exitcode(status),
            "ready": ready, "seconds": time.perf_counter() - t0, "after_ready": time.perf_counter() - t_ready}


def read_all(path: Path) -> dict[str, Any]:
    """Everything a store holds, every check applied (raises StoreError when damaged)."""
    with EmbeddingStore.open(path) as s:
        s.validate()
        images = s.images
        return {"x": s.read(), "names": s.names.tolist(), "prompts": s.prompts.tolist(), "kinds": s.kinds.tolist(),
                "seeds": s.seeds.tolist(), "images": None if images is None else images.tolist(),
                "space": s.space, "dim": s.dim, "normalized": s.normalized, "dtype": s.dtype,
                "attrs": {k: v for k, v in s.attrs.items() if k != "rows_committed"}}


def same(a: dict[str, Any], b: dict[str, Any], rows: int | None = None, atol: float = 0.0) -> bool:
    """Whether store contents a equal b (b cut to its first `rows` rows); embeddings bitwise unless atol."""
    n = len(b["names"]) if rows is None else rows
    for key in ("names", "prompts", "kinds", "seeds"):
        if a[key] != b[key][:n]:
            return False
    if (a["images"] is None) != (b["images"] is None) or (a["images"] is not None and a["images"] != b["images"][:n]):
        return False
    if a["x"].shape != b["x"][:n].shape:
        return False
    ok = np.array_equal(a["x"], b["x"][:n]) if atol == 0 else np.allclose(a["x"], b["x"][:n], rtol=0, atol=atol)
    return bool(ok) and all(a[k] == b[k] for k in ("space", "dim", "normalized", "dtype", "attrs"))


def remove_store(path: Path) -> None:
    """Delete a store this campaign wrote: its file and its segments folder."""
    path.unlink(missing_ok=True)
    shutil.rmtree(segments_dir(path), ignore_errors=True)


def copy_store(src: Path, dst: Path) -> list[Path]:
    """Copy a store's file and segments folder; return the copied files that hold data (base, segments, manifest)."""
    remove_store(dst)
    shutil.copyfile(src, dst)
    files = [dst]
    if segments_dir(src).is_dir():
        shutil.copytree(segments_dir(src), segments_dir(dst))
        files += sorted(p for p in segments_dir(dst).iterdir() if p.name != "writer.lock")
    return files


# ---- kills of a raw append loop ----------------------------------------------------------------------------
def api_rows(n: int, d: int, seed: int) -> np.ndarray:
    """Unit rows, as the float16 store keeps them (float32 values exactly representable in float16)."""
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float16).astype(np.float32)


BATCHES = (1, 2, 5, 17, 64, 128, 300)


def api_job(path: Path, x: np.ndarray, batch_seed: int) -> Callable[[Callable[[], None]], None]:
    """A resumable job: skip rows already in the store, append the rest in random batch sizes, in order."""
    def job(ready: Callable[[], None]) -> None:
        store = EmbeddingStore.open(path, "a") if path.exists() else \
            EmbeddingStore.create(path, x.shape[1], "bench:kill:text", normalized=True, dtype="float16", chunk_rows=64)
        ready()
        with store:
            done = store.done_keys()
            todo = [i for i in range(len(x)) if ("text", f"N{i}", f"p{i}", -1) not in done]
            rng = np.random.default_rng(batch_seed)
            pos = 0
            while pos < len(todo):
                idx = todo[pos:pos + int(rng.choice(BATCHES))]
                store.append(x[idx], [f"N{i}" for i in idx], [f"p{i}" for i in idx], "text")
                pos += len(idx)
    return job


def _kill_loop(name: str, root: Path, kills: int, seed: int, make_job: Callable[[Path, int], Callable],
               reference: dict[str, Any], atol: float, max_kill_s: float) -> dict[str, Any]:
    """Kill jobs until `kills` SIGKILLs landed; each job resumes its store until it finishes, then is compared."""
    rng = np.random.default_rng(seed)
    log_file = root / f"{name}.log"
    stats: Counter = Counter()
    failures: list[str] = []
    rows_at_kill: list[int] = []
    job_no = 0
    t0 = time.perf_counter()
    while stats["kills"] < kills:
        job_no += 1
        path = root / f"{name}-{job_no}.h5"
        remove_store(path)
        previous = 0
        for attempt in range(1000):
            delay = float(rng.uniform(0.0, max_kill_s))
            run = forked(make_job(path, int(rng.integers(1 << 30))), delay if stats["kills"] < kills else None,
                         log_file)
            stats["runs"] += 1
            stats["hung"] += run["hung"]
            if not run["killed"] and run["exit"] != 0:
                failures.append(f"{path.name} run {attempt}: exit {run['exit']} (see {log_file.name})")
                break
            if run["killed"]:
                stats["kills"] += 1
            try:
                got = read_all(path) if path.exists() else None
            except StoreError as err:
                failures.append(f"{path.name} after kill {attempt}: unreadable: {err}")
                stats["unreadable"] += 1
                break
            rows = 0 if got is None else len(got["names"])
            if run["killed"]:
                rows_at_kill.append(rows)
            if rows < previous:
                failures.append(f"{path.name}: {previous - rows} committed row(s) lost")
                stats["lost_rows"] += previous - rows
            if got is not None and not same(got, reference, rows, atol):
                stats["not_a_prefix"] += 1
                keys = list(zip(got["names"], got["prompts"]))
                stats["duplicated_rows"] += len(keys) - len(set(keys))
                failures.append(f"{path.name}: rows are not the reference's first {rows} (duplicated or wrong)")
                break
            previous = rows
            if not run["killed"]:
                stats["jobs_finished"] += 1
                if rows != len(reference["names"]):
                    failures.append(f"{path.name}: finished with {rows} rows, expected {len(reference['names'])}")
                break
        remove_store(path)
    return {"kills": stats["kills"], "runs": stats["runs"], "jobs": job_no, "jobs_finished": stats["jobs_finished"],
            "hung": stats["hung"], "lost_rows": stats["lost_rows"], "duplicated_rows": stats["duplicated_rows"],
            "unreadable_after_kill": stats["unreadable"], "not_a_prefix": stats["not_a_prefix"],
            "rows_per_job": len(reference["names"]),
            "rows_at_kill_quartiles": np.percentile(rows_at_kill, [0, 25, 50, 75, 100]).tolist() if rows_at_kill
            else [], "seconds": round(time.perf_counter() - t0, 1), "failures": failures[:20]}


def campaign_store_kills_api(root: Path, kills: int = 500, seed: int = 0, rows: int = 1200,
                             dim: int = 32) -> dict[str, Any]:
    """SIGKILLs at random moments inside a raw append loop; zero rows lost or duplicated, results bit-identical."""
    root.mkdir(parents=True, exist_ok=True)
    x = api_rows(rows, dim, seed)
    ref_path = root / "api-reference.h5"
    remove_store(ref_path)
    timing = forked(api_job(ref_path, x, seed), None, root / "api.log")
    if timing["exit"] != 0:
        return {"failures": [f"reference job failed with exit {timing['exit']}"]}
    reference = read_all(ref_path)
    out = _kill_loop("api", root, kills, seed + 1, lambda p, s: api_job(p, x, s), reference, 0.0,
                     max_kill_s=timing["after_ready"])
    return {"job": f"{rows} unit rows x {dim}-d float16, append batches {list(BATCHES)}, chunk_rows 64",
            "reference_job_seconds": round(timing["after_ready"], 3), **out}


# ---- kills of `namesae embed` ------------------------------------------------------------------------------
def embed_args(names_file: Path, out: Path, chunk_rows: int = 8) -> list[str]:
    """The `namesae embed` command line of the campaigns (tiny offline model)."""
    args = ["embed", "--names", str(names_file), "--model", "tiny", "--out", str(out), "--chunk-rows",
            str(chunk_rows), "--no-progress"]
    for t in TEMPLATES:
        args += ["-t", t]
    return args


def embed_job(args: list[str]) -> Callable[[Callable[[], None]], None]:
    """`namesae embed ARGS` as a forked job (the real console-script entry point); ready at its first append."""
    def job(ready: Callable[[], None]) -> None:
        import torch

        torch.set_num_threads(1)
        from namesae.cli import main
        from namesae.store import EmbeddingStore

        original = EmbeddingStore.append
        started = []

        def append(self: EmbeddingStore, *a: Any, **k: Any) -> None:
            if not started:  # the kill clock starts at the job's first append, after model loading
                started.append(ready())
            original(self, *a, **k)

        EmbeddingStore.append = append  # type: ignore[method-assign]
        sys.argv = ["namesae", *args]
        main()
    return job


def preload() -> None:
    """Import the CLI's heavy libraries once here, running no torch kernel, so forked children start at once."""
    import open_clip  # noqa: F401
    import torch  # noqa: F401

    import namesae.cli
    import namesae.embed
    import namesae.encoders  # noqa: F401


def names_file(root: Path, n: int) -> Path:
    """A names file of the first n built-in first names."""
    from namesae.names import builtin_names

    path = root / f"names-{n}.txt"
    path.write_text("\n".join(builtin_names("first")[:n]) + "\n", encoding="utf-8")
    return path


def campaign_store_kills_embed(root: Path, kills: int = 100, seed: int = 0, names: int = 60,
                               chunk_rows: int = 8) -> dict[str, Any]:
    """SIGKILLs at random moments inside `namesae embed`; every resumed store equals the uninterrupted one."""
    root.mkdir(parents=True, exist_ok=True)
    preload()
    nf = names_file(root, names)
    ref_path = root / "embed-reference.h5"
    remove_store(ref_path)
    timing = forked(embed_job(embed_args(nf, ref_path, chunk_rows)), None, root / "embed.log")
    if timing["exit"] != 0:
        return {"failures": [f"reference embed failed with exit {timing['exit']} (see embed.log)"]}
    reference = read_all(ref_path)
    out = _kill_loop("embed", root, kills, seed + 2, lambda p, s: embed_job(embed_args(nf, p, chunk_rows)),
                     reference, 1e-6, max_kill_s=timing["after_ready"])
    return {"job": f"namesae embed --model tiny, {names} names x {len(TEMPLATES)} templates, --chunk-rows "
                   f"{chunk_rows}", "reference_job_seconds": round(timing["after_ready"], 3), **out}


# ---- kills of `namesae train` ---------------------------------------------------------------------------------
TRAIN_TOML = {
    # aux-k (dead_feature_window < steps), a warm-up plus cosine schedule and checkpoints: every piece of state.
    "topk": """[train]
architecture = "topk"
d_sae = 64
k = 4
batch_size = 32
steps = {steps}
state_every = {state_every}
log_every = 20
checkpoint_every = 100
dead_feature_window = 40
lr = 0.003
lr_warmup_steps = 20
lr_schedule = "cosine"
holdout_fraction = 0.1
eval_rows = 200
shuffle_buffer = 128
""",
    "jumprelu": """[train]
architecture = "jumprelu"
d_sae = 64
batch_size = 32
steps = {steps}
state_every = {state_every}
log_every = 20
checkpoint_every = 100
lr = 0.003
lr_warmup_steps = 20
sparsity_warmup_steps = 50
holdout_fraction = 0.1
eval_rows = 200
shuffle_buffer = 128
""",
}
TIMING_KEYS = ("train_seconds", "train_samples_per_second", "resumed_at_step", "steps_this_call", "seconds")


def cli_job(args: list[str], start_at: tuple[str, str] | None = None) -> Callable[[Callable[[], None]], None]:
    """`namesae ARGS` as a forked job with one intra-op thread (as the reference); ready at once, or at the first
    call of `start_at` = (module, function) (the kill clock then skips model loading)."""
    def job(ready: Callable[[], None]) -> None:
        import importlib

        import torch

        torch.set_num_threads(1)
        if start_at is None:
            ready()
        else:
            module = importlib.import_module(start_at[0])
            original = getattr(module, start_at[1])

            def hooked(*a: Any, **k: Any) -> Any:
                ready()
                return original(*a, **k)

            setattr(module, start_at[1], hooked)
        from namesae.cli import main

        sys.argv = ["namesae", *args]
        main()
    return job


def preload_train() -> None:
    """Import what `namesae train` needs once here (no torch kernel runs), so forked children start at once."""
    import sae_lens  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import namesae.cli
    import namesae.cli.train
    import namesae.sae
    import namesae.sae.fast
    import namesae.sae.fast_jumprelu  # noqa: F401


def _strip(value: Any) -> Any:
    """A JSON value without its wall-clock fields (timings differ between runs; nothing else may)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def sae_folder(run: Path) -> dict[str, Any]:
    """What a finished run folder holds, in the form a resumed run must reproduce: weights and cfg as bytes, the
    checkpoints' weights as bytes, metrics / train log / namesae.json without timings (and without the sha256s of
    the two files that hold timings, and the git commit), and every file name (leftovers of killed runs too)."""
    from namesae.io import sha256_file

    info = json.loads((run / "namesae.json").read_text())
    sums = info.pop("checksums")
    info.pop("checksum")
    info.pop("git_commit")  # provenance: the HEAD of the code that wrote the folder (changes with a commit)
    for file, digest in sums.items():  # the folder verifies: every recorded sha256 matches its file
        if sha256_file(run / file) != digest:
            raise ValueError(f"{run / file}: sha256 differs from namesae.json")
    checkpoints = {p.name: (p / "sae_weights.safetensors").read_bytes()
                   for p in sorted((run / "checkpoints").glob("step_*"))}
    return {"weights": (run / "sae_weights.safetensors").read_bytes(), "cfg": (run / "cfg.json").read_bytes(),
            "metrics": _strip(json.loads((run / "metrics.json").read_text())),
            "train_log": _strip(json.loads((run / "train_log.json").read_text())),
            "info": info, "weights_sha256": sums["sae_weights.safetensors"], "checkpoints": checkpoints,
            "files": sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))}


def run_state(run: Path) -> tuple[int | None, str | None]:
    """The step of the state a resume would load (None: none) and the problem if that state is damaged."""
    from namesae.errors import NamesaeError
    from namesae.io import sha256_file
    from namesae.sae.state import TENSORS_FILE, find_state, read_state_meta

    folder = find_state(run)
    if folder is None:
        return None, None
    try:
        meta = read_state_meta(folder)
        if sha256_file(folder / TENSORS_FILE) != meta.get("tensors_sha256"):
            return meta["n_training_steps"], f"{folder}: tensors differ from their sha256"
        return meta["n_training_steps"], None
    except (NamesaeError, OSError) as err:
        return None, str(err)


def litter(run: Path) -> list[str]:
    """Temporary files and folders that killed runs left behind (never read; a finished run should hold none)."""
    return sorted(p.relative_to(run).as_posix() for p in run.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


def campaign_train_kills(root: Path, kills: int = 300, seed: int = 0, steps: int = 300, state_every: int = 20,
                         architectures: tuple[str, ...] = ("topk", "jumprelu")) -> dict[str, Any]:
    """SIGKILLs at random moments of `namesae train` (fused TopK and JumpReLU steps), each run resumed until it
    finishes: every state a kill leaves is intact, and the finished SAE equals the uninterrupted one bit for bit."""
    root.mkdir(parents=True, exist_ok=True)
    preload_train()
    store = planted_store(root / "store.h5")
    rng = np.random.default_rng(seed + 4)
    log_file = root / "train.log"
    out: dict[str, Any] = {"job": f"namesae train, planted store 400 x 16, d_sae 64, batch 32, {steps} steps, "
                                  f"state_every {state_every}, checkpoint_every 100, one thread",
                           "architectures": {}}
    failures: list[str] = []
    t0 = time.perf_counter()
    for a, arch in enumerate(architectures):
        config = root / f"{arch}.toml"
        config.write_text(TRAIN_TOML[arch].format(steps=steps, state_every=state_every))

        def args(run: Path, config: Path = config) -> list[str]:
            return ["train", "--store", str(store), "--out", str(run), "--config", str(config), "--no-progress"]

        ref_run = root / f"{arch}-reference"
        shutil.rmtree(ref_run, ignore_errors=True)
        timing = forked(cli_job(args(ref_run)), None, log_file)
        if timing["exit"] != 0:
            failures.append(f"{arch}: reference run failed with exit {timing['exit']} (see {log_file.name})")
            continue
        reference = sae_folder(ref_run)
        quota = kills // len(architectures) + (1 if a < kills % len(architectures) else 0)
        stats: Counter = Counter()
        at_kill: list[int] = []
        litter_seen: set[str] = set()
        job_no = 0
        while stats["kills"] < quota:
            job_no += 1
            run = root / f"{arch}-{job_no}"
            shutil.rmtree(run, ignore_errors=True)
            previous = 0
            for attempt in range(1000):
                delay = float(rng.uniform(0.0, 1.1 * timing["after_ready"]))
                result = forked(cli_job(args(run)), delay if stats["kills"] < quota else None, log_file)
                stats["runs"] += 1
                stats["hung"] += result["hung"]
                if not result["killed"] and result["exit"] != 0:
                    failures.append(f"{arch} job {job_no} run {attempt}: exit {result['exit']} (see {log_file.name})")
                    break
                if not result["killed"]:
                    break
                stats["kills"] += 1
                if (run / "namesae.json").is_file():
                    stats["killed_after_finishing"] += 1
                    at_kill.append(steps)
                    continue
                step, problem = run_state(run)
                if problem:
                    stats["damaged_state"] += 1
                    failures.append(f"{arch} job {job_no} after kill {attempt}: {problem}")
                    break
                at_kill.append(step or 0)
                if (step or 0) < previous:
                    stats["state_step_regressions"] += 1
                previous = max(previous, step or 0)
                litter_seen.update(litter(run))
            else:
                failures.append(f"{arch} job {job_no}: did not finish in 1000 runs")
            if not (run / "namesae.json").is_file():
                continue
            stats["jobs_finished"] += 1
            try:
                got = sae_folder(run)
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
                failures.append(f"{arch} job {job_no}: finished folder unreadable: {err}")
                continue
            for key in ("weights", "cfg", "checkpoints", "metrics", "train_log", "info"):
                if got[key] != reference[key]:
                    stats[f"different_{key}"] += 1
                    failures.append(f"{arch} job {job_no}: {key} differ from the uninterrupted run")
            extra = sorted(set(got["files"]) - set(reference["files"]))
            if extra:
                stats["jobs_with_leftovers"] += 1
                litter_seen.update(extra)
            if extra and any(not (".tmp-" in e or ".old-" in e) for e in extra):
                failures.append(f"{arch} job {job_no}: unexpected files {extra[:5]}")
            shutil.rmtree(run, ignore_errors=True)
        out["architectures"][arch] = {
            "reference_job_seconds": round(timing["after_ready"], 3), "kills": stats["kills"], "runs": stats["runs"],
            "jobs": job_no, "jobs_finished": stats["jobs_finished"], "hung": stats["hung"],
            "killed_after_finishing": stats["killed_after_finishing"], "damaged_state": stats["damaged_state"],
            "state_step_regressions": stats["state_step_regressions"],
            **{f"different_{k}": stats[f"different_{k}"] for k in ("weights", "cfg", "checkpoints", "metrics",
                                                                   "train_log", "info")},
            "state_step_at_kill_quartiles": np.percentile(at_kill, [0, 25, 50, 75, 100]).tolist() if at_kill else [],
            "jobs_with_leftovers": stats["jobs_with_leftovers"], "leftover_kinds": sorted({
                re.sub(r"-\d+", "-PID", re.sub(r"step_\d+", "step_N", x)) for x in litter_seen})}
    out["kills"] = sum(r["kills"] for r in out["architectures"].values())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["failures"] = failures[:20]
    return out


# ---- kills of `namesae generate` ------------------------------------------------------------------------------
GEN_NAMES = ("Vicki", "Barack Obama", "Zoë Ñúñez")


def generate_args(model: Path, names: Path, out: Path, n: int, batch_size: int) -> list[str]:
    """The `namesae generate` command line of the campaign (tiny offline Kandinsky 2.2 pipeline)."""
    args = ["generate", "--names", str(names), "--pipeline", "kandinsky22", "--model", str(model), "--n-images",
            str(n), "--batch-size", str(batch_size), "--out", str(out), "--no-progress"]
    for t in TEMPLATES:
        args += ["--templates", t]
    return args


def generated(out: Path) -> dict[str, Any]:
    """What a generation folder holds: the merged store and the shard (read and checked), every PNG's bytes, the
    sidecar CSV, generate.json without the per-call counts, and temporary leftovers."""
    pngs = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "images").rglob("*.png"))
            if not p.name.startswith(".")} if (out / "images").is_dir() else {}
    shard = out / "shards" / "rank0.h5"
    record = None
    if (out / "generate.json").is_file():
        record = json.loads((out / "generate.json").read_text())
        record.pop("rank0")  # what this call drew, embedded from disk or skipped
        record["store"].pop("path")
    return {"store": read_all(out / "image.h5") if (out / "image.h5").exists() else None,
            "shard": read_all(shard) if shard.exists() else None, "pngs": pngs,
            "csv": (out / "images.csv").read_bytes() if (out / "images.csv").is_file() else None,
            "record": record, "litter": litter(out)}


def preload_generate() -> None:
    """Import what `namesae generate` needs once here (no torch kernel runs)."""
    import diffusers  # noqa: F401
    import open_clip  # noqa: F401
    import torch  # noqa: F401

    import namesae.cli
    import namesae.cli.generate
    import namesae.decoders
    import namesae.encoders
    import namesae.generate  # noqa: F401


def png_kill_job(args: list[str], k: int) -> Callable[[Callable[[], None]], None]:
    """`namesae ARGS` that SIGKILLs itself right after writing its k-th PNG (a kill between two PNGs of a batch:
    a window too narrow for random kills to hit often)."""
    def job(ready: Callable[[], None]) -> None:
        import namesae.decoders

        original, written = namesae.decoders.write_png, []

        def write_png(*a: Any, **kw: Any) -> Any:
            path = original(*a, **kw)
            written.append(path)
            if len(written) == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return path

        namesae.decoders.write_png = write_png
        cli_job(args)(ready)
    return job


def campaign_generate_kills(root: Path, kills: int = 100, seed: int = 0, n: int = 2, batch_size: int = 2,
                            png_kills: tuple[int, ...] | None = None) -> dict[str, Any]:
    """SIGKILLs at random moments of `namesae generate` (after model loading: drawing, PNG writes, embedding,
    appends, the merge), each run resumed until it finishes: the shard only ever holds a prefix of the reference
    rows, every PNG on disk is the reference's, and the finished folder equals the uninterrupted one bit for bit.
    Then one job per k in `png_kills` (default: every k) killed right after its k-th PNG write, and resumed."""
    root.mkdir(parents=True, exist_ok=True)
    preload_generate()
    log_file = root / "generate.log"
    model = root / "k22"

    def build(ready: Callable[[], None]) -> None:
        import torch

        torch.set_num_threads(1)
        ready()
        from namesae.decoders import build_tiny_pipeline

        build_tiny_pipeline("kandinsky22", model, seed=0, dim=64)

    shutil.rmtree(model, ignore_errors=True)
    if forked(build, None, log_file)["exit"] != 0:
        return {"failures": [f"building the tiny pipeline failed (see {log_file.name})"]}
    names = root / "names.txt"
    names.write_text("\n".join(GEN_NAMES) + "\n", encoding="utf-8")
    start_at = ("namesae.generate", "generate_shard")
    ref_out = root / "reference"
    shutil.rmtree(ref_out, ignore_errors=True)
    timing = forked(cli_job(generate_args(model, names, ref_out, n, batch_size), start_at), None, log_file)
    if timing["exit"] != 0:
        return {"failures": [f"reference generate failed with exit {timing['exit']} (see {log_file.name})"]}
    reference = generated(ref_out)
    rows = len(reference["store"]["names"])
    rng = np.random.default_rng(seed + 5)
    stats: Counter = Counter()
    failures: list[str] = []
    at_kill: list[int] = []
    litter_seen: set[str] = set()
    job_no = 0
    t0 = time.perf_counter()
    while stats["kills"] < kills:
        job_no += 1
        out = root / f"gen-{job_no}"
        shutil.rmtree(out, ignore_errors=True)
        previous = 0
        ok = True
        for attempt in range(1000):
            delay = float(rng.uniform(0.0, 1.1 * timing["after_ready"]))
            run = forked(cli_job(generate_args(model, names, out, n, batch_size), start_at),
                         delay if stats["kills"] < kills else None, log_file)
            stats["runs"] += 1
            stats["hung"] += run["hung"]
            if not run["killed"] and run["exit"] != 0:
                failures.append(f"gen-{job_no} run {attempt}: exit {run['exit']} (see {log_file.name})")
                ok = False
                break
            stats["kills"] += run["killed"]
            try:
                got = generated(out)
            except StoreError as err:
                stats["unreadable"] += 1
                failures.append(f"gen-{job_no} after run {attempt}: unreadable: {err}")
                ok = False
                break
            shard_rows = 0 if got["shard"] is None else len(got["shard"]["names"])
            if run["killed"]:
                at_kill.append(shard_rows)
            if shard_rows < previous:
                stats["lost_rows"] += previous - shard_rows
                failures.append(f"gen-{job_no}: {previous - shard_rows} committed shard row(s) lost")
            if got["shard"] is not None and not same(got["shard"], reference["shard"], shard_rows):
                stats["not_a_prefix"] += 1
                keys = list(zip(got["shard"]["names"], got["shard"]["prompts"], got["shard"]["seeds"]))
                stats["duplicated_rows"] += len(keys) - len(set(keys))
                failures.append(f"gen-{job_no} after run {attempt}: shard rows are not the reference's first "
                                f"{shard_rows}")
                ok = False
                break
            if got["store"] is not None and not same(got["store"], reference["store"]):
                stats["different_store"] += 1
                failures.append(f"gen-{job_no} after run {attempt}: image.h5 differs from the reference")
            bad = [p for p, data in got["pngs"].items() if reference["pngs"].get(p) != data]
            if bad:
                stats["different_pngs"] += len(bad)
                failures.append(f"gen-{job_no} after run {attempt}: {len(bad)} PNG(s) differ from the reference "
                                f"({bad[0]})")
                ok = False
                break
            litter_seen.update(got["litter"])
            previous = shard_rows
            if not run["killed"]:
                stats["jobs_finished"] += 1
                for key in ("store", "shard", "csv", "record"):
                    if got[key] is None:
                        equal = False
                    elif key in ("store", "shard"):
                        equal = same(got[key], reference[key])
                    else:
                        equal = got[key] == reference[key]
                    if not equal:
                        stats[f"different_{key}"] += 1
                        failures.append(f"gen-{job_no}: finished {key} differs from the reference")
                if set(got["pngs"]) != set(reference["pngs"]):
                    failures.append(f"gen-{job_no}: finished with {len(got['pngs'])} PNGs, expected "
                                    f"{len(reference['pngs'])}")
                stats["jobs_with_leftovers"] += bool(got["litter"])
                break
        if ok:
            shutil.rmtree(out, ignore_errors=True)
    png_stats: Counter = Counter()
    for k in png_kills if png_kills is not None else range(1, rows + 1):
        out = root / f"png-{k}"
        shutil.rmtree(out, ignore_errors=True)
        first = forked(png_kill_job(generate_args(model, names, out, n, batch_size), k), None, log_file)
        png_stats["kills"] += first["exit"] == -signal.SIGKILL
        second = forked(cli_job(generate_args(model, names, out, n, batch_size), start_at), None, log_file)
        if first["exit"] != -signal.SIGKILL or second["exit"] != 0:
            failures.append(f"png-{k}: exits {first['exit']}, {second['exit']} (see {log_file.name})")
            continue
        got = generated(out)
        bad = [key for key in ("store", "shard") if not same(got[key], reference[key])]
        bad += [key for key in ("csv", "record", "pngs") if got[key] != reference[key]]
        if bad:
            png_stats["different"] += 1
            failures.append(f"png-{k}: killed after PNG {k} and resumed: {bad} differ from the reference")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return {"job": f"namesae generate, tiny Kandinsky 2.2 (32x32), {len(GEN_NAMES)} names x {len(TEMPLATES)} "
                   f"templates x {n} images = {rows} rows, --batch-size {batch_size}, one thread; kill clock from "
                   f"the first generate_shard call (after model loading)",
            "reference_job_seconds": round(timing["after_ready"], 3), "kills": stats["kills"] + png_stats["kills"],
            "random_kills": stats["kills"], "runs": stats["runs"],
            "jobs": job_no, "jobs_finished": stats["jobs_finished"], "hung": stats["hung"],
            "lost_rows": stats["lost_rows"], "duplicated_rows": stats["duplicated_rows"],
            "unreadable_after_kill": stats["unreadable"], "not_a_prefix": stats["not_a_prefix"],
            "png_boundary_kills": png_stats["kills"], "png_boundary_jobs_different": png_stats["different"],
            "different_pngs": stats["different_pngs"],
            **{f"different_{k}": stats[f"different_{k}"] for k in ("store", "shard", "csv", "record")},
            "rows_per_job": rows, "shard_rows_at_kill_quartiles":
                np.percentile(at_kill, [0, 25, 50, 75, 100]).tolist() if at_kill else [],
            "jobs_with_leftovers": stats["jobs_with_leftovers"],
            "leftover_kinds": sorted({re.sub(r"tmp-\d+", "tmp-PID", Path(x).name) for x in litter_seen}),
            "seconds": round(time.perf_counter() - t0, 1), "failures": failures[:20]}


# ---- byte flips and truncations --------------------------------------------------------------------------------
def run_cli(args: list[str]) -> tuple[int, str, bool]:
    """`namesae ARGS` in this process: (exit code, stderr, whether an exception escaped as a traceback)."""
    from namesae.cli import main

    err, old = io.StringIO(), sys.argv
    sys.argv = ["namesae", *args]
    code, escaped = 0, False
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Exception:  # noqa: BLE001 - the campaign counts tracebacks
        err.write(traceback.format_exc())
        code, escaped = 1, True
    finally:
        sys.argv = old
    return code, err.getvalue(), escaped


def _flip_stores(root: Path, names: int, seed: int) -> tuple[dict[str, tuple[Path, dict[str, Any]]], Path, dict]:
    """Stores to damage: one file (as a finished job leaves it) and a base with committed segments (a killed one)."""
    preload()
    nf = names_file(root, names)
    full = root / "flip-full.h5"
    remove_store(full)
    timing = forked(embed_job(embed_args(nf, full, 16)), None, root / "flip.log")
    if timing["exit"] != 0:
        raise RuntimeError(f"embed for the flip campaign failed (see {root / 'flip.log'})")
    ref = read_all(full)
    parted = root / "flip-parted.h5"
    remove_store(parted)
    half = len(ref["names"]) // 2
    with EmbeddingStore.open(full) as s:
        attrs = {k: v for k, v in s.attrs.items() if k not in ("format_version", "space", "dim", "normalized",
                                                                 "rows_committed")}
    write_store(parted, ref["x"][:half], ref["names"][:half], ref["prompts"][:half], ref["kinds"][:half],
                ref["space"], normalized=True, seeds=ref["seeds"][:half], images=ref["images"][:half],
                attrs=attrs, chunk_rows=16)

    def append_then_die(ready: Callable[[], None]) -> None:
        store = EmbeddingStore.open(parted, "a")
        ready()
        step = max(1, (len(ref["names"]) - half) // 5)
        for a in range(half, half + 3 * step, step):  # three committed segments, then a kill (no close, no fold)
            store.append(ref["x"][a:a + step], ref["names"][a:a + step], ref["prompts"][a:a + step], "text",
                         seeds=ref["seeds"][a:a + step], images=ref["images"][a:a + step])
        os.kill(os.getpid(), signal.SIGKILL)

    forked(append_then_die, None, root / "flip.log")
    return {"single_file": (full, ref), "segments": (parted, read_all(parted))}, nf, ref


def mutate(file: Path, rng: np.random.Generator) -> str:
    """Flip bytes in or truncate one file, in place; return what was done."""
    data = bytearray(file.read_bytes())
    if not data:
        return "empty"
    kind = rng.choice(["flip1", "flip2", "flip8", "run64", "truncate"], p=[0.3, 0.15, 0.15, 0.2, 0.2])
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        file.write_bytes(bytes(data[:cut]))
        return f"truncate to {cut} of {len(data)}"
    if kind == "run64":
        at = int(rng.integers(0, max(1, len(data) - 64)))
        positions = list(range(at, min(len(data), at + 64)))
    else:
        positions = rng.choice(len(data), size=min(len(data), int(kind[4:])), replace=False).tolist()
    for p in positions:
        data[p] ^= int(rng.integers(1, 256))
    file.write_bytes(bytes(data))
    return f"{kind} at {positions[0]} of {len(data)}"


def one_line_refusal(err: StoreError, files: list[Path]) -> bool:
    """A refusal is one line that names the store or one of its files."""
    text = str(err)
    return "\n" not in text and any(str(f) in text or f.name in text for f in files)


def campaign_store_flips(root: Path, trials: int = 1000, seed: int = 0, names: int = 60,
                         cli_every: int = 10) -> dict[str, Any]:
    """Random byte flips and truncations of store files: refused in one line, or bit-identical results."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 3)
    stores, nf, full_ref = _flip_stores(root, names, seed)
    outcome: Counter = Counter()
    by_target: Counter = Counter()
    failures: list[str] = []
    cli: Counter = Counter()
    t0 = time.perf_counter()
    trial_path = root / "trial.h5"
    for t in range(trials):
        variant = ("single_file", "segments")[t % 2]
        src, expected = stores[variant]
        files = copy_store(src, trial_path)
        target = files[int(rng.integers(len(files)))]
        what = mutate(target, rng)
        label = "base" if target == trial_path else ("manifest" if target.suffix == ".json" else "segment")
        try:
            got = read_all(trial_path)
            result = "identical" if same(got, expected) else "DIFFERENT"
        except StoreError as err:
            result = "refused" if one_line_refusal(err, files) else "refused_badly"
            if result == "refused_badly":
                failures.append(f"trial {t} {variant} {label} {what}: refusal not one line naming the file: {err}")
        except Exception as err:  # noqa: BLE001 - anything but StoreError is a failure
            result = "crash"
            failures.append(f"trial {t} {variant} {label} {what}: {type(err).__name__}: {err}")
        if result == "DIFFERENT":
            failures.append(f"trial {t} {variant} {label} {what}: read silently different rows")
        outcome[result] += 1
        by_target[f"{label}:{result}"] += 1
        if cli_every and t % cli_every == 0:
            copy_store(src, trial_path)
            mutate(files[files.index(target)] if target in files else trial_path, np.random.default_rng(t))
            code, err_text, escaped = run_cli(embed_args(nf, trial_path, 16))
            lines = [ln for ln in err_text.strip().splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("namesae: error: ")]
            if escaped or "Traceback" in err_text:
                cli["traceback"] += 1
                failures.append(f"trial {t} cli: traceback: {err_text.strip().splitlines()[-1:]}")
            elif code == 2 and len(errors) == 1:
                cli["exit2_one_line"] += 1
            elif code == 0:
                try:
                    ok = same(read_all(trial_path), full_ref, atol=1e-6)
                    cli["exit0_identical" if ok else "exit0_DIFFERENT"] += 1
                    if not ok:
                        failures.append(f"trial {t} cli: exit 0 but the store differs from the reference")
                except StoreError:
                    cli["exit0_then_refused_on_read"] += 1
            else:
                cli[f"exit{code}"] += 1
                failures.append(f"trial {t} cli: exit {code}, stderr {lines[-2:]}")
    remove_store(trial_path)
    return {"trials": trials, "stores": {k: {"rows": len(v[1]["names"]),
                                             "files": len(copy_store(v[0], trial_path))} for k, v in stores.items()},
            "outcomes": dict(outcome), "by_target": dict(sorted(by_target.items())), "cli_trials": sum(cli.values()),
            "cli_outcomes": dict(cli), "seconds": round(time.perf_counter() - t0, 1), "failures": failures[:20]}


# ---- damaged SAE folders, training state and result files -----------------------------------------------------
# Each damaged copy is run through the real command line (`namesae.cli.main`, in process) and classified:
#   refused    exit 2 with exactly one `namesae: error:` line on stderr (what we want for damage that matters)
#   identical  exit 0 and an output bit-identical to the undamaged run (damage that changes nothing)
#   WRONG      exit 0 with different output (silently wrong numbers: must never happen)
#   CRASH      a traceback, another exit code, or more than one error line (must never happen)
# Targets: an SAE folder read by `namesae features` (output: features.json/.csv), a training state resumed by
# `namesae train` (output: the finished SAE's weights and metrics), and identity.json / features.json read by
# `namesae report` (output: the site's pages). `tests/test_fuzz.py` runs a smaller one.
OUTCOMES = ("refused", "identical", "WRONG", "CRASH")
DAMAGE_TRAIN_TOML = """[train]
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


def run_cli_result(args: list[str]) -> CliResult:
    """Run `namesae ARGS` in this process (as the console script would), capturing stderr and any traceback."""

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
            except Exception:  # noqa: BLE001 - the campaign counts tracebacks
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


def _check_fixture(result: CliResult, what: str) -> None:
    if result.code != 0 or result.traceback:
        raise RuntimeError(f"fixture step {what} failed: {result.code}\n{result.stderr}\n{result.traceback}")


def build_fixture(root: Path) -> Fixture:
    """Write the store, a finished SAE, a killed run with saved state, and a run folder of result files."""
    import torch

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    store = planted_store(root / "store.h5")
    config = root / "train.toml"
    config.write_text(DAMAGE_TRAIN_TOML)
    fx = Fixture(root, store, root / "sae", config, root / "partial", root / "run")
    _check_fixture(run_cli_result(["train", "--store", str(store), "--out", str(fx.sae), "--config", str(config),
                    "--no-progress"]), "train")
    from namesae.config import load_config
    from namesae.sae import TrainConfig, train_sae

    cfg = load_config(TrainConfig, config, "train")
    train_sae(store, cfg, fx.partial, stop_after_steps=20)  # state saved at steps 8 and 16, then "killed"
    assert (fx.partial / "state" / "state.json").is_file()
    fx.run.mkdir()
    _check_fixture(run_cli_result(["identity", "--sae", str(fx.sae), "--store", str(store), "--out", str(fx.run),
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
        result = run_cli_result(["features", "--sae", str(fx.sae), "--store", str(fx.store), "--out", str(out),
                          "--no-progress"])
        output = _folder_bytes(out) if out.is_dir() else None
    elif target == "state":
        work = fx.root / "partial-work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(fx.partial, work)
        result = run_cli_result(["train", "--store", str(fx.store), "--out", str(work), "--config", str(fx.config),
                          "--no-progress"])
        # the resumed SAE: weights and held-out metrics (timings and provenance left out)
        output = None
        if (work / "sae_weights.safetensors").is_file():
            metrics = json.loads((work / "metrics.json").read_text())
            keep = {k: v for k, v in metrics.items() if "second" not in k and k not in ("resumed_at_step",
                                                                                         "steps_this_call")}
            output = (work / "sae_weights.safetensors").read_bytes() + json.dumps(keep, sort_keys=True).encode()
    elif target == "result":
        result = run_cli_result(["report", "--run", str(fx.run), "--out", str(out)])
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


def sae_damage(fx: Fixture, cases: dict[str, int], seed: int = 0) -> dict[str, Any]:
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


def campaign_sae_damage(root: Path, cases: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Byte flips, truncations and deletions of SAE folders (half the cases), training state and result files (a
    quarter each), each run through the command that reads it: refused in one line or bit-identical output."""
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    fx = build_fixture(root / "campaign")
    split = {"sae": cases // 2, "state": cases // 4, "result": cases - cases // 2 - cases // 4}
    report = sae_damage(fx, split, seed)
    failures = report.pop("failures")
    return {**report, "seconds": round(time.perf_counter() - t0, 1), "failures": failures[:20]}


CAMPAIGNS: dict[str, Callable[..., dict[str, Any]]] = {
    # Kill campaigns fork from this process: they come first, before anything here runs a torch kernel (the flip
    # and damage campaigns run the CLI in process, and a forked child of a process with OpenMP threads can hang).
    "store_kills_api": campaign_store_kills_api,
    "store_kills_embed": campaign_store_kills_embed,
    "train_kills": campaign_train_kills,
    "generate_kills": campaign_generate_kills,
    "store_flips": campaign_store_flips,
    "sae_damage": campaign_sae_damage,
}
KILL_CAMPAIGNS = ("store_kills_api", "store_kills_embed", "train_kills", "generate_kills")


def main(argv: list[str] | None = None) -> None:
    """Run the chosen campaigns and save bench/results/reliability.json (or --name)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import save

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills-api", type=int, default=400, help="SIGKILLs of the raw append loop")
    parser.add_argument("--kills-embed", type=int, default=100, help="SIGKILLs of `namesae embed`")
    parser.add_argument("--kills-train", type=int, default=300, help="SIGKILLs of `namesae train` (TopK + JumpReLU)")
    parser.add_argument("--kills-generate", type=int, default=100, help="SIGKILLs of `namesae generate`")
    parser.add_argument("--flips", type=int, default=1000, help="damaged store copies")
    parser.add_argument("--sae-cases", type=int, default=1500, help="damaged SAE folders, states and result files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=sorted(CAMPAIGNS), help="run only these campaigns")
    parser.add_argument("--name", default="reliability", help="result file bench/results/NAME.json")
    args = parser.parse_args(argv)
    counts = {"store_kills_api": args.kills_api, "store_kills_embed": args.kills_embed,
              "train_kills": args.kills_train, "generate_kills": args.kills_generate, "store_flips": args.flips,
              "sae_damage": args.sae_cases}
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="namesae-reliability-") as tmp:
        for name, run_campaign in CAMPAIGNS.items():
            if (args.only and name not in args.only) or counts[name] <= 0:
                continue
            print(f"{name} ...", flush=True)
            results[name] = run_campaign(Path(tmp) / name, counts[name], args.seed)
            summary = {k: v for k, v in results[name].items() if k != "failures"}
            print(f"{name}: {json.dumps(summary)} failures={len(results[name]['failures'])}", flush=True)
    ok = all(not r["failures"] for r in results.values())
    kills = {name: results[name].get("kills", 0) for name in KILL_CAMPAIGNS if name in results}
    path = save(args.name, {"ok": ok, "kills": {**kills, "total": sum(kills.values())},
                            "seconds": round(time.perf_counter() - t0, 1), "campaigns": results})
    print(f"{'all claims held' if ok else 'FAILURES'}; {sum(kills.values())} kills; wrote {path}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
