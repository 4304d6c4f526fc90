"""Generation: work lists, rank slices, resume after a crash or a kill, torchrun sharding, merging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from namesae.errors import ConfigError
from namesae.generate import (
    GenerateConfig,
    Ranks,
    image_relpath,
    merge_generated,
    name_slug,
    rank_slice,
    run_generate,
    work_list,
)
from namesae.store import EmbeddingStore

NAMES = ["Vicki", "Barack Obama", "Zoë Ñúñez"]
TEMPLATES = ("a photo of {name}", "{name} as an astronaut")
N = 3
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_k22(tmp_path_factory) -> Path:
    from namesae.decoders import build_tiny_pipeline

    return build_tiny_pipeline("kandinsky22", tmp_path_factory.mktemp("gen") / "k22", seed=0, dim=64)


@pytest.fixture(scope="module")
def parts(tiny_k22):
    from namesae.decoders import load_decoder
    from namesae.encoders import load_encoder

    return load_decoder("kandinsky22", str(tiny_k22)), load_encoder("tiny", "seed0")


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("names") / "names.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


def cfg(**kw) -> GenerateConfig:
    return GenerateConfig(**{"n": N, "templates": TEMPLATES, "batch_size": 1, **kw})


def rows_of(path: Path) -> dict:
    with EmbeddingStore.open(path) as s:
        return {"names": s.names.tolist(), "prompts": s.prompts.tolist(), "seeds": s.seeds.tolist(),
                "images": s.images.tolist(), "kinds": s.kinds.tolist(), "x": s.read(), "space": s.space}


def assert_complete(out: Path) -> dict:
    """Exactly N image rows per (name, prompt), one per key, each with its PNG on disk."""
    rows = rows_of(out / "image.h5")
    keys = list(zip(rows["names"], rows["prompts"], rows["seeds"]))
    assert len(keys) == len(set(keys)) == len(NAMES) * len(TEMPLATES) * N
    assert set(Counter((n, p) for n, p, _ in keys).values()) == {N}
    assert set(rows["kinds"]) == {"image"} and rows["space"] == "open_clip:tiny:seed0:image"
    assert all((out / im).is_file() for im in rows["images"])
    assert len(list((out / "images").rglob("*.png"))) == len(keys)
    return rows


# ---- work lists -----------------------------------------------------------------------------------------------------
def test_work_list_has_every_name_template_and_seed_once():
    work = work_list(NAMES, TEMPLATES, N, seed_offset=10)
    assert len(work) == len(NAMES) * len(TEMPLATES) * N
    assert [w.seed for w in work[:N]] == [10, 11, 12]
    assert work[0].prompt == "a photo of Vicki" and work[N].prompt == "Vicki as an astronaut"
    assert len({w.image for w in work}) == len(work)


def test_rank_slices_partition_the_work_by_whole_prompts():
    work = work_list(NAMES, TEMPLATES, N)
    slices = [rank_slice(work, r, 4) for r in range(4)]
    assert sorted((w for s in slices for w in s), key=work.index) == work
    for s in slices:
        assert all(Counter((w.name, w.prompt) for w in s)[(w.name, w.prompt)] == N for w in s)
    assert rank_slice(work, 1, 4) == slices[1]  # deterministic
    with pytest.raises(ConfigError, match="rank must be in"):
        rank_slice(work, 4, 4)


def test_image_folders_are_safe_and_distinct_per_name():
    slugs = {name_slug(n) for n in ["A/B", "a/b", "../etc", "Zoë", "Zoe", "名前"]}
    assert len(slugs) == 6 and all("/" not in s and not s.startswith(".") for s in slugs)
    assert image_relpath("A/B", "p", 3).startswith("images/A_B-") and image_relpath("A/B", "p", 3).endswith("_s3.png")


# ---- resume ---------------------------------------------------------------------------------------------------------
class Crashing:
    """An encoder that dies on its k-th call, as a killed process would, after the PNG was written."""

    def __init__(self, encoder, crash_at: int) -> None:
        self.encoder, self.crash_at, self.calls = encoder, crash_at, 0
        self.dim, self.normalized, self.attrs = encoder.dim, encoder.normalized, encoder.attrs

    def space(self, kind: str) -> str:
        return self.encoder.space(kind)

    def encode_images(self, images):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt("killed")
        return self.encoder.encode_images(images)


class Counting:
    """A decoder wrapper that counts the images it draws."""

    def __init__(self, decoder) -> None:
        self.decoder, self.drawn = decoder, 0
        self.info, self.settings, self.space = decoder.info, decoder.settings, decoder.space

    def generate(self, prompts, seeds):
        self.drawn += len(seeds)
        return self.decoder.generate(prompts, seeds)


def test_crash_between_drawing_and_storing_resumes_without_redrawing(tmp_path, parts):
    decoder, encoder = parts
    out = tmp_path / "gen"
    with pytest.raises(KeyboardInterrupt):
        run_generate(decoder, Crashing(encoder, crash_at=5), NAMES, out, cfg())
    with EmbeddingStore.open(out / "shards" / "rank0.h5") as shard:
        assert len(shard) == 4  # four images stored; the fifth was drawn and written, then the job died
    assert len(list((out / "images").rglob("*.png"))) == 5
    counting = Counting(decoder)
    result = run_generate(counting, encoder, NAMES, out, cfg())
    total = len(NAMES) * len(TEMPLATES) * N
    assert (result.shard.skipped, result.shard.embedded_from_disk, result.shard.generated) == (4, 1, total - 5)
    assert counting.drawn == total - 5
    assert_complete(out)
    again = run_generate(Counting(decoder), encoder, NAMES, out, cfg())  # finished: nothing to do, no new rows
    assert again.shard.generated == 0 and again.summary["rows"] == total


def test_changing_the_number_of_processes_between_runs_never_duplicates_rows(tmp_path, parts):
    decoder, encoder = parts
    out = tmp_path / "gen"
    run_generate(decoder, encoder, NAMES, out, cfg(), Ranks(1, 2, 1, False))  # half the work, manual sharding
    assert not (out / "image.h5").exists()  # manual shards wait for an explicit merge
    merge_generated(out)
    result = run_generate(decoder, encoder, NAMES, out, cfg())  # one process: rank 0 of 1 redoes nothing of rank 1
    assert result.shard.skipped == len(rank_slice(work_list(NAMES, TEMPLATES, N), 1, 2))
    rows = assert_complete(out)
    order = [(w.name, w.prompt, w.seed) for w in work_list(NAMES, TEMPLATES, N)]
    assert list(zip(rows["names"], rows["prompts"], rows["seeds"])) == order  # work-list order after merging
    sidecar = (out / "images.csv").read_text(encoding="utf-8").splitlines()
    assert sidecar[0] == "image,name,prompt,seed" and len(sidecar) == len(order) + 1


def test_generated_images_carry_name_prompt_seed_and_decoder(tmp_path, parts):
    from namesae.decoders import read_png_metadata

    decoder, encoder = parts
    out = tmp_path / "gen"
    run_generate(decoder, encoder, NAMES[:1], out, cfg(n=1, templates=("a photo of {name}",)))
    rows = rows_of(out / "image.h5")
    meta = read_png_metadata(out / rows["images"][0])
    assert (meta["name"], meta["prompt"], meta["seed"]) == ("Vicki", "a photo of Vicki", "0")
    assert json.loads(meta["decoder"])["kind"] == "kandinsky22"
    with EmbeddingStore.open(out / "image.h5") as s:
        assert json.loads(s.attrs["decoder"])["space"] == "open_clip:tiny:seed0:image"
    # the stored embedding is the encoder's embedding of the PNG on disk
    x = encoder.encode_images([out / rows["images"][0]])
    assert np.allclose(rows["x"][0], x[0], atol=1e-6)


# ---- the CLI: kill and restart, torchrun ----------------------------------------------------------------------------
def cli_args(tiny_k22: Path, names_file: Path, out: Path) -> list[str]:
    return ["generate", "--names", str(names_file), "--pipeline", "kandinsky22", "--model", str(tiny_k22),
            "--n-images", str(N), "--templates", TEMPLATES[0], "--templates", TEMPLATES[1], "--batch-size", "1", "--out", str(out),
            "--no-progress"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def killed_and_restarted(tmp_path_factory, tiny_k22, names_file) -> Path:
    out = tmp_path_factory.mktemp("killed") / "gen"
    proc = subprocess.Popen([str(BIN / "namesae"), *cli_args(tiny_k22, names_file, out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.joinpath("images").is_dir() and len(list(out.joinpath("images").rglob("*.png"))) >= 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the first run should have been killed midway"
    assert not (out / "image.h5").exists()
    done = subprocess.run([str(BIN / "namesae"), *cli_args(tiny_k22, names_file, out)], env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already done" in done.stdout and f"wrote {len(NAMES) * len(TEMPLATES) * N} rows" in done.stdout
    return out


def test_generate_killed_midway_and_restarted_yields_exactly_n_images_per_name(killed_and_restarted):
    assert_complete(killed_and_restarted)
    record = json.loads((killed_and_restarted / "generate.json").read_text())
    assert record["store"]["rows"] == len(NAMES) * len(TEMPLATES) * N and record["world_size"] == 1


def test_torchrun_with_two_processes_writes_the_same_rows_as_one(tmp_path, tiny_k22, names_file,
                                                                killed_and_restarted):
    out = tmp_path / "gen"
    run = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "namesae"),
                          *cli_args(tiny_k22, names_file, out)], env=ENV, capture_output=True, text=True,
                         timeout=400, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p.name for p in sorted((out / "shards").glob("*.h5"))] == ["rank0.h5", "rank1.h5"]
    for r in (0, 1):
        with EmbeddingStore.open(out / "shards" / f"rank{r}.h5") as shard:
            assert len(shard) == len(NAMES) * len(TEMPLATES) * N // 2  # 6 prompts: 3 each
    one, two = rows_of(killed_and_restarted / "image.h5"), rows_of(out / "image.h5")
    for field in ("names", "prompts", "seeds", "images", "kinds"):
        assert one[field] == two[field]
    assert np.array_equal(one["x"], two["x"])
    for image in one["images"]:  # the same pixels, drawn by another process
        assert (killed_and_restarted / image).read_bytes() == (out / image).read_bytes()


def test_generate_refuses_bad_input_with_one_line(tmp_path, names_file, monkeypatch, capsys):
    from namesae.cli import main

    monkeypatch.setattr(sys, "argv", ["namesae", "generate", "--names", str(names_file), "--pipeline", "dalle",
                                      "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error:") and "pipeline must be one of" in err[0]
    assert not (tmp_path / "o").exists()
