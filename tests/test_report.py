"""The report shows every name as text, links names and features, and works in a real browser from file://."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from namesae.errors import NamesaeError
from namesae.report import build_report
from namesae.scorecard import save_scorecard
from namesae.store import write_store

INJECTION = "<script>alert(1)</script>"


def write_scorecard(path: Path) -> None:
    """A scorecard as `namesae demo` writes it, with a met target, a missed one and a line without a target."""
    from namesae.demo import Scorecard

    card = Scorecard()
    card.add("identity.dedicated_precision", 0.95, at_least=0.8, what="precision of dedicated names")
    card.add("identity.dedicated_recall", 0.5, at_least=0.8, what="recall of dedicated names")
    card.add("world.dedicated", 8, what="planted dedicated names")
    save_scorecard(card, path)


def emergence_result(names: list[str]):
    """An emergence result over three points, as `namesae emergence` builds it."""
    from namesae.emergence import ChangePoint, EmergenceConfig, EmergenceResult, NameSeries

    series = [NameSeries(n, [True] * 3, [0.1, 0.5, 0.9], [False, True, True], [1, 2, 3], [None] * 3, [None] * 3,
                         1, 2.0, ChangePoint(1, 0.1, 0.7, 0.6, 0.9), 2.0) for n in names]
    return EmergenceResult("samples seen", ["s1", "s2", "s3"], [1.0, 2.0, 3.0], [{"label": f"s{i}"} for i in (1, 2, 3)],
                           series, EmergenceConfig(), [False, False])


def save_identity(path: Path, records: list[dict]) -> Path:
    """identity.json written by its owner (IdentityResult.save) from short record specs: identity features as
    (feature, precision, recall), top features as (feature, share, label)."""
    from namesae.identity.config import IdentityConfig
    from namesae.identity.result import IdentityFeature, IdentityRecord, IdentityResult, TopFeature

    out = []
    for r in records:
        r = dict(r)
        ids = [IdentityFeature(f, p, rc, p) for f, p, rc in r.pop("identity_features", [])]
        tops = [TopFeature(f, sh, 0.5, 0.5, 0.5, 3, False, label, 0.3) for f, sh, label in r.pop("top_features", [])]
        out.append(IdentityRecord(identity_feature_details=tuple(ids), top_features=tuple(tops),
                                  **{"dedicated": False, "dedication": 0.0, **r}))
    return IdentityResult(out, IdentityConfig()).save(path)


def save_features(path: Path, specs: list[dict], n_names: int) -> Path:
    """features.json written by its owner (FeaturesResult.save)."""
    from namesae.features.config import FeatureConfig
    from namesae.features.result import FeatureRecord, FeaturesResult, TopName

    records = [FeatureRecord(s["feature"], 0.1, 3, 0.5, 0.9, 1.5, 1,
                             top_names=tuple(TopName(n, 1.0, 1.0, 0.75) for n in s.get("top_names", [])),
                             histogram_values=s.get("histogram_values", ()), label=s.get("label"),
                             label_cosine=0.8 if s.get("label") else None, runner_up="other" if s.get("label") else None,
                             label_margin=0.3 if s.get("label") else None) for s in specs]
    return FeaturesResult(records, len(specs), n_names * 4, n_names, FeatureConfig()).save(path)


def make_run(root: Path, n_names: int = 12) -> Path:
    """A small run directory with every artefact the report reads, including a hostile name and images."""
    rng = np.random.default_rng(0)
    names = [f"Name {i}" for i in range(n_names - 2)] + [INJECTION, "Zoë Ñandú"]
    (root / "world").mkdir(parents=True)
    save_identity(root / "identity.json", [
        {"name": n, "n_rows": 4, "dedicated": i % 3 == 0, "dedication": float(rng.uniform()),
         "identity_features": [(i, 0.9, 0.8)] if i % 3 == 0 else [],
         "top_features": [((i + 1) % n_names, 0.4, "age:elderly")],
         "part_composition": float(rng.uniform()), "trace": float(rng.uniform()),
         "cos_mean": float(rng.uniform()), "dse": 1.2, "attributes": {"age": {"mean": 40.0, "std": 3.0}},
         "z": {"trace": 0.5}}
        for i, n in enumerate(names)])
    save_features(root / "features.json", [
        {"feature": j, "label": INJECTION if j == 1 else f"label {j}", "top_names": [names[j]],
         "histogram_values": tuple(rng.exponential(size=30).tolist())} for j in range(n_names)], len(names))
    write_scorecard(root / "scorecard.json")
    emergence_result(names).save(root / "emergence" / "emergence.json")
    (root / "world" / "truth.json").write_text(json.dumps({"names": [
        {"name": n, "dedicated": i % 3 == 0, "frequency": 10.0 ** (i % 5 + 1), "phase": 3}
        for i, n in enumerate(names)]}))
    from namesae.basis.result import BasisFile
    from namesae.search.result import SearchFile

    BasisFile("world", {"k": 4, "names": [
        {"name": n, "prompt": f"a photo of {INJECTION} and Kieb", "reencoded_cosine": 0.9} for n in names[:3]]}
              ).save(root / "basis.json")
    SearchFile("world", {"demo_sae": {"triggers": {"items": [
        {"trigger": INJECTION, "feature": 0, "found": True, "best": "a photo of x, charcoal"}]}},
        "planted_dictionary": {"triggers": {"items": [{"trigger": "w", "feature": 0, "found": True}]}}}
               ).save(root / "search.json")
    img_dir = root / "world" / "images"
    img_dir.mkdir()
    rows, row_names, paths = [], [], []
    for i, n in enumerate(names):
        for k in range(4):
            path = img_dir / f"{i}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
            rows.append(rng.normal(size=8))
            row_names.append(n)
            paths.append(f"images/{i}_{k}.png")
    write_store(root / "world" / "image.h5", np.array(rows), row_names, ["a photo"] * len(rows), "image",
                space="test:image", seeds=list(range(len(rows))), images=paths)
    return root


def test_report_escapes_names_and_links_every_page(tmp_path):
    result = build_report(make_run(tmp_path / "run"), tmp_path / "site")
    index = result.index.read_text()
    assert INJECTION not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert result.n_name_pages == 12 and result.n_feature_pages == 12
    assert {"diversity.png", "dedication_vs_frequency.png", "phase_map.png", "dedication_curves.png",
            "map_within_similarity.png", "map_names.png"} <= set(result.plots)
    assert index.count('class="phase phase-3"') == 12 and 'id="phase-map"' in index
    assert '<tr class="miss"><th>identity.dedicated_recall</th>' in index and "world.dedicated" in index
    assert "map_decade.png" not in result.plots  # invented names: no US peak decade is known
    site = result.index.parent
    for page in [result.index, *site.glob("names/*.html"), *site.glob("features/*.html")]:
        html = page.read_text()
        assert "<script>alert" not in html
        for link in __import__("re").findall(r'(?:href|src)="([^"#]+)', html):
            assert (page.parent / link).exists(), f"{page.name} links to missing {link}"
    name_page = next(p for p in site.glob("names/*.html") if "Zoë Ñandú" in p.read_text())
    assert "<img" in name_page.read_text() and "Emergence" in name_page.read_text()
    first = next(p.read_text() for p in site.glob("names/*.html") if "<h1>Name 0</h1>" in p.read_text())
    assert "Name basis" in first and "&lt;script&gt;alert(1)&lt;/script&gt; and Kieb" in first
    feature0 = (site / "features" / "f000000.html").read_text()
    assert "Feature search" in feature0 and "demo_sae / triggers" in feature0 and "charcoal" in feature0
    assert "planted_dictionary" not in feature0  # the planted dictionary's ids are not this SAE's features


def test_report_of_an_empty_folder_says_what_to_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NamesaeError, match="namesae demo"):
        build_report(tmp_path / "empty")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_report_works_in_headless_chromium_from_file_url(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    result = build_report(make_run(tmp_path / "run"), tmp_path / "site")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(result.index.as_uri())
            page.fill("#names-filter", "Zoë")
            visible = page.locator("#names-table tbody tr:visible")
            assert visible.count() == 1
            page.click("#names-table th:nth-child(4)")  # sort by dedication
            visible.first.locator("a").click()
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == "Zoë Ñandú"
            page.screenshot(path=str(tmp_path / "name.png"))
            page.goto(result.index.as_uri())
            page.fill("#names-filter", "script")
            page.locator("#names-table tbody tr:visible a").first.click()
            assert page.locator("h1").inner_text() == INJECTION  # shown as text, never run
            assert not dialogs
        finally:
            browser.close()
    assert (tmp_path / "name.png").stat().st_size > 1000
    assert errors == []


def test_names_with_known_first_names_get_a_peak_decade_map(tmp_path):
    from namesae.names import first_names, peak_decade

    firsts = [r.name for r in first_names(decade=1950, sex="F", top=8)]
    assert peak_decade("Linda Smith") == 1950 and peak_decade("Mary") == 1920
    assert peak_decade("Zzyzx Qwerty") is None
    rng = np.random.default_rng(1)
    root = tmp_path / "run"
    (root / "world").mkdir(parents=True)
    names = [f"{f} Jones" for f in firsts]
    rows = rng.normal(size=(len(names) * 3, 8))
    write_store(root / "world" / "image.h5", rows, [n for n in names for _ in range(3)], ["a photo"] * len(rows),
                "image", space="test:image")
    save_identity(root / "identity.json", [{"name": n, "n_rows": 3} for n in names])
    result = build_report(root, tmp_path / "site")
    assert "map_decade.png" in result.plots and "map_names.png" not in result.plots  # no images on disk
