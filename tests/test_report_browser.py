"""The report of a real demo run in headless Chromium (Playwright): icons, top images, identity titles, the
glossary, styling on every page, and hostile names shown as text. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
HOSTILE = '<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">'


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo_site(small_demo_run, tmp_path_factory):
    """The report the small demo wrote, built again from its run folder through the CLI."""
    from typer.testing import CliRunner

    from namesae.cli import app

    run, _ = small_demo_run
    out = tmp_path_factory.mktemp("site") / "site"
    result = CliRunner().invoke(app, ["report", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return run, out


def _styled(page) -> bool:
    """Whether the page's stylesheet is loaded and applied (body font and table borders from style.css)."""
    return page.evaluate("""() => {
        const sheets = Array.from(document.styleSheets).filter(s => (s.href || '').endsWith('style.css'));
        // file:// pages may not read cssRules; the body's font (set only by style.css) shows it applied.
        return sheets.length === 1 && getComputedStyle(document.body).fontFamily.includes('system-ui');
    }""")


def test_feature_pages_show_icons_top_images_and_identity_titles(browser, demo_site, screenshots):
    run, site = demo_site
    identity = json.loads((run / "identity.json").read_text())["names"]
    owners = {}
    for rec in identity:
        for item in rec["identity_features"]:
            owners.setdefault(item["feature"], []).append(rec["name"])
    assert owners, "the small demo finds no identity feature"
    fid, names = sorted(owners.items())[0]
    page = browser.new_page()
    page.goto((site / "features" / f"f{fid:06d}.html").as_uri())
    assert page.locator("h1").inner_text() == f"Feature {fid}: identity: {', '.join(names)}"
    icon = page.locator("img.icon").first
    assert icon.evaluate("img => img.complete && img.naturalWidth > 0")
    cells = page.locator(".top-images figure.cell")
    assert cells.count() >= 1
    assert cells.first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    caption = cells.first.locator("figcaption").inner_text()
    assert "activation" in caption and "seed" in caption and names[0] in caption
    assert _styled(page)
    page.screenshot(path=str(screenshots / "feature_page.png"), full_page=False)

    # A name page: generations with captions, readable attributes, its identity feature's icon.
    page.goto((site / "index.html").as_uri())
    page.locator("#names-table a", has_text=names[0]).first.click()
    assert page.locator("h1").inner_text() == names[0]
    assert page.locator(".generations figure.cell").count() >= 1
    assert "std=" not in page.content() and "p_man=" not in page.content()
    assert _styled(page)
    page.screenshot(path=str(screenshots / "name_page.png"), full_page=False)
    page.close()


def test_the_glossary_resolves_and_every_page_is_styled(browser, demo_site):
    _, site = demo_site
    page = browser.new_page()
    page.goto((site / "index.html").as_uri())
    page.locator("nav a", has_text="glossary").click()
    assert page.url.endswith("glossary.html") and page.locator("h1").inner_text() == "Glossary"
    for term in ("dedication", "tau_p", "tau_r", "absorption", "icon", "label_margin"):
        assert page.locator(f"dt#{term}").count() == 1, term
    every = sorted(site.rglob("*.html"))
    unlinked = [p for p in every if f'href="{"." if p.parent == site else ".."}/style.css"' not in p.read_text()]
    assert every and unlinked == []  # every page links the one stylesheet; a sample is checked in the browser
    pages = [site / "index.html", site / "glossary.html", *sorted(site.glob("names/*.html"))[:5],
             *sorted(site.glob("features/*.html"))[:5]]
    for path in pages:
        page.goto(path.as_uri())
        assert _styled(page), path
    page.close()


def _store_with_a_hostile_name(src: Path, dst: Path) -> str:
    """A copy of a store in which one name is renamed to a hostile string; returns the old name."""
    from namesae.store import EmbeddingStore

    with EmbeddingStore.open(src) as s:
        x, names, prompts = s.read(), s.names.astype(str), s.prompts.astype(str)
        kinds, seeds = s.kinds.astype(str), s.seeds
        old = sorted(set(names))[0]
        with EmbeddingStore.create(dst, s.dim, s.space, normalized=s.normalized) as out:
            out.append(x, [HOSTILE if n == old else n for n in names],
                       [p.replace(old, HOSTILE) for p in prompts], kinds, None if seeds is None else seeds)
    return old


def test_a_hostile_name_is_text_on_every_page_it_reaches(browser, small_demo_run, tmp_path):
    from typer.testing import CliRunner

    from namesae.cli import app

    run, _ = small_demo_run
    hostile = tmp_path / "hostile"
    _store_with_a_hostile_name(run / "world" / "image.h5", hostile / "world" / "image.h5")
    cli = CliRunner()
    for args in (["identity", "--sae", str(run / "sae"), "--store", str(hostile / "world" / "image.h5"),
                  "--write-features", "--out", str(hostile), "--no-progress"],
                 ["icons", "--run", str(hostile), "--icons", "8", "--group-icons", "0", "--rows-per-name", "2",
                  "--model", f"tiny:{run / 'steer' / 'tiny_kandinsky22'}", "--no-progress"],
                 ["report", "--run", str(hostile), "--out", str(tmp_path / "site")]):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)
    manifest = json.loads((hostile / "run.json").read_text())
    assert {"identity", "features", "sae", "icons", "row_images"} <= set(manifest["artefacts"])
    site = tmp_path / "site"
    reached = [p for p in site.rglob("*.html") if "&lt;script&gt;" in p.read_text()]
    assert len(reached) >= 2  # the index and the name's own page at least
    page = browser.new_page()
    for path in reached:
        page.goto(path.as_uri())
        assert page.evaluate("() => window.pwned") is None, path
        assert HOSTILE in page.locator("body").inner_text(), path
        assert page.locator("script", has_text="window.pwned").count() == 0
        assert page.locator("img[onerror]").count() == 0
    page.close()


def test_feature_titles_follow_identity_then_a_clear_label():
    from namesae.report.pages import feature_title

    assert feature_title({"label": "glasses:no", "label_cosine": 0.21}, ["Barack Obama"]).text == \
        "identity: Barack Obama"
    assert feature_title({"label": "glasses:no", "label_cosine": 0.21, "label_margin": 0.3}, []).text == \
        "unlabelled (nearest: glasses:no)"
    assert feature_title({"label": "hair:red", "label_cosine": 0.8, "label_margin": 0.01}, []).kind == "unlabelled"
    clear = feature_title({"label": "hair:red", "label_cosine": 0.8, "label_margin": 0.4}, [])
    assert clear.text == "hair:red" and "0.80" in clear.detail and "0.40" in clear.detail
    assert np.isclose(float(clear.detail.split("cosine ")[1].split(",")[0]), 0.8)
