"""Feature groups: the batched Gram path against the reference, the mass rule, planted concepts, edge cases, CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from namesae.config import config_from_dict
from namesae.errors import ConfigError, NamesaeError
from namesae.groups import (
    GroupConfig,
    adjusted_rand_index,
    gram_path,
    group_codes,
    group_sets,
    join_similar,
    name_groups,
    planted_concepts,
    reference_grouping,
    reference_path,
    score_groups_on_planted,
)
from namesae.groups.config import init_uniforms
from namesae.groups.name import pair_agreement
from namesae.groups.reference import kmeanspp_centers, lloyd, objective_and_shares


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are small: one thread avoids OpenMP hand-offs that crawl on a shared, busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def padded(cases: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrices [B, n, n] and weights [B, n] of planted cases of different sizes, zero-padded."""
    n = max(len(p.weights) for p in cases)
    units = torch.zeros(len(cases), n, cases[0].directions.shape[1])
    weights = torch.zeros(len(cases), n)
    for i, p in enumerate(cases):
        units[i, :len(p.weights)], weights[i, :len(p.weights)] = p.directions, p.weights
    return torch.bmm(units, units.transpose(1, 2)), weights


def test_fast_gram_path_matches_the_reference_run_for_run():
    config = GroupConfig(k_max=8, restarts=2, seed=7)
    cases = [planted_concepts(c, n, 24, seed=s) for s, (c, n) in enumerate([(1, 30), (3, 70), (5, 36)])]  # 70 >= 64: half Gram
    gram, weights = padded(cases)
    fast = gram_path(gram, weights, config)
    for i, p in enumerate(cases):
        ref = reference_path(p.directions.double(), p.weights.double(), config)
        n = len(p.weights)
        assert torch.equal(fast.feasible[i], ref.feasible)
        assert torch.equal(fast.labels[i, :, :n], ref.labels), f"case {i}: a k-means run differs"
        assert (fast.labels[i, :, n:] == -1).all()
        assert torch.allclose(fast.objective[i], ref.objective, atol=1e-5, equal_nan=True)
        assert torch.allclose(fast.min_share[i], ref.min_share, atol=1e-6)
    for select in ("mass", "concepts"):
        cfg = GroupConfig(k_max=8, restarts=2, seed=7, select=select)
        batch = group_sets([p.directions for p in cases], [p.weights for p in cases], cfg)
        for i, p in enumerate(cases):
            ref = reference_grouping(p.directions.double(), p.weights.double(), cfg)
            assert int(batch.k_mass[i]) == ref.k_mass
            got = batch.labels(select)[i, :len(p.weights)]
            assert adjusted_rand_index(got, ref.labels) == pytest.approx(1.0)


def brute_force_best(units: torch.Tensor, weights: torch.Tensor, k: int, config: GroupConfig):
    """The best of the config's k-means runs for one k, run on their own (None when infeasible)."""
    uniforms = init_uniforms(config)
    best = None
    for r in range(config.restarts):
        centers = kmeanspp_centers(units, weights, k, uniforms[r])
        if centers is None:
            continue
        labels, _ = lloyd(units, weights, centers, config.max_iter)
        obj, shares = objective_and_shares(units, weights, labels, k)
        if best is None or obj > best[0]:
            best = (obj, shares)
    return best


