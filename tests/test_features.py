"""Feature statistics: hand-computed precision/recall, the sparse accumulator against the dense reference, labels."""

from __future__ import annotations

import json
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from namesae.errors import ConfigError, SpaceMismatchError
from namesae.features import (
    FeatureAccumulator,
    FeatureConfig,
    check_space,
    check_vocab_space,
    feature_stats_from_codes,
    top_k_per_group,
    zero_shot_labels,
)
from namesae.identity.reference import dense_mass_count, dense_precision_recall
from namesae.store import EmbeddingStore, write_store

# Rows of two names; feature 0 fires only on "ann", feature 1 on both, feature 2 never.
CODES = np.array([
    [2.0, 1.0, 0.0],  # ann
    [1.0, 0.0, 0.0],  # ann
    [0.0, 3.0, 0.0],  # bob
    [0.0, 1.0, 0.0],  # bob
    [0.0, 0.0, 0.0],  # bob
], dtype=np.float32)
NAMES = ["ann", "ann", "bob", "bob", "bob"]


def _pair(stats, feature: int, name: str) -> int:
    n = stats.names.index(name)
    hit = np.flatnonzero((stats.pair_feature == feature) & (stats.pair_name == n))
    assert hit.size == 1
    return int(hit[0])


def test_precision_and_recall_match_hand_computed_values():
    stats = feature_stats_from_codes(CODES, NAMES)
    prec, rec = stats.pair_precision, stats.pair_recall
    # feature 0: all 3.0 of its mass is ann's; fires on 2/2 of ann's rows.
    assert prec[_pair(stats, 0, "ann")] == pytest.approx(1.0)
    assert rec[_pair(stats, 0, "ann")] == pytest.approx(1.0)
    # feature 1: mass 1 (ann) + 4 (bob) = 5; fires on 1/2 of ann's rows and 2/3 of bob's.
    assert prec[_pair(stats, 1, "ann")] == pytest.approx(0.2)
    assert rec[_pair(stats, 1, "ann")] == pytest.approx(0.5)
    assert prec[_pair(stats, 1, "bob")] == pytest.approx(0.8)
    assert rec[_pair(stats, 1, "bob")] == pytest.approx(2 / 3)
    assert len(stats.pair_feature) == 3  # feature 2 never fires: no pair is stored


def test_frequency_mean_max_and_mass_match_hand_computed_values():
    stats = feature_stats_from_codes(CODES, NAMES)
    np.testing.assert_allclose(stats.frequency, [2 / 5, 3 / 5, 0.0])
    np.testing.assert_allclose(stats.mean_activation, [1.5, 5 / 3, 0.0])
    np.testing.assert_allclose(stats.act_max, [2.0, 3.0, 0.0])
    np.testing.assert_allclose(stats.feature_mass, [3.0, 5.0, 0.0])
    np.testing.assert_allclose(stats.name_mass, [4.0, 4.0])
    frame = stats.frame()
    assert list(frame["n_names"]) == [1, 2, 0]


def test_sparse_accumulator_matches_dense_reference_over_many_batches():
    rng = np.random.default_rng(0)
    rows, d_sae, n_names = 700, 40, 23
    codes = (np.maximum(rng.normal(size=(rows, d_sae)), 0) * (rng.random((rows, d_sae)) < 0.15)).astype(np.float32)
    ids = rng.integers(0, n_names, rows)
    acc = FeatureAccumulator(d_sae, n_names, FeatureConfig(merge_every=50, top_rows=4, histogram_samples=5))
    for start in range(0, rows, 64):
        acc.update(codes[start:start + 64], ids[start:start + 64], start)
    stats = acc.result([f"n{i}" for i in range(n_names)], np.bincount(ids, minlength=n_names))
    mass, count = dense_mass_count(codes, ids, n_names)
    prec, rec = dense_precision_recall(mass, count, np.bincount(ids, minlength=n_names))
    assert stats.pair_mass.size == int((mass > 0).sum())
    np.testing.assert_allclose(stats.pair_mass, mass[stats.pair_feature, stats.pair_name], rtol=1e-5)
    np.testing.assert_allclose(stats.pair_precision, prec[stats.pair_feature, stats.pair_name], rtol=1e-5)
    np.testing.assert_allclose(stats.pair_recall, rec[stats.pair_feature, stats.pair_name])
    for j in range(d_sae):
        fired = np.flatnonzero(codes[:, j] > 0)
        best = fired[np.lexsort((fired, -codes[fired, j]))][:4]
        np.testing.assert_array_equal(stats.top_row[stats.top_feature == j], best)
        sample = stats.sample_value[stats.sample_feature == j]
        assert sample.size == min(5, fired.size)
        assert np.isin(sample, codes[fired, j]).all()


