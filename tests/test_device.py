"""`--device` on every analysis command: `--device cpu` gives exactly what no flag gives, and a bad or absent
device is refused in one line before anything loads (one resolver, `namesae.devices.resolve_device`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from namesae.devices import resolve_device
from namesae.errors import ConfigError

SMALL = {"n_first": 8, "n_last": 8, "n_full": 16, "n_dedicated": 5, "n_templates": 3, "progression": False}
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two cores shared by many jobs: one intra-op thread keeps the tiny runs fast and their timings stable.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world and an oracle SAE over its planted directions (image space)."""
    from namesae.sae import build_sae_from_weights
    from namesae.synth import SynthConfig, build_world, load_truth, write_world

    root = tmp_path_factory.mktemp("device")
    built = build_world(SynthConfig(seed=3, **SMALL))
    paths = write_world(built, root / "world")
    truth = load_truth(paths.root)
    d = built.truth.directions.astype(np.float32)
    build_sae_from_weights(d.T, np.full(len(d), -0.1, np.float32), d, np.zeros(d.shape[1], np.float32),
                           space=truth["spaces"]["image"], architecture="standard", out_dir=root / "sae")
    full = [r["name"] for r in truth["names"] if r["kind"] == "full"]
    from typer.testing import CliRunner

    from namesae.cli import app

    run = CliRunner().invoke(app, ["basis", "vocab", "--world", str(paths.root), "--out", str(root / "vocab.h5")])
    assert run.exit_code == 0, run.output
    return {"root": root, "paths": paths, "sae": root / "sae", "full": full, "vocab": root / "vocab.h5"}


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `namesae ARGS` through the console entry point (its error handling included)."""
    from namesae.cli import main

    monkeypatch.setattr(sys, "argv", ["namesae", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def same_outputs(monkeypatch, capsys, tmp_path: Path, args: list[str], files: list[str]) -> None:
    """The command writes byte-identical files with `--device cpu` and with no `--device` (out path aside)."""
    got = {}
    for tag, extra in (("plain", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / tag
        code, stdout, err = run_cli(monkeypatch, capsys, *args, "--out", str(out), *extra)
        assert code == 0, err + stdout
        got[tag] = {name: (out / name).read_bytes().replace(str(out).encode(), b"OUT") for name in files}
    for name in files:
        assert got["plain"][name] and got["plain"][name] == got["cpu"][name], name


# ---- the resolver --------------------------------------------------------------------------------------------
def test_resolver_accepts_cpu_and_auto_and_refuses_bad_names():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("bogus", "gpu", "cuda:x", "cuda:-1", "", "cpu:0"):
        with pytest.raises(ConfigError, match=r"^--device .* is not a device; use cpu, cuda, cuda:N, mps or auto$"):
            resolve_device(bad)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_resolver_refuses_cuda_without_a_cuda_device():
    for spec in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ConfigError, match=rf"^--device {spec}: no CUDA device is available; use --device cpu "
                                              r"or auto$"):
            resolve_device(spec)


def test_load_sae_resolves_its_device(world):
    from namesae.sae import load_sae

    assert str(load_sae(world["sae"], device="auto").model.W_dec.device).startswith(resolve_device("auto"))
    with pytest.raises(ConfigError, match="--device 'bogus'"):
        load_sae(world["sae"], device="bogus")


# ---- every command: --device cpu == no flag ------------------------------------------------------------------
def test_identity_and_features_give_the_same_files_on_cpu_with_or_without_the_flag(world, monkeypatch, capsys,
                                                                                   tmp_path):
    p = world["paths"]
    same_outputs(monkeypatch, capsys, tmp_path / "identity",
                 ["identity", "--sae", str(world["sae"]), "--store", str(p.image), "--text-store", str(p.text),
                  "--vocab", str(p.vocab), "--no-progress", "--write-features"],
                 ["identity.json", "identity.csv", "features.json", "features.csv"])
    same_outputs(monkeypatch, capsys, tmp_path / "features",
                 ["features", "--sae", str(world["sae"]), "--store", str(p.image), "--vocab", str(p.vocab),
                  "--no-progress"], ["features.json", "features.csv"])


def test_groups_gives_the_same_files_on_cpu_with_or_without_the_flag(world, monkeypatch, capsys, tmp_path):
    same_outputs(monkeypatch, capsys, tmp_path,
                 ["groups", "--sae", str(world["sae"]), "--store", str(world["paths"].image), "--name",
                  world["full"][0], "--json", "--restarts", "1", "--k-max", "4"], ["groups.json", "groups.csv"])


def test_emergence_gives_the_same_files_on_cpu_with_or_without_the_flag(world, monkeypatch, capsys, tmp_path):
    p = world["paths"]
    lines = ['axis = "sae_size"']
    for i in range(2):  # the same SAE and store at two points: the cheapest valid series
        lines += ["[[points]]", f'label = "p{i}"', f"value = {i + 1}", f'store = "{p.image}"',
                  f'text_store = "{p.text}"', f'vocab = "{p.vocab}"', f'sae = "{world["sae"]}"']
    spec = tmp_path / "series.toml"
    spec.write_text("\n".join(lines) + "\n")
    same_outputs(monkeypatch, capsys, tmp_path, ["emergence", "--series", str(spec), "--no-progress"],
                 ["emergence.json", "emergence.csv", "curves.csv", "families.csv"])


def test_basis_gives_the_same_files_on_cpu_with_or_without_the_flag(world, monkeypatch, capsys, tmp_path):
    p, vocab = world["paths"], world["vocab"]
    code, _, err = run_cli(monkeypatch, capsys, "basis", "vocab", "--world", str(p.root), "--out",
                           str(tmp_path / "vocab.h5"), "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "vocab.h5").stat().st_size > 0
    target = ["--world", str(p.root), "--vocab", str(vocab), "--prompt", f"a photo of {world['full'][0]}"]
    same_outputs(monkeypatch, capsys, tmp_path / "paint", ["basis", "paint", *target, "--k", "2"],
                 ["paint.json", "paint.csv"])
    same_outputs(monkeypatch, capsys, tmp_path / "pairs", ["basis", "pairs", *target, "--top", "3", "--reencode",
                                                           "5"], ["pairs.json", "pairs.csv"])
    same_outputs(monkeypatch, capsys, tmp_path / "axes", ["basis", "axes", "--store", str(p.text), "--n-axes", "2"],
                 ["axes.json", "axes.csv"])


def test_search_gives_the_same_files_on_cpu_with_or_without_the_flag(world, monkeypatch, capsys, tmp_path):
    p = world["paths"]
    sae = ["--sae", str(world["sae"]), "--world", str(p.root)]
    same_outputs(monkeypatch, capsys, tmp_path / "drive", ["search", "drive", *sae, "--features", "3", "--top", "5",
                                                           "--steps", "1"], ["drive.json", "ranking.csv"])
    same_outputs(monkeypatch, capsys, tmp_path / "cancel",
                 ["search", "cancel", *sae, "--features", "3", "--prompt", f"a photo of {world['full'][0]}"],
                 ["cancel.json", "cancel.csv"])
    same_outputs(monkeypatch, capsys, tmp_path / "contrast",
                 ["search", "contrast", "--sae", str(world["sae"]), "--store", str(p.image), "--a-name",
                  world["full"][0], "--b-name", world["full"][1], "--n-boot", "20"], ["contrast.json", "contrast.csv"])


def test_steer_gives_the_same_files_on_cpu_with_or_without_the_flag(monkeypatch, capsys, tmp_path):
    from namesae.sae import build_sae_from_weights
    from namesae.store import write_store

    d_in, d_sae, space = 32, 48, "open_clip:tiny:seed0:image"
    g = torch.Generator().manual_seed(0)
    W_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=1)
    build_sae_from_weights(W_dec.T.clone(), torch.full((d_sae,), -0.05), W_dec, torch.zeros(d_in), space=space,
                           out_dir=tmp_path / "sae")
    x = torch.nn.functional.normalize(torch.randn(4, d_in, generator=g), dim=1).numpy()
    write_store(tmp_path / "store.h5", x, ["a", "a", "b", "b"], "a photo", "image", space, normalized=True,
                seeds=list(range(4)))
    same_outputs(monkeypatch, capsys, tmp_path,
                 ["steer", "--sae", str(tmp_path / "sae"), "--pipeline", "kandinsky22",
                  "--model", f"tiny:{tmp_path / 'k22'}",
                  "--store", str(tmp_path / "store.h5"), "--row", "1", "--edit",
                  '[{"op": "add", "feature": 3, "amount": 1.0}]'], ["steer.json", "embeddings.safetensors",
                                                                    "side_by_side.png"])


# ---- refusals: one line, exit 2, before anything loads -------------------------------------------------------
def commands(world) -> dict[str, list[str]]:
    """Each command and sub-command with arguments valid up to the device check."""
    p, sae = world["paths"], str(world["sae"])
    return {
        "identity": ["identity", "--sae", sae, "--store", str(p.image), "--out", "unused"],
        "features": ["features", "--sae", sae, "--store", str(p.image), "--out", "unused"],
        "groups": ["groups", "--sae", sae, "--store", str(p.image), "--row", "0"],
        "emergence": ["emergence", "--series", str(p.root), "--out", "unused"],
        "basis vocab": ["basis", "vocab", "--world", str(p.root), "--out", "unused.h5"],
        "basis paint": ["basis", "paint", "--world", str(p.root), "--vocab", str(world["vocab"]), "--prompt", "x"],
        "basis pairs": ["basis", "pairs", "--world", str(p.root), "--vocab", str(world["vocab"]), "--prompt", "x"],
        "basis axes": ["basis", "axes", "--store", str(p.text)],
        "basis score": ["basis", "score", "--world", str(p.root)],
        "search drive": ["search", "drive", "--world", str(p.root), "--features", "3"],
        "search cancel": ["search", "cancel", "--world", str(p.root), "--features", "3", "--prompt", "x"],
        "search contrast": ["search", "contrast", "--sae", sae, "--store", str(p.image), "--a-name", "x",
                            "--b-name", "y"],
        "search score": ["search", "score", "--world", str(p.root)],
        "steer": ["steer", "--sae", sae, "--edit", "[]", "--out", "unused", "--prompt", "x"],
    }


def test_every_command_refuses_a_bogus_device_in_one_line(world, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for what, args in commands(world).items():
        code, _, err = run_cli(monkeypatch, capsys, *args, "--device", "bogus")
        lines = err.strip().splitlines()
        assert code == 2, (what, err)
        assert lines == ["namesae: error: --device 'bogus' is not a device; use cpu, cuda, cuda:N, mps or auto"], \
            (what, err)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_every_command_refuses_cuda_on_a_machine_without_it(world, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    for what, args in commands(world).items():
        code, _, err = run_cli(monkeypatch, capsys, *args, "--device", "cuda")
        assert code == 2 and err.strip().splitlines() == [
            "namesae: error: --device cuda: no CUDA device is available; use --device cpu or auto"], (what, err)


def test_every_command_documents_the_device_option(world):
    from typer.testing import CliRunner

    from namesae.cli import app

    for what in commands(world):
        result = CliRunner().invoke(app, [*what.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0 and "--device" in result.output and "auto" in result.output, what


# ---- on a CUDA machine: the same numbers as the CPU ----------------------------------------------------------
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_identity_on_cuda_gives_the_cpu_numbers(world, monkeypatch, capsys, tmp_path):
    p = world["paths"]
    args = ["identity", "--sae", str(world["sae"]), "--store", str(p.image), "--text-store", str(p.text),
            "--no-progress"]
    data = {}
    for dev in ("cpu", "cuda"):
        code, _, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / dev), "--device", dev)
        assert code == 0, err
        data[dev] = json.loads((tmp_path / dev / "identity.json").read_text())["names"]
    assert [r["name"] for r in data["cpu"]] == [r["name"] for r in data["cuda"]]
    assert [r["dedicated"] for r in data["cpu"]] == [r["dedicated"] for r in data["cuda"]]
    for a, b in zip(data["cpu"], data["cuda"]):
        for key in ("dedication", "trace"):
            if isinstance(a.get(key), float):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
