"""Hugging Face datasets in and out: `namesae embed --dataset` on an imagefolder and a save_to_disk folder,
`namesae export` to a Dataset folder and parquet, and `store_from_hf` rebuilding the store bit for bit."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from namesae.cli import app, main
from namesae.datasets_io import dataset_images_dir, export_store, store_from_hf
from namesae.encoders import load_encoder
from namesae.errors import StoreError
from namesae.runs import read_run
from namesae.store import EmbeddingStore, write_store

datasets = pytest.importorskip("datasets")
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny():
    return load_encoder("tiny")


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(36, 36, 3), dtype=np.uint8))


def save_picture(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(seed).save(path)
    return path


def read_all(path: Path) -> dict:
    with EmbeddingStore.open(path) as s:
        return {"names": s.names.tolist(), "prompts": s.prompts.tolist(), "kinds": s.kinds.tolist(),
                "seeds": s.seeds.tolist(), "images": None if s.images is None else s.images.tolist(),
                "x": s.read(), "space": s.space, "dim": s.dim, "normalized": s.normalized, "dtype": s.dtype,
                "attrs": {k: v for k, v in s.attrs.items() if not k.startswith("namesae_")}}


def embed(dataset: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["embed", "--dataset", str(dataset), "--model", "tiny", "--out", str(out),
                                 "--no-progress", *extra])
    assert result.exit_code == 0, result.output
    return result.output


def test_an_imagefolder_is_named_by_its_class_folders_and_a_rerun_adds_nothing(tiny, tmp_path):
    folder = tmp_path / "faces"
    files = [save_picture(folder / "Ann" / "0.png", 0), save_picture(folder / "Ann" / "1.png", 1),
             save_picture(folder / "Bo Li" / "2.png", 2)]
    out = tmp_path / "stores" / "image.h5"
    assert "3 rows written, 0 already in the store" in embed(folder, out)
    got = read_all(out)
    assert got["names"] == ["Ann", "Ann", "Bo Li"] and got["kinds"] == ["image"] * 3
    assert got["prompts"] == [""] * 3 and got["seeds"] == [-1] * 3
    assert [(out.parent / p).resolve() for p in got["images"]] == [f.resolve() for f in files]
    assert got["space"] == "open_clip:tiny:seed0:image"
    np.testing.assert_allclose(got["x"], tiny.encode_images(files), atol=1e-6)

    assert "0 rows written, 3 already in the store" in embed(folder, out)
    assert read_all(out)["images"] == got["images"]


def test_an_imagefolder_metadata_csv_gives_names_prompts_and_seeds(tmp_path):
    folder = tmp_path / "gen"
    save_picture(folder / "a.png", 0)
    save_picture(folder / "b.png", 1)
    (folder / "metadata.csv").write_text("file_name,person,caption,seed\na.png,Vicki,a photo of Vicki,11\n"
                                         "b.png,Mona Lisa,,\n", encoding="utf-8")
    out = tmp_path / "gen.h5"
    embed(folder, out, "--name-column", "person", "--prompt-column", "caption", "--seed-column", "seed")
    got = read_all(out)
    assert list(zip(got["names"], got["prompts"], got["seeds"])) == [("Vicki", "a photo of Vicki", 11),
                                                                     ("Mona Lisa", "", -1)]
    assert got["images"] == ["gen/a.png", "gen/b.png"]


def saved_dataset(tmp_path: Path) -> tuple[Path, list[Image.Image]]:
    """A save_to_disk dataset holding its images as bytes: two PNGs and a JPEG (decoded, for the truth)."""
    jpeg = io.BytesIO()
    picture(2).save(jpeg, "JPEG")
    cells = [picture(0), picture(1), {"bytes": jpeg.getvalue(), "path": None}]
    features = datasets.Features({"image": datasets.Image(), "person": datasets.Value("string"),
                                  "caption": datasets.Value("string"), "seed": datasets.Value("int64")})
    columns = {"image": cells, "person": ["Ann", "Bo Li", "Ann"],
               "caption": ["a photo of Ann", "a photo of Bo Li", None], "seed": [3, 4, 5]}
    ds = datasets.Dataset.from_dict(columns, features=features)
    folder = tmp_path / "saved"
    ds.save_to_disk(str(folder))
    truth = [picture(0), picture(1), Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB")]
    return folder, truth


def test_dataset_images_held_as_bytes_are_written_once_as_pngs_beside_the_store(tiny, tmp_path):
    folder, truth = saved_dataset(tmp_path)
    out = tmp_path / "run" / "image.h5"
    args = ("--name-column", "person", "--prompt-column", "caption", "--seed-column", "seed")
    assert "3 rows written" in embed(folder, out, *args)
    got = read_all(out)
    assert got["names"] == ["Ann", "Bo Li", "Ann"] and got["seeds"] == [3, 4, 5]
    assert got["prompts"] == ["a photo of Ann", "a photo of Bo Li", ""]
    files = [out.parent / p for p in got["images"]]
    assert all(f.is_file() and f.parent == dataset_images_dir(out) and f.suffix == ".png" for f in files)
    for f, want in zip(files, truth):
        with Image.open(f) as im:
            assert im.format == "PNG" and np.array_equal(np.asarray(im.convert("RGB")), np.asarray(want))
    np.testing.assert_allclose(got["x"], tiny.encode_images(truth), atol=1e-6)

    stamps = [f.stat().st_mtime_ns for f in files]
    assert "0 rows written, 3 already in the store" in embed(folder, out, *args)
    assert len(read_all(out)["names"]) == 3
    assert sorted(dataset_images_dir(out).iterdir()) == sorted(files)
    assert [f.stat().st_mtime_ns for f in files] == stamps


def run_main(monkeypatch, capsys, args: list[str]) -> str:
    monkeypatch.setattr(sys, "argv", ["namesae", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error: "), err
    return err[0]


def test_bad_datasets_are_refused_in_one_line_before_anything_is_written(monkeypatch, capsys, tmp_path):
    out = tmp_path / "x.h5"
    base = ["embed", "--model", "tiny", "--out", str(out), "--dataset"]
    line = run_main(monkeypatch, capsys, [*base, str(tmp_path / "nowhere")])
    assert "nowhere: dataset folder not found" in line

    folder = tmp_path / "flat"
    save_picture(folder / "a.png", 0)
    line = run_main(monkeypatch, capsys, [*base, str(folder)])
    assert "no column 'name' for the name (columns: image); pass --name-column COLUMN" in line
    line = run_main(monkeypatch, capsys, [*base, str(folder), "--name-column", "image", "--seed-column", "s"])
    assert "no column 's' for the seed (columns: image); pass --seed-column COLUMN" in line

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{", encoding="utf-8")
    line = run_main(monkeypatch, capsys, [*base, str(broken)])
    assert "broken: not a readable Hugging Face dataset" in line

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty: not a readable Hugging Face dataset" in run_main(monkeypatch, capsys, [*base, str(empty)])
    line = run_main(monkeypatch, capsys, [*base, str(folder), "--images", str(folder)])
    assert "run embed twice" in line
    assert not out.exists()


def assert_same_store(got: dict, want: dict) -> None:
    assert np.array_equal(got["x"], want["x"]) and got["x"].dtype == want["x"].dtype
    for key in ("names", "prompts", "kinds", "seeds", "images", "space", "dim", "normalized", "dtype",
                "attrs"):
        assert got[key] == want[key], key


def test_a_store_exported_to_hf_and_parquet_reloads_bit_for_bit(tiny, tmp_path):
    folder, _ = saved_dataset(tmp_path)
    store = tmp_path / "run" / "image.h5"
    embed(folder, store, "--name-column", "person", "--prompt-column", "caption", "--seed-column", "seed")
    want = read_all(store)

    result = runner.invoke(app, ["export", "--store", str(store), "--format", "hf", "--out",
                                 str(tmp_path / "run" / "export")])
    assert result.exit_code == 0, result.output
    assert "export: 3 rows of space open_clip:tiny:seed0:image as hf" in result.output
    assert read_run(tmp_path / "run").path("export") == tmp_path / "run" / "export"
    ds = datasets.load_from_disk(str(tmp_path / "run" / "export"))
    assert ds.column_names == ["name", "prompt", "kind", "seed", "image", "embedding"]
    assert ds[0]["name"] == "Ann" and Path(ds[0]["image"]).is_file()
    meta = json.loads(ds.info.description)
    assert meta["space"] == want["space"] and meta["dim"] == want["dim"] == 64 and meta["normalized"]

    export_store(store, tmp_path / "run" / "image.parquet", "parquet")
    for i, source in enumerate([tmp_path / "run" / "export", ds, tmp_path / "run" / "image.parquet"]):
        back = tmp_path / "run" / f"back{i}.h5"
        store_from_hf(source, back)
        assert_same_store(read_all(back), want)


def test_a_float16_text_store_without_images_keeps_its_dtype_and_attributes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names, prompts = ["Zoë", "Vicki", "Zoë", "Al", "Bo"], ["a", "b", "c", "d", "e"]
    store = write_store(tmp_path / "text.h5", x, names, prompts, "text", "open_clip:tiny:seed0:text",
                        normalized=True, dtype="float16", attrs={"encoder": "open_clip", "model": "tiny"})
    want = read_all(store)
    assert want["images"] is None and want["dtype"] == "float16"
    export_store(store, tmp_path / "text.parquet", "parquet")
    store_from_hf(tmp_path / "text.parquet", tmp_path / "back.h5")
    assert_same_store(read_all(tmp_path / "back.h5"), want)
    with pytest.raises(StoreError, match="already exists"):
        store_from_hf(tmp_path / "text.parquet", tmp_path / "back.h5")


def test_what_is_not_an_export_is_refused_in_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": ["Ann"]}), tmp_path / "other.parquet")
    with pytest.raises(StoreError, match="not a namesae store export"):
        store_from_hf(tmp_path / "other.parquet", tmp_path / "back.h5")
    with pytest.raises(StoreError, match="export not found"):
        store_from_hf(tmp_path / "nowhere", tmp_path / "back.h5")
    assert not (tmp_path / "back.h5").exists()
