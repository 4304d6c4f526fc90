"""The house rules of DESIGN.md, measured on the source and on real outputs: one-way imports, one atomic-write
helper that keeps the umask, result files that round-trip through their owners' loaders, and a report built from a
real demo run that shows its phase map and every scorecard line."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
from pathlib import Path

import pytest

from namesae import io
from namesae.errors import NamesaeError

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "namesae"
ANALYSES = ("identity", "features", "groups", "emergence", "steer", "basis", "search", "report")
# The store package keeps its own protocol on purpose: segment files and the manifest are fsynced, renamed, and
# the folder fsynced (namesae.store.segments). Every other file writes through namesae.io.
OWN_PROTOCOL = ("store/",)


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    """module -> the namesae modules it imports (module-level statements only, or every import, lazy ones too).

    `from namesae.x import y` counts as importing namesae.x.y when that is a module, else namesae.x."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if is_package else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in tree.body if top_level_only else ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _without_root(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # namesae/__init__ is the notebook API: it re-exports every stage, and stages import its __version__.
    return {m: {w for w in e if w != "namesae"} for m, e in graph.items()}


def test_nothing_outside_the_cli_imports_the_cli():
    graph = import_graph(top_level_only=False)
    importers = sorted(m for m, e in graph.items() if not m.startswith("namesae.cli") and m != "namesae.__main__"
                       and any(w == "namesae.cli" or w.startswith("namesae.cli.") for w in e))
    assert importers == []


def test_module_level_imports_have_no_cycles():
    assert cycles(_without_root(import_graph(top_level_only=True))) == []


def test_imports_have_no_cycles_even_inside_functions():
    assert cycles(_without_root(import_graph(top_level_only=False))) == []


def test_no_analysis_module_imports_the_synthetic_world():
    graph = import_graph(top_level_only=False)
    importers = sorted(m for m, e in graph.items() if m.split(".")[1:2] and m.split(".")[1] in ANALYSES
                       and any(w == "namesae.synth" or w.startswith("namesae.synth.") for w in e))
    assert importers == [], "truth scoring belongs in namesae.synth.score, which imports the analyses"


def test_scorers_import_the_analyses_and_the_world_imports_no_scorer():
    graph = import_graph(top_level_only=False)
    scorers = {m for m in graph if m.startswith("namesae.synth.score.")}
    assert {"namesae.synth.score.identity", "namesae.synth.score.emergence", "namesae.synth.score.steer",
            "namesae.synth.score.basis", "namesae.synth.score.search"} <= scorers
    world = [m for m in graph if m.startswith("namesae.synth") and not m.startswith("namesae.synth.score")]
    assert sorted(m for m in world if any(w.startswith("namesae.synth.score") for w in graph[m])) == []


MAX_LINES = 650  # DESIGN.md: split a module into a package when it outgrows ~600 lines


def test_no_module_is_over_650_lines():
    long = {f"{name} ({path.relative_to(SRC)})": n for name, (path, _) in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _raw_atomic_writes() -> dict[str, list[int]]:
    """Files outside namesae/io.py that rename or make temporary files themselves: file -> line numbers."""
    pattern = re.compile(r"\bos\.replace\(|\bos\.rename\(|\bmkstemp\(|\bmkdtemp\(")
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "io.py":
            continue
        lines = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
        if lines:
            found[rel] = lines
    return found


def test_one_atomic_write_helper_lives_in_io():
    found = _raw_atomic_writes()
    ours = {f: n for f, n in found.items() if not f.startswith(OWN_PROTOCOL)}
    assert ours == {}, "write through namesae.io.atomic_file / atomic_write_* / atomic_dir instead"


# DESIGN/STYLE: one helper per job. Reading a store through an SAE is namesae.sae's job.
CODE_READERS = ("check_space", "iter_codes", "iter_sparse_codes", "sparse_encode", "topk_sparse_k",
                "encode_store", "SparseEncoder")


def test_one_space_check_and_every_code_iterator_live_in_sae_codes():
    homes: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in CODE_READERS:
                homes.setdefault(node.name, []).append(path.relative_to(PACKAGE).as_posix())
    assert homes == {name: ["sae/codes.py"] for name in CODE_READERS}


# ---- file modes -------------------------------------------------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    io.umask.cache_clear()
    yield
    os.umask(old)
    io.umask.cache_clear()


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root.parent).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")]}


