"""The embedding store keeps every row exactly once, survives kills, merges shards and refuses bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from namesae.errors import StoreError
from namesae.store import EmbeddingStore, merge_stores, write_store


def rows(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_round_trip_keeps_every_field(tmp_path):
    x = rows(10)
    names = [f"Name {i // 2}" for i in range(10)]
    prompts = [f"a photo of {n}" for n in names]
    path = write_store(tmp_path / "s.h5", x, names, prompts, "image", space="test:image",
                       seeds=list(range(10)), images=[f"img/{i}.png" for i in range(10)])
    with EmbeddingStore.open(path) as s:
        assert len(s) == 10 and s.dim == 8 and s.space == "test:image" and not s.normalized
        np.testing.assert_array_equal(s.read(), x)
        assert s.names.tolist() == names and s.prompts.tolist() == prompts
        assert s.kinds.tolist() == ["image"] * 10
        assert s.seeds.tolist() == list(range(10))
        assert s.images[3] == "img/3.png"
        np.testing.assert_array_equal(s.rows_of("Name 2"), [4, 5])
        assert s.unique_names() == [f"Name {i}" for i in range(5)]
        np.testing.assert_array_equal(s.read_rows([7, 1, 7]), x[[7, 1, 7]])
        assert s.attrs["format_version"] == 1


def test_float16_store_and_unicode_names(tmp_path):
    x = rows(4)
    names = ["Zoë", "Björk", "李小龙", "<script>alert(1)</script>"]
    path = write_store(tmp_path / "u.h5", x, names, names, "text", space="t", dtype="float16")
    with EmbeddingStore.open(path) as s:
        assert s.dtype == "float16" and s.names.tolist() == names
        np.testing.assert_allclose(s.read(), x, atol=2e-3)
        assert (s.seeds == -1).all()


def test_chunked_reads_cover_every_row_once(tmp_path):
    x = rows(1000)
    path = write_store(tmp_path / "c.h5", x, ["a"] * 1000, ["p"] * 1000, "text", space="t", chunk_rows=64)
    with EmbeddingStore.open(path) as s:
        blocks = list(s.iter_chunks(rows_per_chunk=300))
        assert [b[0] for b in blocks] == [0, 300, 600, 900]
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), x)
        idx = np.random.default_rng(1).permutation(1000)[:200]
        np.testing.assert_array_equal(s.read_rows(idx), x[idx])


def _work(n):
    return [(f"N{i}", f"a photo of N{i}") for i in range(n)]


def _run_job(path, x, work, stop_after=None, chunk=4):
    """A resumable embed-like job: skip what is done, append in chunks; optionally die after some chunks."""
    store = EmbeddingStore.open(path, "a") if path.exists() else EmbeddingStore.create(path, x.shape[1], "t")
    with store:
        done = store.done_keys()
        todo = [i for i, (n, p) in enumerate(work) if ("text", n, p, -1) not in done]
        for c, start in enumerate(range(0, len(todo), chunk)):
            if stop_after is not None and c == stop_after:
                raise KeyboardInterrupt
            idx = todo[start:start + chunk]
            store.append(x[idx], [work[i][0] for i in idx], [work[i][1] for i in idx], "text")


def test_resume_after_kill_leaves_exactly_the_expected_rows(tmp_path):
    x, work, path = rows(22), _work(22), tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        _run_job(path, x, work, stop_after=3)
    with EmbeddingStore.open(path) as s:
        assert len(s) == 12
    _run_job(path, x, work)
    _run_job(path, x, work)  # a second restart adds nothing
    with EmbeddingStore.open(path) as s:
        assert len(s) == 22
        assert s.names.tolist() == [n for n, _ in work]
        np.testing.assert_array_equal(s.read(), x)


def test_rows_of_an_interrupted_append_are_ignored_then_replaced(tmp_path):
    x, path = rows(8), tmp_path / "k.h5"
    with EmbeddingStore.create(path, 8, "t") as s:
        s.append(x[:4], list("abcd"), list("abcd"), "text")
    # Simulate a kill after the datasets grew but before the commit mark moved.
    with h5py.File(path, "r+") as h5:
        for key in ("embeddings", "name", "prompt", "kind", "seed", "image"):
            h5[key].resize(6, axis=0)
        h5["embeddings"][4:6] = 99.0
    with EmbeddingStore.open(path) as s:
        assert len(s) == 4 and s.names.tolist() == list("abcd")
    with EmbeddingStore.open(path, "a") as s:
        s.append(x[4:], list("efgh"), list("efgh"), "text")
    with EmbeddingStore.open(path) as s:
        assert s.names.tolist() == list("abcdefgh")
        np.testing.assert_array_equal(s.read(), x)


def test_merge_of_two_shards_is_deterministic(tmp_path):
    a = write_store(tmp_path / "a.h5", rows(3, seed=1), ["x", "y", "z"], ["p"] * 3, "image", "t", seeds=[0, 1, 2])
    b = write_store(tmp_path / "b.h5", rows(2, seed=2), ["w", "v"], ["p"] * 2, "image", "t", seeds=[3, 4])
    merged = merge_stores([a, b], tmp_path / "m.h5")
    with EmbeddingStore.open(merged) as m:
        assert m.names.tolist() == ["x", "y", "z", "w", "v"]
        np.testing.assert_array_equal(m.read(), np.concatenate([rows(3, seed=1), rows(2, seed=2)]))
        assert m.seeds.tolist() == [0, 1, 2, 3, 4]
    merged_sorted = merge_stores([b, a], tmp_path / "ms.h5", sort=True)
    with EmbeddingStore.open(merged_sorted) as m:
        assert m.names.tolist() == ["v", "w", "x", "y", "z"]
        np.testing.assert_array_equal(m.read()[0], rows(2, seed=2)[1])


def test_merge_refuses_shards_of_different_spaces(tmp_path):
    a = write_store(tmp_path / "a.h5", rows(2), ["x", "y"], ["p", "p"], "text", "space-A")
    b = write_store(tmp_path / "b.h5", rows(2), ["x", "y"], ["p", "p"], "text", "space-B")
    with pytest.raises(StoreError, match="space"):
        merge_stores([a, b], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_appending_the_wrong_dimension_names_the_store(tmp_path):
    with EmbeddingStore.create(tmp_path / "d.h5", 8, "t") as s:
        with pytest.raises(StoreError, match=r"d\.h5.*dim is 8"):
            s.append(rows(2, d=5), ["a", "b"], ["a", "b"], "text")


def test_nan_rows_are_refused_on_write_and_reported_on_read(tmp_path):
    x = rows(3)
    x[1, 2] = np.nan
    with pytest.raises(StoreError, match="NaN"):
        write_store(tmp_path / "n.h5", x, list("abc"), list("abc"), "text", "t")
    with h5py.File(tmp_path / "hand.h5", "w") as h5:  # a store written by another tool
        h5["embeddings"] = x
        for f in ("name", "prompt", "kind"):
            h5[f] = np.array(["a", "b", "c"] if f != "kind" else ["text"] * 3, dtype=h5py.string_dtype())
        h5.attrs.update(format_version=1, space="t", dim=8, normalized=False)
    with EmbeddingStore.open(tmp_path / "hand.h5") as s:
        assert s.names.tolist() == ["a", "b", "c"]
        with pytest.raises(StoreError, match="row 1 holds NaN"):
            s.validate()


def test_missing_dataset_and_wrong_dim_attribute_are_reported(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as h5:
        h5["embeddings"] = rows(2)
        h5.attrs.update(space="t", dim=8)
    with pytest.raises(StoreError, match=r"m\.h5: missing dataset\(s\) \['name', 'prompt', 'kind'\]"):
        EmbeddingStore.open(tmp_path / "m.h5")
    path = write_store(tmp_path / "w.h5", rows(2), ["a", "b"], ["a", "b"], "text", "t")
    with h5py.File(path, "r+") as h5:
        h5.attrs["dim"] = 16
    with pytest.raises(StoreError, match="attribute 'dim' = 16"):
        EmbeddingStore.open(path)


def test_truncated_file_is_reported_as_damaged(tmp_path):
    path = write_store(tmp_path / "t.h5", rows(2000, d=32), ["a"] * 2000, ["p"] * 2000, "text", "t")
    data = path.read_bytes()
    for cut in (len(data) // 2, 200):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(StoreError, match="damaged"):
            with EmbeddingStore.open(bad) as s:
                s.validate()


def test_write_store_is_atomic_on_failure(tmp_path):
    path = write_store(tmp_path / "a.h5", rows(2), ["a", "b"], ["a", "b"], "text", "t")
    with pytest.raises(StoreError):
        write_store(path, rows(2), ["a"], ["a", "b"], "text", "t")  # wrong name count
    with EmbeddingStore.open(path) as s:  # the old store is untouched
        assert s.names.tolist() == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]