@pytest.mark.parametrize("select", ["mass", "concepts"])
def test_every_group_holds_m_min_and_brute_force_finds_no_larger_k(select):
    config = GroupConfig(k_max=8, m_min=0.1, restarts=2, select=select)
    gen = torch.Generator().manual_seed(0)
    cases = [planted_concepts(c, n, 8, seed=s) for s, (c, n) in enumerate([(2, 14), (3, 20), (2, 24), (4, 18)])]
    directions = [p.directions for p in cases] + [torch.randn(16, 6, generator=gen) for _ in range(4)]
    weights = [p.weights for p in cases] + [torch.rand(16, generator=gen) ** 3 + 0.01 for _ in range(4)]
    batch = group_sets(directions, weights, config)
    for i, (x, w) in enumerate(zip(directions, weights)):
        grouping = batch.grouping(i)
        assert min(g.mass_share for g in grouping.groups) >= config.m_min * (1 - 1e-9)
        assert sum(g.mass_share for g in grouping.groups) == pytest.approx(1.0)
        units = (x / x.norm(dim=1, keepdim=True)).double()
        k_mass = int(batch.k_mass[i])
        _, shares = objective_and_shares(units, w.double(), batch.labels_mass[i, :len(w)], k_mass)
        assert shares.min() >= config.m_min * (1 - 1e-9)
        for k in range(k_mass + 1, config.k_max + 1):
            best = brute_force_best(units, w.double(), k, config)
            assert best is None or best[1].min() < config.m_min, f"set {i}: k={k} > {k_mass} also qualifies"


def test_planted_concepts_meet_the_purity_and_recovery_claims():
    score = score_groups_on_planted(n_cases=60, seed=3, d=64)
    assert score["mass"]["purity_ge_0.95"] >= 0.95
    assert score["concepts"]["purity_ge_0.95"] >= 0.95
    assert score["concepts"]["k_eq_c_and_ari_ge_0.9"] >= 0.9
    # The mass rule splits concepts into pure sub-groups: it rarely finds k = c, which is why joining exists.
    assert score["mass"]["k_eq_c"] < score["concepts"]["k_eq_c"]
    assert score["pass"]


def arc(n: int, degrees: float) -> torch.Tensor:
    """n unit directions evenly spread on an arc in the plane (as [n, 3])."""
    t = torch.linspace(0, np.radians(degrees), n, dtype=torch.float64)
    return torch.stack([t.cos(), t.sin(), torch.zeros(n, dtype=torch.float64)], 1).float()


def test_a_heavy_feature_pulls_its_group_towards_it():
    x = arc(12, 110)
    config = GroupConfig(k_max=2, m_min=0.0, restarts=3)
    even = torch.ones(12)
    heavy = even.clone()
    heavy[0] = 40.0
    batch = group_sets([x, x], [even, heavy], config)
    size, pull = [], []
    for i in range(2):
        g = next(g for g in batch.grouping(i).groups if 0 in g.features)
        size.append(len(g.features))
        pull.append(float(torch.as_tensor(g.centroid) @ x[0]))
    assert size[0] == 6  # even weights: the arc splits in half
    assert size[1] < size[0]  # the heavy feature drags its centroid, so its group gives up the far members
    assert pull[1] > pull[0] and pull[1] > 0.99


def test_one_concept_gives_one_group_with_concepts():
    cases = [planted_concepts(1, 80, 32, seed=s) for s in range(5)]
    batch = group_sets([p.directions for p in cases], [p.weights for p in cases], GroupConfig(select="concepts"))
    assert batch.k_concepts.tolist() == [1] * 5
    assert (batch.k_mass >= 1).all()


def test_no_active_features_gives_no_groups():
    batch = group_codes(torch.zeros(2, 5), torch.randn(5, 4))
    grouping = batch.grouping(0)
    assert batch.k_mass.tolist() == [0, 0] and grouping.k == 0 and grouping.groups == []
    assert grouping.n_active == 0 and np.isnan(grouping.objective)


def test_one_active_feature_is_one_coherent_group():
    directions = torch.randn(5, 4)
    codes = torch.tensor([[0.0, 0.0, 2.0, 0.0, 0.0]])
    g = group_codes(codes, directions).grouping(0)
    assert g.k == 1 and g.groups[0].features == [2]
    assert g.groups[0].weights[0] == pytest.approx(2.0 * float(directions[2].norm()), rel=1e-6)
    assert g.groups[0].mass_share == pytest.approx(1.0) and g.groups[0].coherence == pytest.approx(1.0)
    assert np.allclose(g.groups[0].centroid, (directions[2] / directions[2].norm()).numpy(), atol=1e-6)


