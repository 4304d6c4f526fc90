"""`namesae embed` end to end on tiny offline models: rows, resume after a kill, images, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from namesae.cli import app, main
from namesae.embed import EmbedConfig, embed_texts, image_rows
from namesae.encoders import load_encoder
from namesae.store import EmbeddingStore, write_store

NAMES = ["Vicki", "Barack Obama", "Zoë", "Mona Lisa", "Sherlock Holmes"]
TEMPLATES = ["a photo of {name}", "{name} as a child"]
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("tiny")


@pytest.fixture()
def names_file(tmp_path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


def embed_args(names_file: Path, out: Path, *extra: str) -> list[str]:
    args = ["embed", "--names", str(names_file), "--model", "tiny", "--out", str(out), "--chunk-rows", "4",
            "--no-progress"]
    for t in TEMPLATES:
        args += ["-t", t]
    return args + list(extra)


def expected_rows() -> tuple[list[str], list[str]]:
    names = [n for n in NAMES for _ in TEMPLATES]
    prompts = [t.replace("{name}", n) for n in NAMES for t in TEMPLATES]
    return names, prompts


def read_all(path: Path) -> dict:
    with EmbeddingStore.open(path) as s:
        return {"names": s.names.tolist(), "prompts": s.prompts.tolist(), "kinds": s.kinds.tolist(),
                "seeds": s.seeds.tolist(), "images": None if s.images is None else s.images.tolist(),
                "x": s.read(), "space": s.space, "normalized": s.normalized, "dim": s.dim}


def test_embed_writes_one_row_per_name_and_template_and_a_rerun_adds_nothing(tiny, names_file, tmp_path):
    out = tmp_path / "stores" / "text.h5"
    result = runner.invoke(app, embed_args(names_file, out))
    assert result.exit_code == 0, result.output
    assert "10 rows written, 0 already in the store" in result.output
    assert f"wrote {out}" in result.output
    got = read_all(out)
    names, prompts = expected_rows()
    assert (got["names"], got["prompts"]) == (names, prompts)
    assert got["kinds"] == ["text"] * 10 and got["seeds"] == [-1] * 10
    assert got["space"] == "open_clip:tiny:seed0:text" and got["normalized"] and got["dim"] == 64
    np.testing.assert_allclose(got["x"], tiny.encode_text(prompts), atol=1e-6)

    again = runner.invoke(app, embed_args(names_file, out))
    assert again.exit_code == 0, again.output
    assert "0 rows written, 10 already in the store" in again.output
    assert read_all(out)["prompts"] == prompts


def test_new_names_and_templates_are_appended_without_repeating_old_rows(names_file, tmp_path):
    out = tmp_path / "text.h5"
    assert runner.invoke(app, embed_args(names_file, out)).exit_code == 0
    result = runner.invoke(app, embed_args(names_file, out, "-t", "a painting of {name}"))
    assert "5 rows written, 10 already in the store" in result.output
    got = read_all(out)
    keys = list(zip(got["names"], got["prompts"]))
    assert len(keys) == len(set(keys)) == 15
    assert got["prompts"][10:] == [f"a painting of {n}" for n in NAMES]


class DiesAfter:
    """A text encoder that is killed (KeyboardInterrupt) on its (calls+1)-th batch, like Ctrl-C or SIGTERM."""

    def __init__(self, encoder, calls: int) -> None:
        self.encoder, self.calls = encoder, calls
        self.dim, self.normalized, self.attrs = encoder.dim, encoder.normalized, encoder.attrs
        self.space = encoder.space

    def encode_text(self, texts):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.encoder.encode_text(texts)


def test_a_killed_job_resumes_to_exactly_the_rows_of_an_uninterrupted_run(tiny, names_file, tmp_path):
    reference = tmp_path / "reference.h5"
    assert runner.invoke(app, embed_args(names_file, reference)).exit_code == 0

    out = tmp_path / "killed.h5"
    cfg = EmbedConfig(model="tiny", chunk_rows=4)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(DiesAfter(tiny, calls=2), NAMES, TEMPLATES, out, cfg)
    assert len(EmbeddingStore.open(out)) == 8  # two whole chunks survived, the third was never written

    result = runner.invoke(app, embed_args(names_file, out))
    assert "2 rows written, 8 already in the store" in result.output
    want, got = read_all(reference), read_all(out)
    assert (got["names"], got["prompts"]) == (want["names"], want["prompts"])
    np.testing.assert_allclose(got["x"], want["x"], atol=1e-6)


def test_a_kill_in_the_middle_of_an_append_loses_only_that_chunk(names_file, tmp_path):
    reference = tmp_path / "reference.h5"
    assert runner.invoke(app, embed_args(names_file, reference)).exit_code == 0
    want = read_all(reference)

    # The store as a kill mid-append leaves it: one committed chunk, then half-written rows past the commit mark.
    out = tmp_path / "torn.h5"
    with EmbeddingStore.create(out, 64, want["space"], normalized=True, chunk_rows=4) as s:
        s.append(want["x"][:4], want["names"][:4], want["prompts"][:4], "text")
    with h5py.File(out, "r+") as h5:
        for field in ("embeddings", "name", "prompt", "kind", "seed", "image"):
            h5[field].resize(7, axis=0)
        h5["name"][4:7] = ["torn"] * 3
        h5["prompt"][4:7] = ["half written"] * 3
        h5["kind"][4:7] = ["text"] * 3
    result = runner.invoke(app, embed_args(names_file, out))
    assert result.exit_code == 0, result.output
    assert "6 rows written, 4 already in the store" in result.output
    got = read_all(out)
    assert (got["names"], got["prompts"]) == (want["names"], want["prompts"])
    np.testing.assert_allclose(got["x"], want["x"], atol=1e-6)


def test_builtin_lists_and_template_kinds(tmp_path):
    out = tmp_path / "surnames.h5"
    result = runner.invoke(app, ["embed", "--builtin", "surnames", "--top", "3", "-t", "style", "--model", "tiny",
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    got = read_all(out)
    from namesae.names import templates

    assert got["names"] == [n for n in ("Smith", "Johnson", "Williams") for _ in templates("style")]
    assert got["prompts"][0] == templates("style")[0].replace("{name}", "Smith")


def save_picture(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(36, 36, 3), dtype=np.uint8)).save(path)
    return path


def test_image_folder_becomes_image_rows_with_paths_relative_to_the_store(tiny, tmp_path):
    folder = tmp_path / "images"
    files = [save_picture(folder / "Ann" / "0.png", 0), save_picture(folder / "Ann" / "1.png", 1),
             save_picture(folder / "Bo Li__7.png", 2), save_picture(folder / "Cy.jpg", 3)]
    out = tmp_path / "stores" / "images.h5"
    args = ["embed", "--images", str(folder), "--model", "tiny", "--out", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    got = read_all(out)
    assert got["names"] == ["Ann", "Ann", "Bo Li", "Cy"]
    assert got["seeds"] == [0, 1, 7, -1]
    assert got["kinds"] == ["image"] * 4 and got["space"] == "open_clip:tiny:seed0:image"
    assert got["images"] == ["../images/Ann/0.png", "../images/Ann/1.png", "../images/Bo Li__7.png",
                             "../images/Cy.jpg"]
    assert [(out.parent / p).resolve() for p in got["images"]] == [f.resolve() for f in files]
    np.testing.assert_allclose(got["x"], tiny.encode_images(files), atol=1e-6)
    assert "0 rows written, 4 already" in runner.invoke(app, args).output


def test_an_images_csv_sidecar_names_the_images(tmp_path):
    folder = tmp_path / "gen"
    save_picture(folder / "a.png", 0)
    save_picture(folder / "b.png", 1)
    (folder / "images.csv").write_text("image,name,prompt,seed\na.png,Vicki,a photo of Vicki,11\n"
                                       "b.png,Mona Lisa,,\n", encoding="utf-8")
    rows = image_rows(folder)
    assert [(r.name, r.prompt, r.seed) for r in rows] == [("Vicki", "a photo of Vicki", 11), ("Mona Lisa", "", -1)]
    out = tmp_path / "gen.h5"
    result = runner.invoke(app, ["embed", "--images", str(folder), "--model", "tiny", "--out", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert read_all(out)["images"] == ["gen/a.png", "gen/b.png"]


def run_main(monkeypatch, capsys, args: list[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["namesae", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error: "), err
    return err[0]


def test_bad_input_exits_2_with_one_clear_line(monkeypatch, capsys, names_file, tmp_path):
    out = str(tmp_path / "x.h5")
    line = run_main(monkeypatch, capsys, ["embed", "--names", str(tmp_path / "nope.txt"), "--model", "tiny",
                                          "--out", out])
    assert "nope.txt: name file not found" in line
    line = run_main(monkeypatch, capsys, ["embed", "--names", str(names_file), "-t", "a photo", "--model", "tiny",
                                          "--out", out])
    assert "has no {name}" in line
    line = run_main(monkeypatch, capsys, ["embed", "--names", str(names_file), "--out", out])
    assert "--model is required" in line
    line = run_main(monkeypatch, capsys, ["embed", "--model", "tiny", "--out", out])
    assert "nothing to embed" in line
    line = run_main(monkeypatch, capsys, ["embed", "--names", str(names_file), "--images", str(tmp_path),
                                          "--model", "tiny", "--out", out])
    assert "run embed twice" in line
    assert not Path(out).exists()


def test_a_store_of_another_space_or_dim_is_refused(monkeypatch, capsys, names_file, tmp_path):
    other = tmp_path / "other.h5"
    write_store(other, np.ones((1, 64)) / 8.0, ["Ann"], ["Ann"], "text", space="open_clip:tiny:seed9:text",
                normalized=True, seeds=[-1], images=[""])
    line = run_main(monkeypatch, capsys, embed_args(names_file, other))
    assert "store holds space 'open_clip:tiny:seed9:text' but this job writes 'open_clip:tiny:seed0:text'" in line
    narrow = tmp_path / "narrow.h5"
    write_store(narrow, np.ones((1, 8)) / np.sqrt(8), ["Ann"], ["Ann"], "text", space="open_clip:tiny:seed0:text",
                normalized=True, seeds=[-1], images=[""])
    line = run_main(monkeypatch, capsys, embed_args(names_file, narrow))
    assert "store has dim 8 but the encoder gives 64" in line
    assert len(EmbeddingStore.open(narrow)) == 1


def test_console_script_reports_bad_input_on_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from namesae.cli import main; main()", "embed", "--names",
         str(tmp_path / "missing.csv"), "--model", "tiny", "--out", str(tmp_path / "x.h5")],
        check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"namesae: error: {tmp_path / 'missing.csv'}: name file not found"]


def test_a_toml_config_sets_the_job_and_command_line_options_override_it(monkeypatch, capsys, names_file, tmp_path):
    config = tmp_path / "embed.toml"
    config.write_text('[embed]\nmodel = "tiny"\npretrained = "seed4"\ntemplates = ["{name} at dusk"]\n'
                      'normalize = false\n', encoding="utf-8")
    out = tmp_path / "cfg.h5"
    result = runner.invoke(app, ["embed", "--config", str(config), "--names", str(names_file), "--out", str(out),
                                 "--no-progress", "-t", "{name} at noon"])
    assert result.exit_code == 0, result.output
    got = read_all(out)
    assert got["space"] == "open_clip:tiny:seed4:text" and not got["normalized"]
    assert got["prompts"] == [f"{n} at noon" for n in NAMES]
    config.write_text('[embed]\nmodel = "tiny"\nbatchsize = 8\n', encoding="utf-8")
    line = run_main(monkeypatch, capsys, ["embed", "--config", str(config), "--names", str(names_file),
                                          "--out", str(out)])
    assert "unknown field(s) ['batchsize']" in line
