"""Identity measures against hand-computed values, the fast paths against the dense reference, and bad input."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch

from namesae.errors import ConfigError
from namesae.features import feature_stats_from_codes
from namesae.identity import (
    FIELDS,
    IdentityConfig,
    add_z_scores,
    attribute_batch,
    identity_records,
    image_measures,
    load_ladders,
    nnls_cosine,
    rigidity_batch,
    run_identity,
    write_identity,
)
from namesae.identity.attributes import Ladder, LadderEmbeddings
from namesae.identity.reference import (
    dense_identity,
    dense_mass_count,
    dense_precision_recall,
    rigidity_reference,
)
from namesae.store import EmbeddingStore, write_store
from namesae.synth.score.identity import score_identity

EPS = 1e-3


def _one(x: np.ndarray, sigma: float = 1.0, t: float = 1.0) -> dict[str, float]:
    out = rigidity_batch(torch.as_tensor(x, dtype=torch.float64)[None], EPS, sigma, t).as_dict()
    return {k: float(v[0]) for k, v in out.items()}


# ---- rigidity -------------------------------------------------------------------------------------------------
def test_trace_and_logdet_of_a_known_covariance():
    # Rows ±(3, 0), ±(0, 1): mean 0, Σ = diag(2·9, 2·1) / 3 = diag(6, 2/3).
    x = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    got = _one(x)
    assert got["trace"] == pytest.approx(6 + 2 / 3)
    assert got["logdet"] == pytest.approx(math.log(6 + EPS) + math.log(2 / 3 + EPS))
    # Three more dimensions where nothing varies each add log ε (the m <= d path of the Gram matrix).
    padded = np.hstack([x, np.zeros((4, 3))])
    assert _one(padded)["logdet"] == pytest.approx(math.log(6 + EPS) + math.log(2 / 3 + EPS) + 3 * math.log(EPS))


def test_pairwise_cosines_of_three_known_rows():
    got = _one(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
    assert got["cos_min"] == pytest.approx(0.0, abs=1e-12)
    assert got["cos_max"] == pytest.approx(1 / math.sqrt(2))
    assert got["cos_mean"] == pytest.approx(math.sqrt(2) / 3)


def test_dse_is_zero_for_identical_points_and_log_m_for_far_apart_points():
    assert _one(np.tile([[0.3, -1.0, 2.0]], (6, 1)))["dse"] == pytest.approx(0.0, abs=1e-9)
    assert _one(100.0 * np.eye(6))["dse"] == pytest.approx(math.log(6), rel=1e-9)
    # Spreading the same six points increases the entropy monotonically in between.
    values = [_one(s * np.eye(6))["dse"] for s in (0.1, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and 0 < values[0] < values[-1] < math.log(6)


@pytest.mark.parametrize("t", [1.0, 2.0])
def test_dse_of_two_points_matches_closed_form(t):
    # K = [[1, a], [a, 1]], P = K / (1 + a): eigenvalues 1 and r = (1 - a) / (1 + a).
    sigma, dist = 0.8, 1.0
    a = math.exp(-dist**2 / (2 * sigma**2))
    r = ((1 - a) / (1 + a)) ** t
    p = np.array([1.0, r]) / (1 + r)
    expected = float(-(p * np.log(p)).sum())
    assert _one(np.array([[0.0, 0.0], [dist, 0.0]]), sigma, t)["dse"] == pytest.approx(expected, rel=1e-9)


def test_batched_rigidity_matches_dense_reference():
    rng = np.random.default_rng(0)
    for m, d in ((7, 20), (12, 5)):  # m <= d (Gram path) and m > d (covariance path)
        x = rng.normal(size=(4, m, d)) + 1.5
        fast = rigidity_batch(torch.as_tensor(x), EPS, 2.0, 1.5).as_dict()
        for i in range(4):
            ref = rigidity_reference(x[i], EPS, 2.0, 1.5)
            for key, value in ref.items():
                assert fast[key][i] == pytest.approx(value, rel=1e-7, abs=1e-9), (m, d, key)


def test_a_name_with_one_row_has_no_rigidity():
    got = _one(np.array([[1.0, 2.0, 3.0]]))
    assert all(math.isnan(v) for v in got.values())


# ---- identity features ----------------------------------------------------------------------------------------
CODES = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]],
                 dtype=np.float32)
NAMES = ["ann", "ann", "bob", "bob", "bob"]


def test_identity_features_dedication_and_shares_match_hand_computed_values():
    stats = feature_stats_from_codes(CODES, NAMES)
    ann, bob = identity_records(stats, IdentityConfig(tau_p=0.9, tau_r=0.5, rule="mass_share"))
    # ann: feature 0 has precision 3/3 and recall 2/2.
    assert ann.dedicated and ann.identity_features == (0,)
    detail = ann.identity_feature_details[0]
    assert (detail.feature, detail.precision, detail.recall) == (0, pytest.approx(1.0), pytest.approx(1.0))
    assert ann.dedication == pytest.approx(1.0)
    assert [(f.feature, f.share) for f in ann.top_features] == [(0, pytest.approx(0.75)), (1, pytest.approx(0.25))]
    # bob: feature 1 has precision 4/5, recall 2/3; feature 2 precision 1, recall 1/3. Neither passes both.
    assert not bob.dedicated and bob.identity_features == () and bob.identity_feature_details == ()
    assert bob.dedication == pytest.approx(max(0.8 * 2 / 3, 1 / 3))
    assert bob.top_features[0].feature == 1 and bob.top_features[0].n_names == 2
    # Lower the precision threshold and feature 1 becomes bob's identity feature.
    assert identity_records(stats, IdentityConfig(tau_p=0.8, tau_r=0.5, rule="mass_share"))[1].dedicated


def test_strongest_rule_matches_hand_computed_rank_precision_and_recall():
    stats = feature_stats_from_codes(CODES, NAMES)
    ann, bob = identity_records(stats, IdentityConfig(tau_p=0.9, tau_r=0.5))
    # Feature 0 fires on ann's two rows only: after 2 firings both are ann's (precision 1, recall 2/2).
    assert ann.dedicated and ann.identity_features == (0,)
    # Feature 1's firings, strongest first: bob 3.0, ann 1.0 (row 0, earlier), bob 1.0. For bob: c=1 gives
    # precision 1, recall 1/3; c=3 gives 2/3 and 2/3 (the best product, 4/9). Feature 2: 1 and 1/3.
    assert not bob.dedicated
    assert bob.dedication == pytest.approx(4 / 9)
    assert identity_records(stats, IdentityConfig(tau_p=0.6, tau_r=0.6))[1].dedicated


def test_strongest_rule_ignores_weak_fill_that_defeats_mass_share():
    # A name's identity feature fires at 1.0 on its 8 rows; TopK-like fill puts 0.05 on 400 rows of 50 other
    # names. Mass share: 8 / (8 + 20) = 0.29, below tau_p; among the strongest 8 firings all are the name's.
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(51), 8)
    codes = np.zeros((ids.size, 2), dtype=np.float32)
    codes[ids == 0, 0] = 1.0 + 0.1 * rng.random(8)
    codes[ids > 0, 0] = 0.05
    codes[:, 1] = rng.random(ids.size)  # a shared feature on every row
    stats = feature_stats_from_codes(codes, [f"n{i}" for i in ids])
    strongest = identity_records(stats, IdentityConfig())
    mass = identity_records(stats, IdentityConfig(rule="mass_share"))
    assert strongest[0].dedicated and not any(r.dedicated for r in strongest[1:])
    assert not mass[0].dedicated


def test_strongest_rule_matches_dense_reference_on_random_codes():
    from namesae.identity.reference import dense_rank_precision_recall

    rng = np.random.default_rng(5)
    codes = (np.maximum(rng.normal(size=(240, 20)), 0) * (rng.random((240, 20)) < 0.3)).astype(np.float32)
    ids = rng.integers(0, 24, size=240)
    for f in range(8):
        codes[ids == f, f] = 2.0 + rng.random(int((ids == f).sum()))
    names = [f"n{i}" for i in ids]
    stats = feature_stats_from_codes(codes, names)
    order = {n: i for i, n in enumerate(stats.names)}
    local = np.array([order[n] for n in names])
    for tau_p, tau_r in ((0.8, 0.5), (0.5, 0.3)):
        depth = 2 * int(np.bincount(local).max())
        prec, rec = dense_rank_precision_recall(codes, local, len(stats.names), tau_p, tau_r, depth)
        got_p, got_r = stats.rank_precision_recall(tau_p, tau_r)
        np.testing.assert_allclose(got_p, prec[stats.pair_feature, stats.pair_name])
        np.testing.assert_allclose(got_r, rec[stats.pair_feature, stats.pair_name])
        dedicated, dedication, _ = dense_identity(prec, rec, tau_p, tau_r)
        recs = identity_records(stats, IdentityConfig(tau_p=tau_p, tau_r=tau_r))
        assert [r.dedicated for r in recs] == dedicated.tolist()
        np.testing.assert_allclose([r.dedication for r in recs], dedication)


def test_identity_records_match_dense_reference_on_random_codes():
    rng = np.random.default_rng(3)
    codes = (np.maximum(rng.normal(size=(300, 25)), 0) * (rng.random((300, 25)) < 0.2)).astype(np.float32)
    ids = np.repeat(np.arange(30), 10)
    for f in range(10):  # plant a few exclusive features
        codes[ids == f, f] = 1.0 + rng.random(10)
    stats = feature_stats_from_codes(codes, [f"n{i}" for i in ids])
    mass, count = dense_mass_count(codes, ids, 30)
    prec, rec = dense_precision_recall(mass, count, np.full(30, 10))
    dedicated, dedication, feats = dense_identity(prec, rec, 0.5, 0.5)
    recs = identity_records(stats, IdentityConfig(tau_p=0.5, tau_r=0.5, rule="mass_share"))
    assert [r.dedicated for r in recs] == dedicated.tolist()
    np.testing.assert_allclose([r.dedication for r in recs], dedication)
    assert [sorted(r.identity_features) for r in recs] == [sorted(f) for f in feats]


# ---- z-scores -------------------------------------------------------------------------------------------------
def test_z_scores_against_prior_names_and_unknown_prior_names_are_skipped(caplog):
    stats = feature_stats_from_codes(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"])
    recs = identity_records(stats)
    for rec, value in zip(recs, (1.0, 3.0, 5.0, 11.0)):
        rec.trace = value
    with caplog.at_level(logging.WARNING):
        used = add_z_scores(recs, ["a", "b", "c", "nobody"])
    assert used == ["a", "b", "c"] and "nobody" in caplog.text
    # prior trace: mean 3, std (ddof 1) 2.
    assert [r.z["trace"] for r in recs] == [pytest.approx(-1.0), 0.0, pytest.approx(1.0), pytest.approx(4.0)]
    assert recs[0].z["dedication"] is None  # every name has dedication 1: no spread
    assert recs[0].z["cos_mean"] is None  # unavailable measure


# ---- name parts and attributes --------------------------------------------------------------------------------
def test_part_composition_matches_hand_computed_cosines():
    first, last, template = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
    assert nnls_cosine(first + 2 * last, np.stack([first, last, template])) == pytest.approx(1.0)
    # (1, -1, 1) without the template: the best non-negative fit is (1, 0, 0), cosine 1/sqrt(3).
    assert nnls_cosine(np.array([1.0, -1.0, 1.0]), np.stack([first, last])) == pytest.approx(1 / math.sqrt(3))
    assert nnls_cosine(-first, np.stack([first, last])) == 0.0


def test_attribute_ladder_means_and_stds_match_hand_computed_values():
    ladder = Ladder("age", ("young", "old"), ("a young person", "an old person"), (20.0, 80.0))
    emb = LadderEmbeddings(ladder, torch.eye(3)[:2])
    rows = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # one young-looking, one old-looking image
    (age,) = attribute_batch(rows, emb, scale=1.0)
    p = math.e / (math.e + 1)  # softmax of (1, 0)
    young, old = 20 * p + 80 * (1 - p), 20 * (1 - p) + 80 * p
    assert age["mean"] == pytest.approx(50.0)
    assert age["std"] == pytest.approx(abs(old - young) / math.sqrt(2))
    gender = LadderEmbeddings(Ladder("gender", ("man", "woman"), ("a man", "a woman")), torch.eye(3)[:2])
    (g,) = attribute_batch(rows[:, :1], gender, scale=1.0)
    assert g["mode"] == "man" and g["p_man"] == pytest.approx(p) and g["std"] is None  # one row: no std


def test_builtin_ladders_load_and_a_bad_ladder_file_is_named(tmp_path):
    ladders = {lad.name: lad for lad in load_ladders()}
    assert ladders["age"].prompts[0] == "a photo of a 5 year old person" and ladders["age"].numeric[-1] == 85
    assert ladders["gender"].numeric is None
    bad = tmp_path / "ladders.json"
    bad.write_text(json.dumps({"attributes": [{"name": "age", "values": ["1"]}]}))
    with pytest.raises(ConfigError, match="ladders.json.*'age'"):
        load_ladders(bad)


def test_bad_identity_config_is_refused():
    with pytest.raises(ConfigError, match="tau_p"):
        IdentityConfig(tau_p=1.5)
    with pytest.raises(ConfigError, match="epsilon"):
        IdentityConfig(epsilon=0.0)


# ---- stores end to end ----------------------------------------------------------------------------------------
def _image_store(path, names_rows: dict[str, np.ndarray]):
    names = [n for n, x in names_rows.items() for _ in range(len(x))]
    x = np.concatenate(list(names_rows.values()))
    return write_store(path, x, names, ["a photo"] * len(x), "image", "test:enc:image", seeds=range(len(x)))


def test_sigma_defaults_to_the_median_within_name_distance_and_single_rows_are_unavailable(tmp_path):
    path = _image_store(tmp_path / "img.h5", {
        "a": np.array([[0.0, 0.0], [2.0, 0.0]]),  # distance 2
        "b": np.array([[0.0, 1.0], [0.0, 4.0], [0.0, 8.0]]),  # distances 3, 7, 4
        "solo": np.array([[1.0, 1.0]]),
    })
    with EmbeddingStore.open(path) as store:
        got = image_measures(store, IdentityConfig(epsilon=EPS))
    assert got.sigma == pytest.approx(3.5)  # median of 2, 3, 4, 7
    assert got.measures["a"]["trace"] == pytest.approx(2.0)  # var of (0, 2) = 2
    assert got.measures["b"]["dse"] == pytest.approx(_one(np.array([[0.0, 1], [0, 4], [0, 8]]), 3.5)["dse"])
    assert all(v is None for v in got.measures["solo"].values())
    assert got.n_image_rows == {"a": 2, "b": 3, "solo": 1}


def test_interleaved_names_in_small_batches_match_the_reference_per_name(tmp_path):
    from namesae.identity.analysis import read_rows_bounded

    # Rows written seed-major (every name's rows scattered over the whole store), names of 3, 4 and 6 rows.
    rng = np.random.default_rng(4)
    sizes = {f"n{i}": (3, 4, 6)[i % 3] for i in range(30)}
    rows = [(name, j) for j in range(6) for name, m in sizes.items() if j < m]
    x = rng.normal(size=(len(rows), 5)) + 0.5
    path = write_store(tmp_path / "img.h5", x, [n for n, _ in rows], ["a photo"] * len(rows), "image",
                       "test:enc:image", chunk_rows=8)
    with EmbeddingStore.open(path) as store:
        index = store.name_index()
        scattered = np.concatenate([index["n7"], index["n0"], index["n29"]])
        np.testing.assert_array_equal(read_rows_bounded(store, scattered, 5), store.read_rows(scattered))
        got = image_measures(store, IdentityConfig(epsilon=EPS, dse_sigma=1.3, batch_rows=10))
        whole = image_measures(store, IdentityConfig(epsilon=EPS, dse_sigma=1.3))
        auto = image_measures(store, IdentityConfig(epsilon=EPS, batch_rows=10)).sigma
        single = image_measures(store, IdentityConfig(epsilon=EPS)).sigma
        for name in sizes:
            ref = rigidity_reference(store.read_rows(index[name]), EPS, 1.3)
            for key, value in ref.items():
                assert got.measures[name][key] == pytest.approx(value, rel=1e-7, abs=1e-9), (name, key)
                assert whole.measures[name][key] == pytest.approx(value, rel=1e-7, abs=1e-9), (name, key)
    assert auto == pytest.approx(single, rel=1e-12)


def test_store_without_image_rows_reports_rigidity_unavailable_not_zero(tmp_path):
    rng = np.random.default_rng(0)
    names = ["Ann Lee", "Ann", "Lee", "<template>"]
    x = rng.normal(size=(4, 6))
    x[0] = 0.5 * x[1] + 0.5 * x[2] + 0.2 * x[3]  # the full name is exactly a mix of its parts
    path = write_store(tmp_path / "text.h5", x, names, names, "text", "test:enc:text")
    stats = feature_stats_from_codes(np.eye(4, dtype=np.float32), names)
    with EmbeddingStore.open(path) as store:
        result = run_identity(None, store, stats=stats, ladders=[])
    rec = result.by_name()["Ann Lee"]
    assert rec.trace is None and rec.dse is None and rec.cos_mean is None and rec.attributes == {}
    assert any("no image rows" in note for note in result.notes)
    assert rec.part_composition == pytest.approx(1.0)
    assert result.by_name()["Ann"].part_composition is None  # a single token has no parts
    json_path, csv_path = write_identity(result, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert data["names"][0]["trace"] is None and "NaN" not in json_path.read_text()
    with csv_path.open() as fh:
        header = next(csv.reader(fh))
    assert header[:len(FIELDS)] == list(FIELDS)


def test_image_store_with_ladders_and_prior_gives_attributes_and_z_scores(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(4, 3))
    rows = {f"n{i}": base * (0.1 + i) + 1.0 for i in range(5)}  # spread grows with i
    path = _image_store(tmp_path / "img.h5", rows)
    ladder = Ladder("age", ("young", "old"), ("young", "old"), (20.0, 80.0))
    ladder_path = write_store(tmp_path / "lad.h5", np.eye(3)[:2], ["l", "l"], ["young", "old"], "text",
                              "test:enc:text")
    stats = feature_stats_from_codes(np.eye(20, dtype=np.float32), [n for n in rows for _ in range(4)])
    with EmbeddingStore.open(path) as store, EmbeddingStore.open(ladder_path) as lad:
        result = run_identity(None, store, IdentityConfig(epsilon=EPS), stats=stats, ladders=[ladder],
                              ladder_store=lad, prior_names=["n0", "n1", "n2"])
    by = result.by_name()
    traces = [by[f"n{i}"].trace for i in range(5)]
    assert traces == sorted(traces)
    assert by["n0"].attributes["age"]["mean"] is not None
    z = by["n4"].z["trace"]
    prior = np.array(traces[:3])
    assert z == pytest.approx((traces[4] - prior.mean()) / prior.std(ddof=1))
    assert "age_std" in by["n4"].z


# ---- scoring --------------------------------------------------------------------------------------------------
def test_score_identity_counts_detections_and_ranks_rigidity():
    records = [{"name": "a", "dedicated": True, "cos_mean": 0.9}, {"name": "b", "dedicated": True, "cos_mean": 0.5},
               {"name": "c", "dedicated": False, "cos_mean": 0.7}, {"name": "d", "dedicated": False,
                                                                     "cos_mean": 0.1}]
    truth = {"names": [{"name": "a", "dedicated": True, "rigidity": 4}, {"name": "b", "dedicated": False,
                                                                         "rigidity": 3},
                       {"name": "c", "dedicated": True, "rigidity": 2}, {"name": "d", "dedicated": False,
                                                                         "rigidity": 1}]}
    score = score_identity(records, truth)
    assert score["precision"] == pytest.approx(0.5) and score["recall"] == pytest.approx(0.5)
    # dedication is missing here, so every name ties at 0: AUC 1/2; a dedication that orders them right: 1.
    assert score["dedication_auc"] == pytest.approx(0.5)
    for rec, value in zip(records, (0.9, 0.2, 0.5, 0.1)):
        rec["dedication"] = value
    assert score_identity(records, truth)["dedication_auc"] == pytest.approx(1.0)
    assert score["rigidity_spearman"] == pytest.approx(0.8)  # ranks (4, 2, 3, 1) vs (4, 3, 2, 1): 1 - 6·2/60


# ---- the planted world ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The default synthetic world and an oracle SAE whose dictionary is the planted directions: it isolates the
    identity analysis from SAE training (a trained SAE is scored in test_trained_sae_finds_dedicated_names)."""
    from namesae.sae import build_sae_from_weights
    from namesae.synth import SynthConfig, build_world, load_truth, write_world

    root = tmp_path_factory.mktemp("planted")
    world = build_world(SynthConfig(seed=0, progression=False))
    paths = write_world(world, root / "world")
    truth = load_truth(paths.root)
    directions = world.truth.directions.astype(np.float32)
    # Threshold 0.1: above what noise and identity coherence put on a direction a row does not hold.
    build_sae_from_weights(directions.T, np.full(len(directions), -0.1), directions, np.zeros(directions.shape[1]),
                           space=truth["spaces"]["image"], architecture="standard", out_dir=root / "sae")
    prior = [r["name"] for r in truth["names"] if r["low_bias"]]
    (root / "prior.txt").write_text("\n".join(prior + ["Nobody Atall"]) + "\n")
    return root, paths, truth