def test_k_max_above_the_active_count_is_capped_by_it():
    x = torch.eye(3, 5)  # three orthogonal features, equal mass: each its own group
    batch = group_sets([x], [torch.ones(3)], GroupConfig(k_max=20))
    assert int(batch.k_mass[0]) == 3
    assert not bool(torch.isfinite(batch.objective[0, 3:]).any())  # k > 3: infeasible, not run


def test_identical_directions_are_never_split():
    x = torch.tensor([[1.0, 2.0, 0.0, -1.0]]).repeat(10, 1)
    w = torch.linspace(0.5, 3.0, 10)
    for select in ("mass", "concepts"):
        g = group_sets([x], [w], GroupConfig(select=select)).grouping(0)
        assert g.k == 1 and g.k_mass == 1 and g.groups[0].coherence == pytest.approx(1.0, abs=1e-5)


def test_zero_weights_and_zero_directions_are_not_active():
    x = torch.randn(6, 4)
    x[5] = 0.0  # a dead decoder row has no direction
    w = torch.tensor([1.0, 0.0, 2.0, 0.0, 1.5, 3.0])
    g = group_sets([x], [w]).grouping(0)
    assert sorted(f for grp in g.groups for f in grp.features) == [0, 2, 4]
    assert group_sets([x], [torch.zeros(6)]).grouping(0).groups == []


@pytest.mark.parametrize("bad", [torch.tensor([1.0, -0.5]), torch.tensor([1.0, float("nan")])])
def test_negative_or_nan_weights_are_refused(bad):
    with pytest.raises(NamesaeError, match="weights must be finite and >= 0"):
        group_sets([torch.randn(2, 3)], [bad])


def test_mismatched_shapes_are_refused():
    with pytest.raises(NamesaeError, match=r"set 0 has directions \(3, 4\) and weights \(2,\)"):
        group_sets([torch.randn(3, 4)], [torch.ones(2)])
    with pytest.raises(NamesaeError, match="do not fit"):
        group_codes(torch.ones(2, 5), torch.randn(4, 3))


@pytest.mark.parametrize("field,value,message", [("select", "bogus", "select must be one of"),
                                                 ("k_max", 0, "k_max must be an integer >= 1"),
                                                 ("m_min", 1.5, "m_min must lie in"),
                                                 ("join_cos", 2.0, "join_cos must lie in"),
                                                 ("restarts", 0, "restarts must be an integer >= 1")])
def test_bad_config_values_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(GroupConfig, {field: value}, "groups.toml [groups]")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['k'\]"):
        config_from_dict(GroupConfig, {"k": 3}, "groups.toml [groups]")


def test_a_padded_batch_groups_like_a_list_of_sets():
    p = [planted_concepts(c, 40, 16, seed=s) for s, c in enumerate([2, 3, 4])]
    directions = torch.stack([q.directions for q in p])
    weights = torch.stack([q.weights for q in p])
    weights[1, 5] = 0.0  # an inactive feature inside a set
    padded_batch = group_sets(directions, weights)
    listed = group_sets(list(directions), list(weights))
    assert torch.equal(padded_batch.features, listed.features)
    assert torch.equal(padded_batch.labels_mass, listed.labels_mass)
    assert all(5 not in g.features for g in padded_batch.grouping(1).groups)
    assert padded_batch.grouping(1).to_dict() == listed.grouping(1).to_dict()


def test_a_row_has_the_same_groups_alone_and_in_a_batch():
    p = [planted_concepts(c, n, 24, seed=s) for s, (c, n) in enumerate([(3, 50), (2, 80), (4, 30)])]
    directions = torch.cat([q.directions for q in p])  # one dictionary; each row uses its own block
    codes = torch.zeros(3, len(directions))
    start = 0
    for i, q in enumerate(p):
        codes[i, start:start + len(q.weights)] = q.weights
        start += len(q.weights)
    together = group_codes(codes, directions, GroupConfig(restarts=2))
    alone = group_codes(codes[1:2], directions, GroupConfig(restarts=2))
    assert torch.equal(together.features[1, :80], alone.features[0, :80])
    assert torch.equal(together.labels_mass[1, :80], alone.labels_mass[0, :80])