def test_top_k_per_group_keeps_highest_scores_in_each_group():
    group = np.array([1, 0, 1, 1, 0, 2])
    score = np.array([5.0, 1.0, 7.0, 6.0, 3.0, 0.5])
    keep = top_k_per_group(group, score, 2)
    assert [(int(group[i]), float(score[i])) for i in keep] == [(0, 3.0), (0, 1.0), (1, 7.0), (1, 6.0), (2, 0.5)]


def test_statistics_of_100k_rows_by_80k_features_stay_sparse():
    # A dense rows x features table would take 32 GB; the accumulator only holds the firing pairs.
    rng = np.random.default_rng(1)
    d_sae, rows, k, n_names = 80_000, 100_000, 4, 10_000
    acc = FeatureAccumulator(d_sae, n_names, FeatureConfig(top_rows=2, histogram_samples=0))
    tracemalloc.start()
    for start in range(0, rows, 4096):
        b = min(4096, rows - start)
        local = np.repeat(np.arange(b), k)
        acc.update_sparse(local, rng.integers(0, d_sae, b * k), rng.random(b * k).astype(np.float32) + 0.01,
                          (np.arange(start, start + b) // 10) % n_names, b, start)
    stats = acc.result([str(i) for i in range(n_names)], np.full(n_names, 10))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats.n_rows == rows and stats.fire_count.sum() == rows * k
    assert peak < 200e6


def test_zero_shot_label_is_the_closest_phrase_with_its_margin():
    phrases = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    labels = ["old", "woman", "woman", "smiling"]
    directions = np.array([[0.0, 3.0, 0.0], [1.0, 0.0, 1.0], [0.9, 0.1, 0.0]])
    out = zero_shot_labels(directions, phrases, labels)
    assert list(out.label) == ["woman", "old", "old"]
    assert out.cosine[0] == pytest.approx(1.0)
    assert out.margin[0] == pytest.approx(1.0)  # runner-up cosine 0
    assert out.margin[1] == pytest.approx(0.0, abs=1e-6)  # a tie between old and smiling
    cos_old, cos_woman = 0.9 / np.hypot(0.9, 0.1), 0.1 / np.hypot(0.9, 0.1)
    assert out.margin[2] == pytest.approx(cos_old - cos_woman, rel=1e-5)
    assert out.runner_up[2] == "woman"


def test_store_in_another_space_is_refused(tmp_path):
    path = write_store(tmp_path / "s.h5", np.zeros((2, 4)), ["a", "b"], ["p", "p"], "image", "synth:1:image")
    with EmbeddingStore.open(path) as store:
        with pytest.raises(SpaceMismatchError, match="synth:2:image"):
            check_space(SimpleNamespace(d_in=4, space="synth:2:image"), store)
        with pytest.raises(SpaceMismatchError, match="d_in 8"):
            check_space(SimpleNamespace(d_in=8, space="synth:1:image"), store)
        check_space(SimpleNamespace(d_in=4, space="synth:1:image"), store)
        # A vocabulary may be the other modality of the same encoder, not another encoder.
        check_vocab_space(SimpleNamespace(d_in=4, space="synth:1:text"), store)
        with pytest.raises(SpaceMismatchError):
            check_vocab_space(SimpleNamespace(d_in=4, space="synth:9:text"), store)


def test_bad_feature_config_is_refused():
    with pytest.raises(ConfigError, match="kind"):
        FeatureConfig(kind="audio")
    with pytest.raises(ConfigError, match="top_rows"):
        FeatureConfig(top_rows=-1)


def test_features_cli_writes_stats_labels_and_top_names(tmp_path, monkeypatch, capsys):
    from namesae.cli import main
    from namesae.sae import build_sae_from_weights

    # Two unit directions; "ann" rows hold the first, "bob" rows the second, "cy" rows both.
    x = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0.6, 0.8, 0]], dtype=np.float32)
    names = ["ann", "ann", "bob", "bob", "cy"]
    store = write_store(tmp_path / "img.h5", x, names, ["p"] * 5, "image", "toy:enc:image")
    vocab = write_store(tmp_path / "vocab.h5", np.array([[1, 0, 0.1], [0, 1, 0.1]]), ["red", "blue"],
                        ["a red thing", "a blue thing"], "text", "toy:enc:text")
    w = np.eye(3, dtype=np.float32)[:2]
    build_sae_from_weights(w.T, np.zeros(2), w, np.zeros(3), space="toy:enc:image", out_dir=tmp_path / "sae")
    monkeypatch.setattr("sys.argv", ["namesae", "features", "--sae", str(tmp_path / "sae"), "--store", str(store),
                                     "--vocab", str(vocab), "--out", str(tmp_path / "out"), "--no-progress"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert f"wrote {tmp_path / 'out' / 'features.json'}" in capsys.readouterr().out
    feats = json.loads((tmp_path / "out" / "features.json").read_text())["features"]
    red, blue = feats
    assert red["label"] == "red" and blue["label"] == "blue"
    assert red["frequency"] == pytest.approx(3 / 5) and red["max_activation"] == pytest.approx(1.0)
    assert red["mass"] == pytest.approx(2.6)
    assert [(n["name"], round(n["precision"], 4)) for n in red["top_names"]] == [("ann", round(2 / 2.6, 4)),
                                                                                ("cy", round(0.6 / 2.6, 4))]
    assert [r["name"] for r in blue["top_rows"]] == ["bob", "bob", "cy"]
    assert (tmp_path / "out" / "features.csv").read_text().startswith("feature,frequency")


def test_topk_store_statistics_take_the_sparse_path_and_equal_the_dense_codes(tmp_path):
    import torch

    from namesae.features import compute_feature_stats, iter_sparse_codes, sparse_encode, topk_sparse_k
    from namesae.sae import build_sae_from_weights, encode

    rng = np.random.default_rng(3)
    d, d_sae, k, rows = 16, 48, 5, 300
    w_dec = rng.normal(size=(d_sae, d)).astype(np.float32)
    sae = build_sae_from_weights(w_dec.T, rng.normal(size=d_sae) * 0.1, w_dec, rng.normal(size=d) * 0.05,
                                 space="toy:enc:image", architecture="topk", k=k)
    assert topk_sparse_k(sae) == k
    x = rng.normal(size=(rows, d)).astype(np.float32)
    names = [f"n{i % 37}" for i in range(rows)]
    store = write_store(tmp_path / "img.h5", x, names, ["p"] * rows, "image", "toy:enc:image")
    codes = encode(sae, x)
    # The sparse triples are exactly torch.nonzero of the dense codes, in the same order and with the same values.
    r, f, v = sparse_encode(sae, x, k)
    dr, df = torch.nonzero(codes, as_tuple=True)
    np.testing.assert_array_equal(r, dr.numpy())
    np.testing.assert_array_equal(f, df.numpy())
    np.testing.assert_allclose(v, codes[dr, df].numpy(), rtol=1e-6, atol=1e-7)
    cfg = FeatureConfig(batch_rows=64, top_rows=3, histogram_samples=4)
    with EmbeddingStore.open(store) as s:
        offsets = [offset for offset, _, _ in iter_sparse_codes(sae, s, np.arange(rows), 64)]
        stats = compute_feature_stats(sae, s, cfg)
    assert offsets == list(range(0, rows, 64))
    ref = feature_stats_from_codes(codes.numpy(), names, cfg)
    np.testing.assert_array_equal(stats.pair_feature, ref.pair_feature)
    np.testing.assert_array_equal(stats.pair_name, ref.pair_name)
    np.testing.assert_array_equal(stats.pair_count, ref.pair_count)
    np.testing.assert_allclose(stats.pair_mass, ref.pair_mass, rtol=1e-5)
    np.testing.assert_array_equal(stats.fire_count, ref.fire_count)
    np.testing.assert_array_equal(stats.top_row, ref.top_row)
    np.testing.assert_allclose(stats.act_max, ref.act_max, rtol=1e-6)
    # A hooked model or a non-TopK SAE has no sparse shortcut: its codes come from the dense encoder.
    handle = sae.model.hook_sae_acts_post.register_forward_hook(lambda module, inp, out: out * 2)
    assert topk_sparse_k(sae) is None
    handle.remove()
    std = build_sae_from_weights(w_dec.T, np.zeros(d_sae), w_dec, np.zeros(d), space="toy:enc:image")
    assert topk_sparse_k(std) is None
    r2, f2, _ = sparse_encode(std, x, None)
    assert r2.size == int((encode(std, x) > 0).sum())
