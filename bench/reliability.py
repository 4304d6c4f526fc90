"""Reliability campaigns: nothing lost, nothing silently wrong. Writes bench/results/reliability.json.

Each campaign is a function `campaign_<what>(root, count, seed, **options) -> dict` that returns its counts and a
`failures` list (empty when the claim held); `main` runs the selected ones. Store campaigns:

  store_kills_api    SIGKILL a raw `EmbeddingStore.append` loop (random batch sizes, tier merges, folds) at
                     uniform random moments; after every kill the store must open and validate, hold an exact
                     prefix of the rows (none lost, none duplicated, count never falling), and each finished job
                     must equal an uninterrupted reference bit for bit.
  store_kills_embed  the same with `namesae embed` (the CLI, tiny offline model) as the job.
  store_flips        random byte flips (1, 2, 8 bytes, or a 64-byte run) and truncations of a store's files
                     (single-file stores and stores with committed segments): every full read either raises one
                     StoreError line naming the file or returns bit-identical rows; a sample also runs
                     `namesae embed` (resume) on the damaged copy: exit 2 with one line, or exit 0 and a store
                     that is then bit-identical to the reference (or refused when read).

Children are forked from this process (fork is cheap; importing torch is not), so the kill moments fall inside
the job rather than inside interpreter start-up.

Usage: .venv/bin/python bench/reliability.py [--kills-api 400] [--kills-embed 100] [--flips 1000] [--seed 0]
       [--only store_flips ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
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


CAMPAIGNS: dict[str, Callable[..., dict[str, Any]]] = {
    "store_kills_api": campaign_store_kills_api,
    "store_kills_embed": campaign_store_kills_embed,
    "store_flips": campaign_store_flips,
}


def main() -> None:
    """Run the campaigns and save bench/results/reliability.json."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import save

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills-api", type=int, default=400)
    parser.add_argument("--kills-embed", type=int, default=100)
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=sorted(CAMPAIGNS), help="run only these campaigns")
    args = parser.parse_args()
    counts = {"store_kills_api": args.kills_api, "store_kills_embed": args.kills_embed, "store_flips": args.flips}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="namesae-reliability-") as tmp:
        # Kill campaigns fork; run them before anything here runs torch kernels (flips run embed in-process).
        for name in ("store_kills_api", "store_kills_embed", "store_flips"):
            if args.only and name not in args.only:
                continue
            print(f"{name} ...", flush=True)
            results[name] = CAMPAIGNS[name](Path(tmp) / name, counts[name], args.seed)
            summary = {k: v for k, v in results[name].items() if k != "failures"}
            print(f"{name}: {summary} failures={len(results[name]['failures'])}", flush=True)
    ok = all(not r["failures"] for r in results.values())
    path = save("reliability", {"ok": ok, "campaigns": results})
    print(f"{'all claims held' if ok else 'FAILURES'}; wrote {path}")


if __name__ == "__main__":
    main()