def test_group_fields_follow_their_definitions_and_labels_vote_by_mass():
    p = planted_concepts(3, 60, 16, seed=4)
    scale = torch.linspace(0.5, 2.0, 60)[:, None]  # decoder norms != 1: weights are f_j * |d_j|
    codes = p.weights[None] / scale[:, 0][None]
    labels = {j: (f"concept {int(p.labels[j])}", 0.5) for j in range(60) if j % 3}
    g = group_codes(codes, p.directions * scale, GroupConfig(select="concepts")).grouping(0, labels=labels)
    assert g.k == 3 and sum(x.mass_share for x in g.groups) == pytest.approx(1.0)
    units = p.directions.double()
    for grp in g.groups:
        ids = torch.tensor(grp.features)
        w = torch.tensor(grp.weights, dtype=torch.float64)
        assert torch.allclose(w, p.weights[ids].double(), rtol=1e-5)
        assert grp.weights == sorted(grp.weights, reverse=True)
        centroid = torch.as_tensor(grp.centroid, dtype=torch.float64)
        assert float(centroid.norm()) == pytest.approx(1.0, abs=1e-6)
        assert grp.coherence == pytest.approx(float((w * (units[ids] @ centroid)).sum() / w.sum()), abs=1e-5)
        assert grp.label == f"concept {int(p.labels[ids[0]])}"
        has_label = torch.tensor([int(j) % 3 != 0 for j in ids])
        assert grp.label_share == pytest.approx(float(w[has_label].sum() / w.sum()), abs=1e-6)
        assert grp.label_score == pytest.approx(0.5)
    assert g.groups == sorted(g.groups, key=lambda x: -x.mass_share)
    record = g.to_dict(centroid=True)
    assert set(record) == {"select", "k", "k_mass", "n_active", "total_mass", "objective", "groups"}
    assert set(record["groups"][0]) == {"features", "weights", "mass_share", "coherence", "label", "label_share",
                                        "label_score", "stability", "centroid"}


def test_join_similar_joins_the_most_similar_pair_first_and_recomputes_centroids():
    s = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    dots = (s @ s.T)[None]
    alive = torch.ones(1, 4, dtype=torch.bool)
    # Cosines: (1,2) 0.8, (0,1) 0.6, the rest 0. Group 1+2 joins first; its centroid (0.6, 1.8, 0) has cosine
    # 0.32 to group 0, so at 0.55 group 0 stays apart (single linkage would take it through its 0.6 to group 1).
    assert join_similar(dots, alive, 0.55).tolist() == [[0, 1, 1, 3]]
    assert join_similar(dots, alive, 0.3).tolist() == [[0, 0, 0, 3]]
    assert join_similar(dots, alive, 0.9).tolist() == [[0, 1, 2, 3]]
    dead = alive.clone()
    dead[0, 2] = False  # only live slots join
    assert join_similar(dots, dead, 0.55).tolist() == [[0, 0, 2, 3]]


def test_pair_agreement_counts_weighted_co_active_pairs():
    rows = np.array([[0, 0, 0], [0, 1, 1], [-1, 0, 0]])
    together, active = pair_agreement(np.array([0, 1, 2]), np.array([1.0, 1.0, 2.0]), rows)
    assert (together, active) == (pytest.approx(9.0), pytest.approx(12.0))


