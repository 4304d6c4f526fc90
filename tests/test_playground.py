"""The playground: its state (stack, undo, export), how it reads a run folder, and its web page driven in headless
chromium on a real demo run, whose edited image `namesae steer` redraws pixel for pixel from the exported edits."""

from __future__ import annotations

import html
import io
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from namesae.errors import NamesaeError
from namesae.playground import (
    EditStack,
    FeatureGroup,
    FeatureView,
    Playground,
    Selection,
    export_text,
    find_run,
    group_edit,
    replay_command,
    slider_edits,
    write_export,
)
from namesae.playground.folder import read_icons
from namesae.playground.view import gallery_items, header_html, selection_html
from namesae.steer import (
    SELF,
    CodeRef,
    ScaleFeature,
    ScaleGroup,
    Transfer,
    ZeroFeature,
    ZeroGroup,
    apply_edits,
    load_edits,
)

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
INJECTION = '<script>alert("x")</script>'


def namesae(*args: str) -> int:
    """Run the namesae command line in this process; its exit status."""
    from namesae.cli import main

    try:
        main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def process_env() -> dict[str, str]:
    """The environment of the playground server and of the `namesae steer` that replays its export: the same for
    both, since torch's thread count (OMP_NUM_THREADS, ...) changes float rounding and so, by a level, pixels."""
    return {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def pixels(image) -> np.ndarray:
    """RGB pixels [h, w, 3] of a PIL image, an image file or PNG bytes in a file object."""
    from PIL import Image

    image = image if hasattr(image, "convert") else Image.open(image)
    return np.asarray(image.convert("RGB")).astype(np.int16)


# ---- the state: stack, undo, export -------------------------------------------------------------------------------
def test_edits_stack_in_order_and_undo_takes_back_the_last_one():
    identity, hair = FeatureGroup("identity", (3, 5)), FeatureGroup("hair", (1, 3))
    stack = EditStack().push(group_edit("zero", identity)).push(group_edit("scale", hair, 2.0))
    assert stack.edits == (ZeroGroup((3, 5), "identity"), ScaleGroup((1, 3), 2.0, "hair"))
    assert stack.lines() == ["1. zero identity (features 3, 5)", "2. scale hair (features 1, 3) by 2"]
    codes = torch.tensor([[1.0, 2.0, 0.0, 4.0, 0.0, 6.0]])
    assert apply_edits(codes, stack.edits).tolist() == [[1.0, 4.0, 0.0, 0.0, 0.0, 0.0]]  # zeroed, then scaled
    assert stack.undo().edits == (ZeroGroup((3, 5), "identity"),)
    assert apply_edits(codes, stack.undo().edits).tolist() == [[1.0, 2.0, 0.0, 0.0, 0.0, 0.0]]
    assert stack.undo().undo().undo().edits == () and len(stack.clear()) == 0


def test_the_controls_make_zero_scale_and_transfer_edits_and_untouched_sliders_make_none():
    identity = FeatureGroup("identity", (3, 5))
    assert group_edit("scale", identity, 0.0) == ZeroGroup((3, 5), "identity")
    assert group_edit("transfer", identity, donor="Vicki", alpha=0.5) == \
        Transfer(0.5, CodeRef("name", "Vicki"), SELF, (3, 5), "identity")
    with pytest.raises(NamesaeError, match="needs a name to take it from"):
        group_edit("transfer", identity)
    with pytest.raises(NamesaeError, match="unknown"):
        group_edit("add", identity)
    edits = slider_edits([identity, FeatureGroup("b", (7,))], [1.0, 0.5], [3, 9], [0.0, 1.0])
    assert edits == [ScaleGroup((7,), 0.5, "b"), ZeroFeature(3)]


def test_the_export_is_the_edit_list_namesae_steer_reads(tmp_path):
    stack = EditStack().push(ZeroGroup((3, 5), "identity"), ScaleFeature(2, 1.5),
                             Transfer(1.0, CodeRef("name", f"Zoë {INJECTION}"), SELF, (7,), "hair"))
    path = write_export(stack, tmp_path / "edits.json")
    assert load_edits(path) == list(stack.edits)
    assert json.loads(path.read_text(encoding="utf-8")) == stack.to_json() == json.loads(export_text(stack))
    assert load_edits(export_text(EditStack())) == []


def test_the_replay_command_keeps_names_with_spaces_and_quotes_whole():
    name = "O'Brien <b>Ann</b>"
    args = shlex.split(replay_command(Path("r/sae"), Path("r/world/image.h5"), "tiny:r/steer/tiny", "kandinsky22",
                                      "name", name, 7, Path("e.json"), Path("out")))
    assert args[:2] == ["namesae", "steer"]
    assert {args[i]: args[i + 1] for i in range(2, len(args), 2)} == {
        "--sae": "r/sae", "--store": "r/world/image.h5", "--pipeline": "kandinsky22", "--model": "tiny:r/steer/tiny",
        "--name": name, "--edit": "e.json", "--seed": "7", "--out": "out"}


def test_names_are_shown_as_text_in_the_pages_html():
    selection = Selection("name", INJECTION, INJECTION, None, torch.tensor([0.0, 1.0]),
                          [FeatureGroup("<b>g</b>", (1,), 0.5, "live")], [], "computed <i>now</i>")
    shown = selection_html(selection)
    assert "<script>" not in shown and "<i>" not in shown and html.escape(INJECTION) in shown


# ---- the run folder -----------------------------------------------------------------------------------------------
def test_a_folder_that_is_no_run_is_refused_with_one_line(tmp_path, capsys):
    with pytest.raises(NamesaeError, match=r"no SAE in .*sae \(cfg.json missing\); run `namesae demo"):
        find_run(tmp_path)
    with pytest.raises(NamesaeError, match="not a folder"):
        find_run(tmp_path / "absent")
    assert namesae("playground", "--run", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SAE in" in err[0]


def test_icons_from_icons_index_are_shown_beside_their_groups_and_features(tmp_path):
    folder = tmp_path / "icons"
    folder.mkdir()
    for name in ("f3.png", "identity.png"):
        (folder / name).write_bytes(b"png")
    (tmp_path / "outside.png").write_bytes(b"png")
    (folder / "icons.json").write_text(json.dumps({
        "format": "namesae-icons", "format_version": 1, "recipe": {}, "decoder": {},
        "features": {"3": {"file": "f3.png"}, "4": {"file": "missing.png"}, "5": {"file": "../outside.png"}},
        "groups": {"identity": {"file": "identity.png"}, "hair": {"file": "missing.png"}}}))
    icons = read_icons(folder / "icons.json")
    assert icons.features == {3: folder / "f3.png"} and icons.groups == {"identity": folder / "identity.png"}
    selection = Selection("name", "Ann", "Ann", None, torch.tensor([0.0, 1.0]),
                          [FeatureGroup("identity", (3,)), FeatureGroup("hair", (4,))],
                          [FeatureView(3, 1.0, "hair:red", icons.features[3]), FeatureView(4, 0.5)], "")
    assert gallery_items(selection, icons) == [(str(folder / "identity.png"), "group identity"),
                                               (str(folder / "f3.png"), "feature 3 (hair:red)")]


def test_the_server_listens_on_loopback_unless_a_host_is_given():
    from namesae.playground.app import free_port, server_host

    assert server_host(None) == "127.0.0.1" and server_host("0.0.0.0") == "0.0.0.0"
    assert 0 < free_port("127.0.0.1") < 65536


# ---- on a real demo run -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(small_demo_run):
    """(run folder, dedicated names): found dedicated by identity.json and planted dedicated in truth.json."""
    from namesae.playground.folder import identity_features
    from namesae.synth import load_truth

    run, _ = small_demo_run
    planted = {t["name"] for t in load_truth(run / "world")["names"] if t["dedicated"]}
    found = [n for n, feats in identity_features(run / "identity.json").items() if feats and n in planted]
    assert len(found) >= 2
    return run, found


def test_playground_images_are_what_namesae_steer_draws_from_the_exported_edits(demo, tmp_path):
    run, dedicated = demo
    playground = Playground.open(run, export_dir=tmp_path / "pg")
    try:
        name, donor = dedicated[1], dedicated[0]
        selection = playground.select("name", name)
        identity = selection.groups[0]
        assert identity.label == "identity" and identity.origin == "identity.json" and identity.mass_share > 0
        assert "no image encoder" in playground.image_note() and "no image encoder" in header_html(playground)
        stack = EditStack().push(group_edit("zero", identity), group_edit("transfer", selection.groups[1],
                                                                           donor=donor, alpha=0.5))
        pair = playground.decode(selection, stack, seed=5)
        assert np.abs(pixels(pair.original) - pixels(pair.edited)).max() > 0
        export = playground.export(selection, stack, seed=5)
        assert load_edits(export.path) == list(stack.edits)
        assert namesae(*shlex.split(export.command)[1:]) == 0
        replay = tmp_path / "pg" / "replay"
        assert np.array_equal(pixels(replay / "edited_s5.png"), pixels(pair.edited))
        assert np.array_equal(pixels(replay / "original_s5.png"), pixels(pair.original))
        undone = playground.decode(selection, stack.undo().undo(), seed=5)
        assert np.array_equal(pixels(undone.edited), pixels(pair.original))  # no edits: the original
        row = playground.select("row", 3)
        assert row.title.startswith("row 3: ") and row.groups and all(g.origin in ("identity.json", "live")
                                                                      for g in row.groups)
    finally:
        playground.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder in the tiny open_clip space, which has an image encoder: an SAE and an image store."""
    from namesae.sae import build_sae_from_weights
    from namesae.store import write_store

    root = tmp_path_factory.mktemp("tiny-run")
    space, d_in, d_sae = "open_clip:tiny:seed0:image", 64, 96
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=1)
    build_sae_from_weights(W_dec.T.clone(), torch.full((d_sae,), -0.05), W_dec, torch.zeros(d_in), space=space,
                           out_dir=root / "sae")
    x = torch.nn.functional.normalize(torch.randn(6, d_in, generator=g), dim=1).numpy()
    (root / "world").mkdir()
    write_store(root / "world" / "image.h5", x, ["Ann", "Ann", "Bo", "Bo", "Cy", "Cy"], "a photo", "image", space,
                normalized=True, seeds=list(range(6)))
    return root


def test_an_uploaded_image_is_embedded_by_the_runs_encoder_and_replays_with_namesae_steer(tiny_run, tmp_path):
    playground = Playground.open(tiny_run, model=f"tiny:{tiny_run / 'decoder'}", export_dir=tmp_path / "pg")
    try:
        assert playground.image_note() is None and playground.dedicated_names() == []
        drawn = playground.decode(playground.select("row", 2), EditStack(), seed=1).original
        drawn.save(tmp_path / "upload.png")
        selection = playground.select("image", tmp_path / "upload.png")
        assert selection.value.parent == tmp_path / "pg" / "uploads"  # kept: the upload's temporary file goes
        assert selection.groups and all(g.origin == "live" for g in selection.groups)
        stack = EditStack().push(group_edit("zero", selection.groups[0]))
        pair = playground.decode(selection, stack, seed=2)
        assert np.abs(pixels(pair.original) - pixels(pair.edited)).max() > 0
        export = playground.export(selection, stack, seed=2)
        assert f"--image {selection.value}" in export.command
        assert namesae(*shlex.split(export.command)[1:]) == 0
        assert np.array_equal(pixels(tmp_path / "pg" / "replay" / "edited_s2.png"), pixels(pair.edited))
    finally:
        playground.close()


# ---- the web page, in headless chromium ----------------------------------------------------------------------------
def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def server(demo, tmp_path):
    """`namesae playground --run RUN` in a subprocess on a free port: (url, export folder); stopped afterwards."""
    run, _ = demo
    proc = subprocess.Popen([sys.executable, "-m", "namesae", "playground", "--run", str(run), "--out",
                             str(tmp_path / "pg")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=process_env())
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    output, url, deadline = [], None, time.monotonic() + 120
    try:
        while url is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None:
                    pytest.fail(f"the playground exited with {proc.returncode}:\n{''.join(output)}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the playground did not start within 120 s:\n{''.join(output)}")
                continue
            output.append(line)
            found = re.search(r" on (http://\S+/) ", line)
            url = found.group(1) if found else None
        yield url, tmp_path / "pg"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_zeroing_a_names_identity_in_the_browser_changes_its_image_as_namesae_steer_replays_it(demo, server,
                                                                                             screenshots):
    from playwright.sync_api import sync_playwright

    run, dedicated = demo
    url, exports = server
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0 nor ::
    name = dedicated[1]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("#pg-title", timeout=30_000)
            assert "no image encoder" in page.locator("#pg-image-note").inner_text()
            page.locator("#pg-name input").click()
            page.locator("ul[role=listbox] li", has_text=name).first.click()
            page.wait_for_function("n => document.querySelector('#pg-title').innerText === n", arg=name)
            assert page.locator("#pg-group input").input_value() == "identity"  # the identity group first
            page.click("#pg-add")  # operation: zero (the default)
            page.wait_for_function("() => document.querySelector('#pg-stack textarea').value"
                                   ".startsWith('1. zero identity')")
            page.click("#pg-decode")
            page.wait_for_selector("#pg-original img")
            page.wait_for_selector("#pg-edited img")
            shown = {key: pixels(io.BytesIO(page.request.get(
                page.locator(f"#pg-{key} img").get_attribute("src")).body())) for key in ("original", "edited")}
            page.click("#pg-export-button")
            page.wait_for_function("() => document.querySelector('#pg-command textarea').value.length > 0")
            exported = json.loads(page.locator("#pg-export textarea").input_value())
            command = page.locator("#pg-command textarea").input_value()
            shot = screenshots / "playground.png"
            page.evaluate("() => window.scrollTo(0, 0)")
            page.screenshot(path=str(shot))  # the top: what is steered, original | edited, its groups
        finally:
            browser.close()
    from namesae.playground.folder import identity_features

    assert exported == [{"op": "zero", "features": list(identity_features(run / "identity.json")[name]),
                         "label": "identity"}]
    assert np.abs(shown["original"] - shown["edited"]).max() > 0  # zeroing the identity changed the image
    replayed = subprocess.run([sys.executable, "-m", "namesae", *shlex.split(command)[1:]], capture_output=True,
                              text=True, env=process_env(), timeout=180, check=False)  # as a person would run it
    assert replayed.returncode == 0, replayed.stderr
    replay = exports / "replay"
    assert "--seed 0" in command and json.loads((exports / "edits.json").read_text()) == exported
    assert np.array_equal(shown["edited"], pixels(replay / "edited_s0.png"))  # pixel for pixel
    assert np.array_equal(shown["original"], pixels(replay / "original_s0.png"))
    assert shot.stat().st_size > 10_000
    assert errors == []
