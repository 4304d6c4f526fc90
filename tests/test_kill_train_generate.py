"""SIGKILLs at random moments of `namesae train` and `namesae generate` (30 in all), each job rerun until it
finishes: every state a kill leaves is intact, no row is lost or duplicated, and every resumed result equals the
uninterrupted run bit for bit. `bench/reliability.py` runs the same campaigns with hundreds of kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
SRC = Path(__file__).resolve().parents[1] / "src"


def campaign(call: str, tmp_path: Path) -> dict:
    """Run `reliability.<call>` in a fresh interpreter (the campaigns fork their jobs, and forking a process
    that already ran torch kernels on several threads can hang the child) and return its result."""
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        sys.path.insert(0, {str(BENCH)!r})
        import reliability
        out = reliability.{call.format(root=f"Path({str(tmp_path)!r})")}
        print("RESULT " + json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_sigkills_inside_namesae_train_resume_to_the_uninterrupted_sae(tmp_path):
    out = campaign("campaign_train_kills({root}, kills=22, seed=1, steps=200)", tmp_path)
    assert out["failures"] == [], out["failures"]
    assert out["kills"] >= 22
    for arch in ("topk", "jumprelu"):
        r = out["architectures"][arch]
        assert r["kills"] >= 11 and r["jobs_finished"] >= 1 and r["hung"] == 0
        assert r["damaged_state"] == 0
        for what in ("weights", "cfg", "checkpoints", "metrics", "train_log", "info"):
            assert r[f"different_{what}"] == 0, (arch, what)
        assert r["state_step_at_kill_quartiles"][-1] > 0  # some kills landed after a state was saved


def test_sigkills_inside_namesae_generate_resume_to_the_uninterrupted_images_and_rows(tmp_path):
    # 7 random kills, plus 1 kill right after the first PNG of a batch (before the fix, the resumed run drew
    # the rest of that batch alone and got other pixels than the uninterrupted run).
    out = campaign("campaign_generate_kills({root}, kills=7, seed=1, png_kills=(1,))", tmp_path)
    assert out["failures"] == [], out["failures"]
    assert out["random_kills"] >= 7 and out["png_boundary_kills"] == 1 and out["kills"] >= 8
    assert out["jobs_finished"] >= 1 and out["hung"] == 0
    assert out["lost_rows"] == out["duplicated_rows"] == out["unreadable_after_kill"] == out["not_a_prefix"] == 0
    assert out["different_pngs"] == out["png_boundary_jobs_different"] == 0
    for what in ("store", "shard", "csv", "record"):
        assert out[f"different_{what}"] == 0, what
