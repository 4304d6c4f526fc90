"""The report deletes nothing it did not write, and never follows a store's image paths out of the store's folder."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from namesae.errors import NamesaeError
from namesae.report import build_report
from namesae.report.site import REPORT_MARKER
from namesae.store import write_store

sys.path.insert(0, str(Path(__file__).parent))
from test_report import make_run, save_features, save_identity


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(monkeypatch, capsys, args: list[str]) -> tuple[int, list[str]]:
    from namesae.cli import main

    monkeypatch.setattr(sys, "argv", ["namesae", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def small_run(root: Path) -> Path:
    """A run folder with identity.json and features.json only (no images: the report is quick)."""
    root.mkdir(parents=True)
    save_identity(root / "identity.json", [{"name": "Ada", "n_rows": 1, "dedicated": True, "dedication": 0.9,
                                            "identity_features": [(0, 0.9, 1.0)]}])
    save_features(root / "features.json", [{"feature": 0, "label": "x"}], 1)
    (root / "metrics.json").write_text(json.dumps({"explained_variance": 0.9}))
    (root / "run.json").write_text(json.dumps({"identity": "identity.json"}))
    return root


def test_report_out_on_the_run_folder_is_refused_and_deletes_nothing(tmp_path, monkeypatch, capsys):
    run = small_run(tmp_path / "run")
    before = snapshot(run)
    code, err = run_cli(monkeypatch, capsys, ["report", "--run", str(run), "--out", str(run)])
    assert code == 2 and len(err) == 1 and err[0].startswith("namesae: error: --out") and "run folder" in err[0]
    assert snapshot(run) == before
    code, err = run_cli(monkeypatch, capsys, ["report", "--run", str(run), "--out", str(tmp_path)])
    assert code == 2 and len(err) == 1 and "above it" in err[0]
    assert snapshot(run) == before


def test_report_out_dot_in_a_folder_of_files_deletes_nothing(tmp_path, monkeypatch, capsys):
    run = small_run(tmp_path / "run")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "sub").mkdir()
    (work / "sub" / "data.csv").write_text("a,b\n")
    before, run_before = snapshot(work), snapshot(run)
    monkeypatch.chdir(work)
    code, err = run_cli(monkeypatch, capsys, ["report", "--run", str(run), "--out", "."])
    assert code == 2 and len(err) == 1 and "not a namesae report" in err[0] and "nothing was deleted" in err[0]
    assert snapshot(work) == before and snapshot(run) == run_before
    monkeypatch.chdir(run)  # `.` = the run folder
    code, err = run_cli(monkeypatch, capsys, ["report", "--run", ".", "--out", "."])
    assert code == 2 and len(err) == 1 and snapshot(run) == run_before


def test_report_refuses_a_non_report_folder_and_replaces_its_own(tmp_path):
    run = small_run(tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    with pytest.raises(NamesaeError, match="not a namesae report"):
        build_report(run, other)
    assert (other / "keep.txt").read_text() == "keep"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NamesaeError, match="not a folder"):
        build_report(run, tmp_path / "afile")
    site = tmp_path / "site"
    build_report(run, site)
    assert (site / REPORT_MARKER).is_file() and (site / "index.html").is_file()
    (site / "stale.html").write_text("old")
    build_report(run, site)  # its own report: replaced whole
    assert not (site / "stale.html").exists() and (site / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    build_report(run, tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "index.html").is_file()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]  # none left behind
    build_report(run)  # default RUN/report, twice
    build_report(run)
    assert (run / "report" / REPORT_MARKER).is_file()


def test_hostile_image_paths_never_leave_the_store_folder(tmp_path, monkeypatch, caplog):
    run = make_run(tmp_path / "run")
    world = run / "world"
    secret = tmp_path / "secret.png"  # a real image outside the store's folder
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(secret)
    (world / "images" / "link.png").symlink_to(secret)
    (world / "images" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    hostile = ["../../etc/passwd", "../../../../../../../../etc/passwd", "/etc/passwd", str(secret),
               os.path.relpath(secret, world), "images/link.png", "images/dirlink/secret.png"]
    rng = np.random.default_rng(1)
    names, paths = [], []
    for i in range(8):  # every name but the first has only hostile images; the first has real ones
        for k in range(len(hostile)):
            names.append(f"Name {i}")
            paths.append(f"images/{i}_{k % 4}.png" if i == 0 else hostile[k])
    write_store(world / "image.h5", rng.normal(size=(len(names), 8)), names, ["a photo"] * len(names), "image",
                space="test:image", seeds=list(range(len(names))), images=paths)
    opened: list[str] = []
    real_open = Image.open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    with caplog.at_level("WARNING"):
        result = build_report(run, tmp_path / "site")
    root = world.resolve()
    assert opened and all(Path(p).resolve().is_relative_to(root) for p in opened)
    site = result.index.parent
    for page in site.rglob("*.html"):
        for link in __import__("re").findall(r'(?:href|src)="([^"#]+)', page.read_text()):
            target = (page.parent / link).resolve()
            assert target.is_relative_to(site.resolve()) or target.is_relative_to(root), (page, link)
    assert any("outside the store's folder" in r.getMessage() for r in caplog.records)


def test_icon_and_row_image_paths_never_leave_their_folder(tmp_path):
    from namesae.steer.icons import IconIndex, RowImages

    (tmp_path / "icons").mkdir()
    (tmp_path / "secret.png").write_bytes(b"not yours")
    (tmp_path / "icons" / "f1.png").write_bytes(b"png")
    index = IconIndex(tmp_path / "icons", {}, {}, {1: {"file": "f1.png"}, 2: {"file": "../secret.png"},
                                                    3: {"file": "/etc/passwd"}}, {"g": {"file": "../secret.png"}})
    index.save()
    back = IconIndex.load(tmp_path / "icons")
    assert back.feature_file(1) == (tmp_path / "icons" / "f1.png").resolve()
    assert back.feature_file(2) is None and back.feature_file(3) is None and back.group_file("g") is None
    rows = RowImages(tmp_path / "icons", "s.h5", {}, {0: {"file": "../secret.png"}, 1: {"file": "f1.png"}})
    assert rows.file(0) is None and rows.file(1) is not None
