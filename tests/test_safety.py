"""Ctrl-C says how to resume; SAE weights are hashed; CSV cells cannot run formulas; caps and limits are stated."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import sys

import numpy as np
import pytest

from namesae.errors import ConfigError, NamesaeError


def test_ctrl_c_prints_how_to_resume_and_exits_130(monkeypatch, capsys):
    import namesae.report
    from namesae.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(namesae.report, "build_report", interrupted)
    monkeypatch.setattr(sys, "argv", ["namesae", "report", "--run", "."])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "namesae: interrupted; run the same command again to resume"]


@pytest.fixture
def sae_dir(tmp_path):
    from namesae.sae.model import build_sae_from_weights

    rng = np.random.default_rng(0)
    W_dec = rng.normal(size=(12, 6))
    build_sae_from_weights(W_dec.T, np.zeros(12), W_dec, np.zeros(6), space="t:image", out_dir=tmp_path / "sae")
    return tmp_path / "sae"


def test_a_flipped_weight_byte_is_refused_and_verify_false_skips_the_hash(sae_dir):
    from namesae.sae import load_sae

    info = json.loads((sae_dir / "namesae.json").read_text())
    assert info["format_version"] == 2 and len(info["checksums"]["sae_weights.safetensors"]) == 64
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    before = load_sae(sae_dir).encode(x)
    weights = sae_dir / "sae_weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40  # the exponent of the last encoder bias: valid safetensors, different numbers
    weights.write_bytes(bytes(data))
    with pytest.raises(NamesaeError, match=r"sae_weights.safetensors: sha256 differs.*retrain"):
        load_sae(sae_dir)
    unverified = load_sae(sae_dir, verify=False).encode(x)
    assert not np.array_equal(unverified.numpy(), before.numpy())  # what verification protects against


def test_a_folder_without_namesae_json_loads_with_a_warning_and_the_space_check_warns(sae_dir, tmp_path, caplog):
    from namesae.sae import check_space, load_sae
    from namesae.store import EmbeddingStore, write_store

    plain = tmp_path / "plain"
    shutil.copytree(sae_dir, plain)
    (plain / "namesae.json").unlink()
    store = write_store(tmp_path / "s.h5", np.zeros((2, 6)), ["a", "b"], ["a", "b"], "image", space="other:image")
    with caplog.at_level(logging.WARNING):
        sae = load_sae(plain)
        with EmbeddingStore.open(store) as st:
            check_space(sae, st)
            check_space(sae, st)  # an SAE warns once, however often it is checked
    assert sae.space is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "no namesae.json" in messages and "weights not verified" in messages
    assert "only the dimension" in messages and messages.count("records no embedding space") == 1


def test_csv_cells_that_start_a_formula_are_defused_and_numbers_are_not():
    from namesae.io import csv_text, csv_unescape

    rows = [{"name": "=HYPERLINK(\"http://x\")", "score": -1.5}, {"name": "+1", "score": 2},
            {"name": "@SUM(A1)", "score": 0}, {"name": "-Ann", "score": -3}, {"name": "Ada", "score": 1}]
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows, ["name", "score"]))))
    assert [r["name"] for r in parsed] == ["'=HYPERLINK(\"http://x\")", "'+1", "'@SUM(A1)", "'-Ann", "Ada"]
    assert [r["score"] for r in parsed] == ["-1.5", "2", "0", "-3", "1"]
    assert [csv_unescape(r["name"]) for r in parsed] == [r["name"] for r in rows]


def test_identity_csv_of_a_hostile_name_is_defused(tmp_path):
    from namesae.identity import write_identity

    class Rec:
        def to_dict(self):
            return {"name": "=cmd|' /C calc'!A0", "n_rows": 3, "dedicated": False}

    from namesae.identity import IdentityConfig, IdentityResult

    result = IdentityResult([Rec()], IdentityConfig(), [], None, [])
    _, csv_path = write_identity(result, tmp_path)
    row = next(csv.DictReader(csv_path.open()))
    assert row["name"] == "'=cmd|' /C calc'!A0"


def test_top_beyond_a_builtin_corpus_is_refused_stating_the_cap():
    from namesae.names import builtin_names

    assert len(builtin_names("first", top=300)) == 1654
    with pytest.raises(ConfigError, match=r"--top 2000: .* only 300 ranks .* use --top 300 or less"):
        builtin_names("first", top=2000)
    with pytest.raises(ConfigError, match="only 1000 surnames"):
        builtin_names("surnames", top=1001)


def test_a_batch_too_large_for_memory_is_refused_up_front_with_the_limit(monkeypatch):
    from namesae.sae import data

    monkeypatch.setattr(data, "available_memory", lambda: 8 * 2**30)
    data.check_training_memory(4096, 1280, 10240, 65536, on_cpu=True)
    with pytest.raises(ConfigError, match=r"batch_size = 100000000: .* more than the 8.0 GiB available; the limit "
                                          r"here is about batch_size = [\d,]+"):
        data.check_training_memory(100_000_000, 1280, 10240, 65536, on_cpu=True)
