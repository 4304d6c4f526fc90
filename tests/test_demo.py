"""`namesae demo`: a small run end to end, its scorecard computed from its own outputs, stable and documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from namesae.demo import SECTIONS, demo_settings, load_demo_settings
from namesae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(small_demo_run):
    """The small demo run of conftest.py (shared with test_house.py, so the suite runs it once)."""
    return small_demo_run


def test_shipped_demo_config_equals_the_built_in_defaults():
    assert load_demo_settings(ROOT / "configs" / "demo.toml") == demo_settings()


def test_small_demo_writes_every_output_and_prints_the_scorecard(small_run):
    run, output = small_run
    assert "namesae demo scorecard" in output and "scorecard.json" in output and "report:" in output
    from namesae.runs import read_run

    manifest = read_run(run)
    for key, artefact in manifest.artefacts.items():
        assert artefact.path.exists(), (key, artefact.path)
    assert {"identity", "features", "sae", "image_store", "icons", "row_images", "dino_store", "steer"} <= \
        set(manifest.artefacts)
    assert manifest.decoder["model"] == f"tiny:{run / 'steer' / 'tiny_kandinsky22'}"
    assert (run / "report" / "index.html").is_file()
    assert (run / "steer" / "side_by_side.png").is_file()
    card = json.loads((run / "scorecard.json").read_text())
    assert card["format_version"] == 1
    keys = [line["key"] for line in card["lines"]]
    assert len(keys) == len(set(keys))
    for line in card["lines"]:
        assert set(line) == {"key", "value", "target", "pass", "what"}
        assert (line["target"] is None) == (line["pass"] is None)
    assert card["passed"] + card["failed"] == sum(line["pass"] is not None for line in card["lines"])
    assert {"synth", "train", "identity", "groups", "emergence", "steer", "basis_search", "report"} <= set(
        card["seconds"])


def test_the_demo_report_has_a_page_per_name_and_every_link_resolves(small_run):
    run, _ = small_run
    site = run / "report"
    identity = json.loads((run / "identity.json").read_text())["names"]
    pages = sorted(site.glob("names/*.html"))
    assert len(pages) == len(identity) and list(site.glob("features/*.html"))
    index = (site / "index.html").read_text()
    assert "identity.dedicated_recall" in index  # the scorecard is on the index
    for page in [site / "index.html", *pages, *sorted(site.glob("features/*.html"))[:50]]:
        for link in re.findall(r'(?:href|src)="([^"#]+)', page.read_text()):
            assert (page.parent / link).exists(), f"{page.name} links to missing {link}"
    dedicated = next(r["name"] for r in identity if r["dedicated"])
    page = next(p.read_text() for p in pages if f"<h1>{dedicated}</h1>" in p.read_text())
    assert "Identity features" in page and "Emergence" in page and "Name basis" in page


def test_scorecard_numbers_are_recomputed_from_the_run_outputs(small_run):
    """The identity lines follow from identity.json and truth.json alone; nothing is copied from the truth."""
    run, _ = small_run
    lines = {line["key"]: line for line in json.loads((run / "scorecard.json").read_text())["lines"]}
    truth = {r["name"]: r for r in json.loads((run / "world" / "truth.json").read_text())["names"]}
    found = {r["name"] for r in json.loads((run / "identity.json").read_text())["names"] if r["dedicated"]}
    planted = {n for n, r in truth.items() if r["dedicated"]}
    precision = len(found & planted) / len(found) if found else 0.0
    assert lines["identity.dedicated_precision"]["value"] == pytest.approx(precision, abs=1e-4)
    assert lines["identity.dedicated_recall"]["value"] == pytest.approx(len(found & planted) / len(planted), abs=1e-4)
    metrics = json.loads((run / "sae" / "metrics.json").read_text())
    assert lines["sae.explained_variance"]["value"] == pytest.approx(metrics["explained_variance"], abs=1e-4)
    assert lines["world.dedicated"]["value"] == len(planted) == 8


def test_every_scorecard_key_is_documented_in_the_readme(small_run):
    run, _ = small_run
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The demo scorecard"):]
    documented = set(re.findall(r"`([a-z_]+(?:\.[a-z0-9_]+)+)`", section))
    keys = {line["key"] for line in json.loads((run / "scorecard.json").read_text())["lines"]}
    assert keys <= documented, sorted(keys - documented)


def test_bad_demo_configs_are_refused_with_a_clear_line(tmp_path):
    from typer.testing import CliRunner

    from namesae.cli import app

    bad = tmp_path / "bad.toml"
    bad.write_text("[sae]\nk = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown section\(s\) \['sae'\]"):
        load_demo_settings(bad)
    bad.write_text("[synth]\nn_dedicated = 500\n")
    with pytest.raises(ConfigError, match="n_dedicated"):
        load_demo_settings(bad)
    bad.write_text("[emergence_train]\narchitecture = \"gated\"\n")
    with pytest.raises(ConfigError, match="unknown architecture"):
        load_demo_settings(bad)
    assert set(SECTIONS) >= {"demo", "synth", "train"}
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "r"), "--config", str(tmp_path / "nowhere.toml")])
    assert result.exit_code != 0