def test_name_groups_are_stable_when_every_row_agrees():
    p = planted_concepts(2, 40, 16, seed=1)
    codes = p.weights[None].repeat(4, 1) * torch.tensor([[1.0], [0.9], [1.1], [1.0]])
    result = name_groups(codes, p.directions, GroupConfig(select="concepts"), name="Vicki")
    assert result.n_rows == 4 and result.grouping.k == 2 and result.row_k == [2, 2, 2, 2]
    assert result.stability == pytest.approx(1.0)
    assert all(g.stability == pytest.approx(1.0) for g in result.grouping.groups)
    assert result.to_dict()["name"] == "Vicki"


# --- CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sae_and_store(tmp_path_factory):
    """A tiny SAE whose decoder rows are planted around two concepts, and a store of two names."""
    from namesae.sae import build_sae_from_weights
    from namesae.store import write_store

    root = tmp_path_factory.mktemp("groups_cli")
    p = planted_concepts(2, 24, 16, seed=2, concept_cos=0.0)
    d = p.directions.numpy()
    build_sae_from_weights(d.T, np.full(24, -0.05, np.float32), d, np.zeros(16, np.float32), space="synth:0:image",
                           out_dir=root / "sae")
    rng = np.random.default_rng(0)
    x = (rng.uniform(0.5, 1.5, (6, 24)) @ d).astype(np.float32)
    write_store(root / "image.h5", x, ["Ann"] * 3 + ["Bob"] * 3, ["a photo"] * 6, "image", "synth:0:image",
                seeds=list(range(6)))
    return root


def test_cli_groups_a_row_and_a_name(sae_and_store, tmp_path):
    from typer.testing import CliRunner

    from namesae.cli import app

    runner = CliRunner()
    root = sae_and_store
    result = runner.invoke(app, ["groups", "--sae", str(root / "sae"), "--store", str(root / "image.h5"),
                                 "--row", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["row"] == 1 and data["row_name"] == "Ann" and data["select"] == "mass"
    assert sum(g["mass_share"] for g in data["groups"]) == pytest.approx(1.0, abs=1e-5)
    assert all(g["mass_share"] >= 0.05 for g in data["groups"])
    result = runner.invoke(app, ["groups", "--sae", str(root / "sae"), "--store", str(root / "image.h5"),
                                 "--name", "Bob", "--select", "concepts", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "name 'Bob' (mean code of 3 rows)" in result.output and "wrote" in result.output
    saved = json.loads((tmp_path / "out" / "groups.json").read_text())
    assert saved["k"] == 2 and saved["n_rows"] == 3 and saved["stability"] == pytest.approx(1.0)
    assert (tmp_path / "out" / "groups.csv").read_text().startswith("group,feature,weight")


@pytest.mark.parametrize("args,message", [(["--row", "1", "--name", "Ann"], "exactly one of --row I or --name N"),
                                          (["--row", "99"], "--row 99 is out of range"),
                                          (["--name", "Zed"], "no rows of name 'Zed'")])
def test_cli_refuses_bad_input_with_one_line(sae_and_store, monkeypatch, capsys, args, message):
    from namesae.cli import main

    root = sae_and_store
    monkeypatch.setattr(sys, "argv", ["namesae", "groups", "--sae", str(root / "sae"), "--store",
                                      str(root / "image.h5"), *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("namesae: error:") and message in err[0]


def test_cli_reads_labels_from_features_json_or_a_mapping(tmp_path):
    from namesae.groups.run import load_labels

    features = tmp_path / "features.json"
    features.write_text(json.dumps({"features": [{"feature": 3, "label": "beard", "label_cosine": 0.3},
                                                 {"feature": 4, "label": None}]}))
    assert load_labels(features) == {3: ("beard", 0.3)}
    mapping = tmp_path / "labels.json"
    mapping.write_text(json.dumps({"7": "smile", "9": ["hat", 0.2]}))
    assert load_labels(mapping) == {7: "smile", 9: ("hat", 0.2)}
    mapping.write_text(json.dumps({"seven": "smile"}))
    with pytest.raises(ConfigError, match="key 'seven' is not a feature id"):
        load_labels(mapping)
