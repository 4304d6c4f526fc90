"""The store under attack: SIGKILLs inside appends, flipped and cut bytes, bad attributes, concurrent writers,
and stores in the old single-file layout. Nothing committed is lost, nothing damaged is read silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from namesae.errors import StoreError
from namesae.store import TIER, EmbeddingStore, StoreBusyError, merge_stores, segments_dir, write_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import reliability

SRC = str(Path(__file__).resolve().parents[1] / "src")


def unit_rows(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def python(code: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """A fresh interpreter running `code` with this worktree's namesae."""
    full_env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


# ---- kills ------------------------------------------------------------------------------------------------------
def test_sigkills_inside_raw_appends_lose_and_duplicate_no_committed_row(tmp_path):
    out = reliability.campaign_store_kills_api(tmp_path, kills=24, seed=1, rows=1500)
    assert out["failures"] == []
    assert out["kills"] >= 24 and out["jobs_finished"] >= 1
    assert out["lost_rows"] == out["duplicated_rows"] == out["unreadable_after_kill"] == out["not_a_prefix"] == 0


def test_sigkills_inside_namesae_embed_resume_to_the_uninterrupted_store(tmp_path):
    out = reliability.campaign_store_kills_embed(tmp_path, kills=6, seed=1, names=60)
    assert out["failures"] == []
    assert out["kills"] >= 6 and out["jobs_finished"] >= 1
    assert out["lost_rows"] == out["duplicated_rows"] == out["unreadable_after_kill"] == 0


# ---- damaged bytes ----------------------------------------------------------------------------------------------
def test_byte_flips_and_truncations_are_refused_in_one_line_or_read_bit_identically(tmp_path):
    out = reliability.campaign_store_flips(tmp_path, trials=120, seed=1, names=40, cli_every=20)
    assert out["failures"] == []
    assert set(out["outcomes"]) <= {"refused", "identical"} and sum(out["outcomes"].values()) == 120
    assert out["outcomes"]["refused"] >= 60  # most random damage lands in data or checksummed metadata
    assert set(out["cli_outcomes"]) <= {"exit2_one_line", "exit0_identical", "exit0_then_refused_on_read"}