def test_dedicated_names_are_found_in_planted_world(planted, monkeypatch, capsys):
    from namesae.cli import main

    root, paths, truth = planted
    monkeypatch.setattr("sys.argv", ["namesae", "identity", "--sae", str(root / "sae"), "--store", str(paths.image),
                                     "--text-store", str(paths.text), "--vocab", str(paths.vocab), "--prior-names",
                                     str(root / "prior.txt"), "--out", str(root / "out"), "--no-progress"])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert f"wrote {root / 'out' / 'identity.json'}" in out
    data = json.loads((root / "out" / "identity.json").read_text())
    score = score_identity(data["names"], truth)
    assert score["precision"] >= 0.9 and score["recall"] >= 0.9, score
    # Rigidity (high = varies little) ranks like the planted one; spread measures rank the other way.
    assert score["rigidity_spearman"] >= 0.8, score
    assert score["rigidity_spearman_by_measure"]["dse"] <= -0.8
    by_truth = {t["name"]: t for t in truth["names"]}
    full = [r for r in data["names"] if by_truth[r["name"]]["kind"] == "full"]
    # Dedicated full names depart from their parts; compositional ones are their parts.
    dedicated_pc = np.median([r["part_composition"] for r in full if by_truth[r["name"]]["dedicated"]])
    compositional_pc = np.median([r["part_composition"] for r in full if not by_truth[r["name"]]["dedicated"]])
    assert dedicated_pc < compositional_pc - 0.1
    # Gender read off the ladders agrees with the planted look of most names.
    genders = [(r["attributes"]["gender"]["mode"], by_truth[r["name"]]["attribute_anchor"]["gender"])
               for r in data["names"]]
    assert np.mean([{"man": "male", "woman": "female"}[a] == b for a, b in genders]) >= 0.9
    assert data["prior_names"] and "Nobody Atall" not in data["prior_names"]
    assert "z_trace" in data["names"][0] and data["names"][0]["z_trace"] is not None


def test_features_are_labelled_with_their_planted_direction(planted):
    from namesae.features import compute_feature_stats, labels_from_store
    from namesae.sae import load_sae

    root, paths, truth = planted
    sae = load_sae(root / "sae")
    with EmbeddingStore.open(paths.image) as store, EmbeddingStore.open(paths.vocab) as vocab:
        stats = compute_feature_stats(sae, store)
        labels = labels_from_store(sae, vocab)
    planted_labels = [d["label"] for d in truth["directions"]]
    shared = [j for j, d in enumerate(truth["directions"]) if d["kind"] == "attribute"]
    assert np.mean([labels.label[j] == planted_labels[j] for j in shared]) >= 0.9
    assert np.median(labels.margin[shared]) > 0.05
    assert stats.frequency[0] == pytest.approx(1.0)  # base:person fires on every row


def test_identity_cli_refuses_a_store_in_another_space(planted, monkeypatch, capsys):
    from namesae.cli import main

    root, paths, _ = planted
    monkeypatch.setattr("sys.argv", ["namesae", "identity", "--sae", str(root / "sae"), "--store", str(paths.text),
                                     "--out", str(root / "bad"), "--no-progress"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error: ") and "space" in err[0] and "text.h5" in err[0]