def test_report_files_are_0644_and_folders_0755_under_umask_022(tmp_path, umask_022):
    from test_report import make_run

    from namesae.report import build_report

    result = build_report(make_run(tmp_path / "run"), tmp_path / "site")
    modes = _modes(result.index.parent)
    assert any(k.endswith(".png") for k in modes) and "site/.namesae-report" in modes
    wrong = {k: oct(v) for k, v in modes.items() if v != (0o755 if (tmp_path / k).is_dir() else 0o644)}
    assert wrong == {}


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    io.umask.cache_clear()
    try:
        text = io.atomic_write_text(tmp_path / "a.txt", "x")
        data = io.atomic_write_json(tmp_path / "b.json", {"nan": float("nan"), "n": __import__("numpy").int64(3)})
        with io.atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "c.txt").write_text("y")
        with io.atomic_file(tmp_path / "plot.png") as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_bytes(b"png")
    finally:
        os.umask(old)
        io.umask.cache_clear()
    assert {stat.S_IMODE(p.stat().st_mode) for p in (text, data, tmp_path / "plot.png")} == {0o640}
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750
    assert json.loads(data.read_text()) == {"nan": None, "n": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "folder", "plot.png"]  # no temp left


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = io.atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), io.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), io.atomic_dir(tmp_path / "dir") as tmp:
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# ---- result files round-trip through their owners ----------------------------------------------------------------
def test_emergence_round_trips_and_another_format_version_is_refused_with_one_line(tmp_path):
    from test_report import emergence_result

    from namesae.emergence import EmergenceResult

    result = emergence_result(["Ann Lee", "Bo"])
    path = result.save(tmp_path / "emergence.json", meta={"series": "s"}, score={"x": 1.0})
    back = EmergenceResult.load(path)
    assert back.to_dict() == result.to_dict() and back.config == result.config
    assert back.phase_matrix().tolist() == [[1, 2, 3], [1, 2, 3]]
    data = json.loads(path.read_text())
    for bad, field in [({**data, "format_version": 2}, "format_version"),
                       ({k: v for k, v in data.items() if k != "names"}, "names"),
                       ({**data, "names": [{**data["names"][0], "phase": [1, 2]}]}, "names[0].phase")]:
        path.write_text(json.dumps(bad))
        with pytest.raises(NamesaeError) as err:
            EmergenceResult.load(path)
        line = str(err.value)
        assert "\n" not in line and str(path) in line and f"'{field}'" in line and "re-run" in line


def test_scorecard_round_trips_and_another_format_version_is_refused_with_one_line(tmp_path):
    from namesae.demo import Scorecard
    from namesae.scorecard import load_scorecard, save_scorecard

    card = Scorecard()
    card.add("a.met", 0.9, at_least=0.5)
    card.add("b.missed", 0.1, at_least=0.5, what="misses")
    card.add("c.reported", "text")
    path = save_scorecard(card, tmp_path / "scorecard.json")
    back = load_scorecard(path)
    assert back.to_dict() == json.loads(json.dumps(card.to_dict()))
    assert [line.verdict for line in back.lines] == ["PASS", "MISS", ""] and (back.passed, back.failed) == (1, 1)
    path.write_text(json.dumps({**card.to_dict(), "format_version": 2}))
    with pytest.raises(NamesaeError, match=r"scorecard.json: field 'format_version' is 2, .* re-run `namesae demo`"):
        load_scorecard(path)


# ---- a report of a real demo run ---------------------------------------------------------------------------------
def test_report_of_a_real_demo_run_draws_its_phase_map_and_every_scorecard_line(small_demo_run, tmp_path):
    from namesae.emergence import EmergenceResult
    from namesae.report import build_report
    from namesae.scorecard import load_scorecard

    run, _ = small_demo_run
    result = build_report(run, tmp_path / "site")
    site = result.index.parent
    assert {"phase_map.png", "dedication_curves.png"} <= set(result.plots)
    assert (site / "plots" / "phase_map.png").stat().st_size > 1000
    index = result.index.read_text()

    emergence = EmergenceResult.load(run / "emergence" / "emergence.json")
    table = index[index.index('id="phase-map"'):]
    table = table[:table.index("</table>")]
    cells = re.findall(r'class="phase phase-(\d)"', table)
    shown = min(len(emergence.names), emergence.config.max_map_names)
    assert len(cells) == shown * len(emergence.labels)
    if shown == len(emergence.names):
        assert sorted(map(int, cells)) == sorted(p or 0 for n in emergence.names for p in n.phase)

    card = load_scorecard(run / "scorecard.json")
    rows = re.findall(r'<tr class="(pass|miss|)"><th>([^<]+)</th>.*?<td class="verdict">([A-Z]*)</td>', index)
    assert [key for _, key, _ in rows] == [line.key for line in card.lines]  # every line, in order
    for (cls, key, verdict), line in zip(rows, card.lines):
        assert verdict == line.verdict and cls == line.verdict.lower(), key
    assert sum(cls == "miss" for cls, _, _ in rows) == card.failed

    # A name page shows its dedication curve with both axes and its phase at every point.
    page = next(p.read_text() for p in site.glob("names/*.html") if "<h2>Emergence</h2>" in p.read_text())
    assert '<svg class="curve"' in page and emergence.axis in page and "dedication" in page


# ---- CLI conventions ---------------------------------------------------------------------------------------------
def test_namesae_version_and_python_m_namesae_help():
    import subprocess
    import sys

    from namesae import __version__

    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def namesae(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "namesae", *args], capture_output=True, text=True, check=False,
                              env=env, timeout=120)

    version = namesae("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"namesae {__version__}"
    help_ = namesae("--help")
    assert help_.returncode == 0 and "Usage: namesae" in help_.stdout and "--quiet" in help_.stdout


def test_verbosity_is_accepted_after_the_command_and_pipes_get_no_progress_bars(capsys):
    from namesae.cli import conventions, main

    assert conventions(["report", "--run", "r", "-v"], True) == ["-v", "report", "--run", "r"]
    assert conventions(["train", "-q", "--store", "s"], False) == ["-q", "train", "--no-progress", "--store", "s"]
    assert conventions(["train", "--progress"], False) == ["train", "--progress"]  # asked for: kept
    assert conventions(["report", "--run", "r", "--", "-v"], False) == ["report", "--no-progress", "--run", "r",
                                                                         "--", "-v"]
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run", "/nonexistent/run", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "run directory not found" in err[0]


def test_the_report_colours_phases_as_the_emergence_plots_do():
    from namesae.emergence import plots as emergence_plots
    from namesae.report import site

    assert site.PHASE_COLOURS == emergence_plots.PHASE_COLOURS and site.PHASE_LABELS == emergence_plots.PHASE_LABELS