def test_64_flipped_bytes_inside_the_embeddings_are_refused_naming_the_file(tmp_path):
    path = write_store(tmp_path / "s.h5", unit_rows(500, 64), ["a"] * 500, ["p"] * 500, "text", "t",
                       normalized=True, dtype="float16", chunk_rows=128)
    with h5py.File(path, "r") as h5:
        offset = h5["embeddings"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    for i in range(offset + 100, offset + 164):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with EmbeddingStore.open(path) as s:
        np.testing.assert_array_equal(s.read(0, 128), unit_rows(500, 64)[:128].astype(np.float16))
        with pytest.raises(StoreError, match=r"s\.h5: damaged dataset 'embeddings'.*restore"):
            s.read(128, 256)


def test_a_normalized_store_refuses_rows_off_the_unit_sphere_on_append_and_on_read(tmp_path):
    with EmbeddingStore.create(tmp_path / "n.h5", 8, "t", normalized=True) as s:
        with pytest.raises(StoreError, match="new row 1 has norm 3 but the store is marked normalized"):
            s.append(np.stack([unit_rows(1)[0], 3 * unit_rows(1)[0]]), ["a", "b"], ["a", "b"], "text")
        assert len(s) == 0
    with h5py.File(tmp_path / "hand.h5", "w") as h5:  # another tool's store, no checksums: the norm still counts
        x = unit_rows(4)
        x[2] *= 383.0
        h5["embeddings"] = x
        for f in ("name", "prompt", "kind"):
            h5[f] = np.array(["a", "b", "c", "d"] if f != "kind" else ["text"] * 4, dtype=h5py.string_dtype())
        h5.attrs.update(space="t", dim=8, normalized=True)
    with EmbeddingStore.open(tmp_path / "hand.h5") as s:
        np.testing.assert_allclose(s.read(0, 2), unit_rows(4)[:2])
        with pytest.raises(StoreError, match=r"hand\.h5: dataset 'embeddings' row 2 has norm 383"):
            s.validate()


@pytest.mark.parametrize(("attr", "value", "message"), [
    ("rows_committed", -5, "'rows_committed' = -5 is not a whole number >= 0"),
    ("rows_committed", "x", "'rows_committed' = 'x' is not a whole number"),
    ("dim", "abc", "'dim' = 'abc' is not a whole number >= 1"),
    ("normalized", "yes", "'normalized' = 'yes' is not a boolean"),
    ("space", 5, "'space' = 5 is not a non-empty string"),
    ("namesae_digests", "{", "damaged: root attribute 'namesae_digests'"),
])
def test_bad_root_attributes_are_one_clear_line(tmp_path, monkeypatch, capsys, attr, value, message):
    path = write_store(tmp_path / "a.h5", unit_rows(3, 64), ["A", "B", "C"], ["A", "B", "C"], "text",
                       reliability.TINY_SPACE, normalized=True, seeds=[-1] * 3, images=[""] * 3)
    with h5py.File(path, "r+") as h5:
        h5.attrs[attr] = value
    with pytest.raises(StoreError, match=message):
        EmbeddingStore.open(path)
    names = tmp_path / "names.txt"
    names.write_text("A\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["namesae", *reliability.embed_args(names, path)])
    from namesae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(f"namesae: error: {path}: ")


def test_a_damaged_manifest_is_refused_and_a_missing_segment_is_named(tmp_path):
    path = tmp_path / "m.h5"
    store = EmbeddingStore.create(path, 8, "t")
    store.append(unit_rows(3), list("abc"), list("abc"), "text")
    store.append(unit_rows(2, seed=1), list("de"), list("de"), "text")
    store.close(fold=False)  # as a killed writer leaves it: base + two committed segments
    manifest = segments_dir(path) / "manifest.json"
    doc = json.loads(manifest.read_text())
    assert [e["rows"] for e in doc["segments"]] == [3, 2]
    with EmbeddingStore.open(path) as s:
        assert s.names.tolist() == list("abcde") and len(s.files) == 3
    manifest.write_text(manifest.read_text().replace('"rows": 3', '"rows": 4'))
    with pytest.raises(StoreError, match=r"manifest\.json: damaged manifest \(checksum mismatch\)"):
        EmbeddingStore.open(path)
    manifest.write_text(json.dumps(doc, indent=1))
    (segments_dir(path) / doc["segments"][1]["file"]).unlink()
    with pytest.raises(StoreError, match=r"seg-.*\.h5: segment listed in .*manifest\.json is missing"):
        EmbeddingStore.open(path)


# ---- leftovers, merges, compaction --------------------------------------------------------------------------------
def test_leftovers_of_a_killed_writer_are_ignored_then_removed_and_tiny_appends_stay_few_files(tmp_path):
    path = tmp_path / "k.h5"
    store = EmbeddingStore.create(path, 8, "t", chunk_rows=16)
    x = unit_rows(120)
    for i in range(120):  # tiny appends: merged by size class, so the folder never holds hundreds of files
        store.append(x[i:i + 1], [f"n{i}"], [f"p{i}"], "text")
        assert len(store.files) <= 1 + 3 * TIER
    store.close(fold=False)
    folder = segments_dir(path)
    (folder / ".seg-000999-0123abcd.h5.tmp-1").write_bytes(b"half a segment")
    (folder / "seg-000998-89abcdef.h5").write_bytes(b"never listed")
    with EmbeddingStore.open(path) as s:
        assert s.names.tolist() == [f"n{i}" for i in range(120)]
        np.testing.assert_array_equal(s.read(), x)
    with EmbeddingStore.open(path, "a") as s:  # a writer removes what is not committed
        assert not (folder / "seg-000998-89abcdef.h5").exists()
        assert not (folder / ".seg-000999-0123abcd.h5.tmp-1").exists()
        s.compact()  # and compaction leaves the single file of the DESIGN.md layout
    assert not folder.exists()
    with EmbeddingStore.open(path) as s:
        assert len(s.files) == 1 and s.names.tolist() == [f"n{i}" for i in range(120)]
        np.testing.assert_array_equal(s.read(), x)


def test_write_store_and_merge_replace_a_store_with_segments_atomically(tmp_path):
    path = tmp_path / "w.h5"
    store = EmbeddingStore.create(path, 8, "t")
    store.append(unit_rows(3), list("abc"), list("abc"), "text")
    store.close(fold=False)
    reader = EmbeddingStore.open(path)  # an old snapshot, still readable after the replacement
    write_store(path, unit_rows(2, seed=5), ["x", "y"], ["x", "y"], "text", "t")
    assert not segments_dir(path).exists()
    with EmbeddingStore.open(path) as s:
        assert s.names.tolist() == ["x", "y"]
    assert reader.names.tolist() == list("abc")
    np.testing.assert_array_equal(reader.read(), unit_rows(3))
    reader.close()
    merged = merge_stores([path, path], tmp_path / "m.h5")
    with EmbeddingStore.open(merged) as m:
        assert m.names.tolist() == ["x", "y", "x", "y"] and len(m.files) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "w.h5"]


# ---- concurrent processes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hdf5_locking", ["TRUE", "FALSE"])
def test_a_second_writer_is_refused_naming_the_pid_while_readers_read_the_committed_rows(tmp_path, hdf5_locking):
    path = tmp_path / "busy.h5"
    writer = EmbeddingStore.create(path, 8, "t")
    writer.append(unit_rows(4), list("abcd"), list("abcd"), "text")
    code = f"""
        from namesae.store import EmbeddingStore
        from namesae.errors import StoreError
        with EmbeddingStore.open({str(path)!r}) as s:
            print(len(s), "".join(s.names.tolist()))
        try:
            EmbeddingStore.open({str(path)!r}, "a")
        except StoreError as err:
            print(type(err).__name__, err)
    """
    proc = python(code, env={"HDF5_USE_FILE_LOCKING": hdf5_locking})
    out, err = proc.communicate(timeout=120)
    writer.close()
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "4 abcd"
    assert lines[1] == f"StoreBusyError {path}: in use by another writer (pid {os.getpid()}); wait or use another --out"
    with pytest.raises(StoreBusyError, match="in use by another writer"), EmbeddingStore.open(path, "a") as s:
        EmbeddingStore.open(path, "a")  # same process, second handle: refused too
        s.close()


@pytest.mark.parametrize("hdf5_locking", ["TRUE", "FALSE"])
def test_two_concurrent_writers_take_turns_and_keep_every_row(tmp_path, hdf5_locking):
    path = tmp_path / "two.h5"
    EmbeddingStore.create(path, 8, "t").close()
    code = """
        import sys, numpy as np
        from namesae.store import EmbeddingStore
        tag, path = sys.argv[1], sys.argv[2]
        rng = np.random.default_rng(ord(tag))
        for batch in range(6):
            x = rng.normal(size=(5, 8)); x /= np.linalg.norm(x, axis=1, keepdims=True)
            with EmbeddingStore.open(path, "a", wait=60) as s:
                names = [f"{tag}{batch}-{i}" for i in range(5)]
                s.append(x, names, names, "text")
        print("done")
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), tag, str(path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": SRC, "HDF5_USE_FILE_LOCKING": hdf5_locking})
             for tag in "AB"]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.strip() == "done", err
    with EmbeddingStore.open(path) as s:
        s.validate()
        names = s.names.tolist()
    assert len(names) == len(set(names)) == 60
    for tag in "AB":  # each writer's rows, all of them, in its own order
        assert [n for n in names if n.startswith(tag)] == [f"{tag}{b}-{i}" for b in range(6) for i in range(5)]


def test_readers_never_see_damage_while_a_writer_appends(tmp_path):
    path = tmp_path / "live.h5"
    EmbeddingStore.create(path, 8, "t", normalized=True, chunk_rows=8).close()
    code = f"""
        import numpy as np
        from namesae.store import EmbeddingStore
        x = np.random.default_rng(0).normal(size=(400, 8)); x /= np.linalg.norm(x, axis=1, keepdims=True)
        with EmbeddingStore.open({str(path)!r}, "a") as s:
            print("open", flush=True)
            for i in range(0, 400, 4):
                s.append(x[i:i + 4], [f"n{{j}}" for j in range(i, i + 4)], ["p"] * 4, "text")
    """
    proc = python(code)
    assert proc.stdout.readline().strip() == "open"
    seen = []
    while proc.poll() is None or not seen:
        with EmbeddingStore.open(path) as s:  # a snapshot of the committed rows, every check applied
            s.validate()
            assert s.names.tolist() == [f"n{j}" for j in range(len(s))]
            seen.append(len(s))
    proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read()
    assert seen == sorted(seen) and len(set(seen)) > 1
    with EmbeddingStore.open(path) as s:
        assert len(s) == 400 and len(s.files) <= 1 + 3 * TIER  # folds replaced the base under the readers


# ---- the old layout ---------------------------------------------------------------------------------------------
def write_old_layout(path: Path, x: np.ndarray, names: list[str], extra_rows: int = 0) -> None:
    """A store as namesae wrote it before segments: resizable datasets appended in place, `rows_committed`."""
    text = h5py.string_dtype("utf-8")
    n = len(x)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("embeddings", data=np.concatenate([x, np.full((extra_rows, x.shape[1]), 9.0, dtype=np.float32)]),
                          maxshape=(None, x.shape[1]), chunks=(4, x.shape[1]))
        for f in ("name", "prompt", "kind", "image"):
            values = {"name": names, "prompt": [f"a photo of {v}" for v in names], "kind": ["image"] * n,
                      "image": [f"img/{i}.png" for i in range(n)]}[f]
            h5.create_dataset(f, data=np.array(values + ["torn"] * extra_rows, dtype=object), dtype=text,
                              maxshape=(None,), chunks=(4,))
        h5.create_dataset("seed", data=np.arange(n + extra_rows), maxshape=(None,), chunks=(4,))
        h5["calibration"] = np.arange(3.0)  # an extra dataset of another tool
        h5.attrs.update(format_version=1, space="old:space:image", dim=x.shape[1], normalized=True,
                        rows_committed=n, note="kept")


def test_old_single_file_stores_read_identically_and_migrate_on_the_first_append(tmp_path):
    path, x = tmp_path / "old.h5", unit_rows(6)
    names = ["Zoë", "Ann", "Ann", "李小龙", "Bo", "Bo"]
    write_old_layout(path, x, names, extra_rows=2)
    with EmbeddingStore.open(path) as s:
        assert len(s) == 6 and s.names.tolist() == names and s.seeds.tolist() == list(range(6))
        np.testing.assert_array_equal(s.read(), x)
        assert s.images.tolist() == [f"img/{i}.png" for i in range(6)] and s.attrs["note"] == "kept"
    before = path.read_bytes()
    with EmbeddingStore.open(path, "a") as s:
        assert path.read_bytes() == before  # opening to append changes nothing
        s.append(unit_rows(2, seed=3), ["Cy", "Cy"], ["c", "c"], "image", seeds=[7, 8], images=["c0", "c1"])
    with EmbeddingStore.open(path) as s:
        assert s.names.tolist() == [*names, "Cy", "Cy"] and s.seeds.tolist() == [0, 1, 2, 3, 4, 5, 7, 8]
        np.testing.assert_array_equal(s.read(), np.concatenate([x, unit_rows(2, seed=3)]))
        assert s.attrs["note"] == "kept" and s.space == "old:space:image"
        assert len(s.files) == 2  # the base, rewritten once in the current layout, and the new rows' segment
    with h5py.File(path, "r") as h5:  # the migrated base is still the DESIGN.md layout, extras kept
        np.testing.assert_array_equal(h5["calibration"][:], np.arange(3.0))
        assert h5["embeddings"].fletcher32 and h5.attrs["rows_committed"] == 6 and h5["name"][5] == b"Bo"
