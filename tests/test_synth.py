"""The synthetic name world: reproducible, its stores agree with its truth, and bad configs are refused."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import nnls
from scipy.stats import spearmanr

from namesae.config import load_config
from namesae.errors import ConfigError, NamesaeError
from namesae.store import EmbeddingStore
from namesae.synth import (
    ATTRIBUTE_PRIOR,
    ATTRIBUTES,
    TEMPLATES,
    SynthConfig,
    build_world,
    compositional_prediction,
    load_truth,
    load_world,
    shared_labels,
    truth_dict,
    write_world,
)

SMALL = {"n_first": 8, "n_last": 8, "n_full": 24, "n_dedicated": 6, "n_templates": 4,
         "samples_seen": (10**7, 10**8, 10**9)}


@pytest.fixture(scope="module")
def world():
    return build_world(SynthConfig(seed=3))


@pytest.fixture(scope="module")
def written(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("world")
    return world, write_world(world, out)


def _rows(world, key="image"):
    rows = world.stores[key]
    return rows.embeddings, np.asarray(rows.names), np.asarray(rows.prompts)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---- reproducibility ------------------------------------------------------------------------------------------
def test_the_same_seed_builds_the_same_world_and_another_seed_does_not():
    a, b = build_world(SynthConfig(seed=5, **SMALL)), build_world(SynthConfig(seed=5, **SMALL))
    assert truth_dict(a) == truth_dict(b)
    assert a.stores.keys() == b.stores.keys()
    for key in a.stores:
        np.testing.assert_array_equal(a.stores[key].embeddings, b.stores[key].embeddings)
        assert a.stores[key].prompts == b.stores[key].prompts
    c = build_world(SynthConfig(seed=6, **SMALL))
    assert not np.allclose(a.stores["image"].embeddings, c.stores["image"].embeddings)
    assert [r.name for r in a.names] != [r.name for r in c.names]


def test_a_written_world_reads_back_as_written(written, tmp_path):
    world, paths = written
    again = write_world(build_world(world.config), tmp_path / "again")
    assert paths.truth.read_bytes() == again.truth.read_bytes()
    for key in ("image", "text", "vocab", "progression/ckpt_02/image"):
        with EmbeddingStore.open(paths.root / f"{key}.h5") as store, \
                EmbeddingStore.open(again.root / f"{key}.h5") as other:
            rows = world.stores[key]
            assert store.space == rows.space and store.normalized and store.dim == world.config.dim
            np.testing.assert_array_equal(store.read(), rows.embeddings)
            np.testing.assert_array_equal(store.read(), other.read())
            assert list(store.names) == rows.names and list(store.prompts) == rows.prompts
    loaded = load_world(paths.root)
    np.testing.assert_allclose(loaded.truth.directions, world.truth.directions, atol=1e-6)
    assert loaded.names == world.names and loaded.config == world.config
    name = next(r.name for r in world.names if r.dedicated)
    np.testing.assert_allclose(compositional_prediction(loaded, name), compositional_prediction(world, name),
                               atol=1e-5)


def test_store_spaces_and_layout_follow_the_documented_format(written):
    world, paths = written
    truth = load_truth(paths.root)
    seed = world.config.seed
    assert truth["spaces"] == {"image": f"synth:{seed}:image", "text": f"synth:{seed}:text"}
    assert [c["dir"] for c in truth["progression"]["checkpoints"]] == \
        [f"progression/ckpt_{t:02d}" for t in range(world.config.n_checkpoints)]
    with EmbeddingStore.open(paths.checkpoints[3].image) as store:
        assert store.space == f"synth:{seed}:ckpt03:image"
    per_name = world.config.n_templates * world.config.images_per_template
    with EmbeddingStore.open(paths.image) as store:
        index = store.name_index()
        assert set(index) == {r.name for r in world.names}
        assert all(len(rows) == per_name for rows in index.values())
        assert set(store.kinds) == {"image"} and sorted(set(store.seeds)) == [0, 1]
    with EmbeddingStore.open(paths.text) as store:
        counts = {n: len(r) for n, r in store.name_index().items()}
        assert counts[world.config.template_name] == world.config.n_templates
        full = next(r for r in world.names if r.kind == "full")
        assert counts[full.name] == counts[full.first] == counts[full.last] == world.config.n_templates
    prior = [line for line in paths.prior_names.read_text().splitlines() if not line.startswith("#")]
    assert prior == [r.name for r in world.names if r.low_bias]


def test_load_truth_refuses_a_file_that_is_not_a_world(tmp_path):
    (tmp_path / "truth.json").write_text(json.dumps({"names": []}))
    with pytest.raises(NamesaeError, match="truth.json.*kind"):
        load_truth(tmp_path)
    with pytest.raises(NamesaeError, match="not found"):
        load_truth(tmp_path / "missing")


# ---- truth and stores agree -----------------------------------------------------------------------------------
def test_directions_are_orthonormal_shared_and_identities_in_their_complement(world):
    truth = world.truth
    n_shared = len(shared_labels())
    shared, identity = truth.directions[:n_shared], truth.directions[n_shared:]
    np.testing.assert_allclose(shared @ shared.T, np.eye(n_shared), atol=1e-10)
    np.testing.assert_allclose(identity @ shared.T, 0.0, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(identity, axis=1), 1.0, atol=1e-10)
    gram = np.abs(identity @ identity.T - np.eye(len(identity)))
    assert gram.max() == pytest.approx(truth.identity_coherence, abs=1e-9)
    assert truth.identity_coherence < 0.25  # 32 identities in 23 free dimensions, pushed apart
    assert len(identity) == world.config.n_dedicated == sum(r.dedicated for r in world.names)


@pytest.mark.parametrize("key", ["image", "text"])
def test_dedicated_names_rows_load_most_on_their_own_identity_direction(world, key):
    x, names, _ = _rows(world, key)
    dedicated = [r for r in world.names if r.dedicated]
    index = {n: np.flatnonzero(names == n) for n in np.unique(names)}
    for rec in dedicated:
        proj = x @ world.truth.directions[rec.identity_direction]
        mean = {n: proj[rows].mean() for n, rows in index.items()}
        own = mean.pop(rec.name)
        assert own > 0.25 and own > 3 * max(mean.values()), rec.name
        assert proj[index[rec.name]].min() > max(mean.values())  # every generation, not just on average


def test_compositional_rows_hold_no_identity_content(world):
    x, names, _ = _rows(world)
    identity = world.truth.directions[len(shared_labels()):]
    for rec in (r for r in world.names if not r.dedicated):
        rows = x[names == rec.name]
        # Only noise reaches the identity subspace: its norm is bounded by the name's noise scale.
        assert np.linalg.norm(rows @ identity.T, axis=1).max() < rec.noise_scale + 0.05, rec.name


def test_rigidity_is_the_dominant_driver_of_within_name_spread(world):
    x, names, _ = _rows(world)
    cos_mean, trace = [], []
    for rec in world.names:
        rows = x[names == rec.name]
        c = rows @ rows.T
        m = len(rows)
        cos_mean.append((c.sum() - m) / (m * (m - 1)))
        trace.append(np.trace(np.cov(rows.T)))
    rigidity = [r.rigidity for r in world.names]
    assert spearmanr(rigidity, cos_mean).statistic >= 0.9  # high rigidity = generations vary little
    assert spearmanr(rigidity, trace).statistic <= -0.9


def test_overfit_names_ignore_the_scenario_template_and_the_others_follow_it(world):
    x, names, prompts = _rows(world)
    labels = shared_labels()
    scene_ids = [i for i, label in enumerate(labels) if label.startswith("scene:")]
    scene_of_prompt = {}
    for rec in world.names:
        for tpl, scene, _ in TEMPLATES:
            scene_of_prompt[tpl.format(rec.name)] = f"scene:{scene}"
    for phase in (1, 2, 3, 4):
        recs = [r for r in world.names if r.phase == phase]
        rows = np.flatnonzero(np.isin(names, [r.name for r in recs]))
        shown = [labels[scene_ids[i]] for i in np.argmax(x[rows] @ world.truth.directions[scene_ids].T, axis=1)]
        follows = np.mean([s == scene_of_prompt[p] for s, p in zip(shown, prompts[rows])])
        if phase == 4:
            iconic = {r.name: f"scene:{r.iconic_scene}" for r in recs}
            assert all(s == iconic[n] for s, n in zip(shown, names[rows]))
            assert follows < 0.4  # only where the prompt happens to ask for the iconic scene
        else:
            assert follows > 0.95, phase


def test_phase_two_names_keep_their_look_and_phase_one_names_do_not(world):
    x, names, _ = _rows(world)
    labels = shared_labels()
    changed = {1: [], 2: []}
    for rec in world.names:
        if rec.phase not in changed:
            continue
        rows = x[names == rec.name]
        for group, values in ATTRIBUTES.items():
            ids = [labels.index(f"{group}:{v}") for v in values]
            shown = np.argmax(rows @ world.truth.directions[ids].T, axis=1)
            changed[rec.phase].append(np.mean(shown != values.index(rec.attribute_anchor[group])))
    assert np.mean(changed[2]) < 0.5 * np.mean(changed[1])
    for rec in world.names:
        assert rec.attribute_resample_prob == pytest.approx((1 - rec.rigidity) ** 3)
        lo, hi = world.config.phase_edges[rec.phase - 1], world.config.phase_edges[rec.phase]
        assert lo <= rec.rigidity < hi and rec.dedicated == (rec.phase >= 3)


def test_compositional_full_names_text_is_a_mix_of_their_parts_and_dedicated_ones_depart(world):
    x, names, _ = _rows(world, "text")
    mean = {n: x[names == n].mean(0) for n in np.unique(names)}
    template = mean[world.config.template_name]
    score = {True: [], False: []}
    for rec in (r for r in world.names if r.kind == "full"):
        parts = np.stack([mean[rec.first], mean[rec.last], template]).T
        w, _ = nnls(parts, mean[rec.name])
        score[rec.dedicated].append(_cos(parts @ w, mean[rec.name]))
    # Not exactly 1: both parts' tokens are in the full name, and First + Last also carries the base twice, which a
    # non-negative combination cannot take back.
    assert min(score[False]) > 0.97
    assert max(score[True]) < 0.9


def test_zeroing_the_identity_moves_a_dedicated_name_towards_its_compositional_prediction(world):
    x, names, _ = _rows(world)
    fit = {True: [], False: []}
    for rec in world.names:
        rows = x[names == rec.name]
        prediction = compositional_prediction(world, rec.name)
        fit[rec.dedicated].append(_cos(rows.mean(0), prediction))
        if rec.dedicated:
            u = world.truth.directions[rec.identity_direction]
            edited = rows - np.outer(rows @ u, u)
            gain = [_cos(e, prediction) - _cos(r, prediction) for e, r in zip(edited, rows)]
            assert min(gain) > 0 and np.mean(gain) > 0.05, rec.name
    # A compositional name's rows scatter around its prediction (its own look is one draw from its parts'
    # biases); a dedicated name's rows sit further away by its identity.
    assert np.median(fit[False]) > 0.9 and min(fit[False]) > 0.7
    assert np.median(fit[True]) < np.percentile(fit[False], 5)


def test_low_bias_parts_stay_close_to_the_prior(world):
    low = [r for r in world.names if r.low_bias]
    assert len(low) == round(0.25 * 48) * 2 and all(r.kind in ("first", "last") and r.phase == 1 for r in low)
    for rec in world.names:
        if rec.kind == "full":
            continue
        tv = max(0.5 * sum(abs(rec.attribute_biases[g][v] - p) for v, p in zip(ATTRIBUTES[g], ATTRIBUTE_PRIOR[g]))
                 for g in ATTRIBUTES)
        assert (tv < 0.1) if rec.low_bias else True
        assert (rec.bias_strength < 0.1) == rec.low_bias


def test_vocabulary_holds_every_built_in_ladder_prompt_under_a_direction_label(world):
    ladders = json.loads(resources.files("namesae").joinpath("data/ladders.json").read_text())
    vocab = world.stores["vocab"]
    prompts = set(vocab.prompts)
    for item in ladders["attributes"]:
        wanted = item.get("prompts") or [item["template"].replace("{}", v) for v in item["values"]]
        assert set(wanted) <= prompts, item["name"]
    assert set(vocab.names) <= set(shared_labels())
    # A phrase is closest to its own label's direction among the shared ones (past the common base).
    x = vocab.embeddings @ world.truth.directions[1:len(shared_labels())].T
    best = [shared_labels()[1 + i] for i in np.argmax(x, axis=1)]
    assert np.mean([b == n for b, n in zip(best, vocab.names) if n != "base:person"]) == 1.0


# ---- progression ----------------------------------------------------------------------------------------------
def test_onsets_are_monotone_in_frequency_and_spread_over_the_progression(world):
    dedicated = sorted((r for r in world.names if r.dedicated), key=lambda r: r.frequency)
    onsets = [r.onset_index for r in dedicated]
    assert all(o is not None for o in onsets)
    assert all(a >= b for a, b in itertools.pairwise(onsets))  # frequent names emerge earlier
    assert len(set(onsets)) >= 4 and min(onsets) >= 1  # nothing is there at checkpoint 0
    assert all(r.onset_index is None and not any(r.identity_fraction) for r in world.names if not r.dedicated)
    f = world.config.onset_fraction
    for rec in dedicated:
        h = rec.identity_fraction
        assert h[rec.onset_index] >= f and (rec.onset_index == 0 or h[rec.onset_index - 1] < f)
        assert all(b > a for a, b in itertools.pairwise(h))
        # Steep enough for a +-1 target: two checkpoints before onset almost nothing, one after almost full.
        assert rec.onset_index < 2 or h[rec.onset_index - 2] < 0.05
        assert rec.onset_index + 1 >= len(h) or h[rec.onset_index + 1] > 0.95


def test_identity_grows_across_checkpoints_in_the_stores(world):
    T = world.config.n_checkpoints
    for rec in (r for r in world.names if r.dedicated):
        u = world.truth.directions[rec.identity_direction]
        loads = []
        for t in range(T):
            x, names, _ = _rows(world, f"progression/ckpt_{t:02d}/image")
            loads.append(float((x[names == rec.name] @ u).mean()))
        assert all(b > a for a, b in itertools.pairwise(loads))
        # Absent two checkpoints before onset, strong one checkpoint after (the ramp is steep).
        assert all(load < 0.1 for load in loads[:max(rec.onset_index - 1, 0)])
        assert all(load > 0.25 for load in loads[rec.onset_index + 1:])
    # Checkpoints differ only by the identity term: compositional names' rows are identical.
    comp = next(r.name for r in world.names if not r.dedicated)
    first, last = _rows(world, "progression/ckpt_00/image"), _rows(world, "image")
    np.testing.assert_allclose(first[0][first[1] == comp], last[0][last[1] == comp], atol=1e-6)


# ---- configs --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ({"n_full": -1}, "n_full must be >= 0"),
    ({"n_first": 0}, "n_first must be >= 1"),
    ({"images_per_template": 0}, "images_per_template must be >= 1"),
    ({"n_dedicated": 200}, "n_dedicated=200 exceeds n_full=160"),
    ({"dim": 32}, "dim=32 is too small for the 41 shared directions"),
    ({"dim": 48}, "dim=48 leaves 7 dimensions for 32 identity directions"),
    ({"n_full": 5000}, "n_full=5000 exceeds the 2304 distinct"),
    ({"samples_seen": (10, 5)}, "samples_seen must list"),
    ({"phase_edges": (0.0, 0.5, 0.3, 0.8, 1.0)}, "phase_edges must be"),
    ({"frequency": (0.0, 1e-4)}, "frequency must be > 0"),
    ({"stable_fraction": 1.5}, "stable_fraction must be in"),
    ({"n_templates": 9}, "n_templates must be in"),
])
def test_bad_configs_are_refused_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        SynthConfig(**override)


def test_toml_config_loads_the_synth_table_and_refuses_unknown_fields(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text("[synth]\nseed = 9\nsamples_seen = [1000000, 3000000]\nidentity_strength = [1.0, 1.2]\n")
    cfg = load_config(SynthConfig, path, "synth")
    assert cfg.seed == 9 and cfg.samples_seen == (1000000, 3000000) and cfg.identity_strength == (1.0, 1.2)
    path.write_text("[synth]\nn_names = 3\n")
    with pytest.raises(ConfigError, match=r"demo.toml \[synth\].*n_names"):
        load_config(SynthConfig, path, "synth")


def test_example_config_is_the_default_config():
    path = Path(__file__).resolve().parents[1] / "configs" / "synth-default.toml"
    assert load_config(SynthConfig, path, "synth") == SynthConfig()


def test_a_small_world_without_progression_writes_only_the_final_stores(tmp_path):
    cfg = SynthConfig(seed=1, progression=False, dtype="float16", **SMALL)
    paths = write_world(build_world(cfg), tmp_path)
    assert paths.checkpoints == [] and not (tmp_path / "progression").exists()
    with EmbeddingStore.open(paths.image) as store:
        assert store.dtype == "float16" and len(store) == (8 + 8 + 24) * 4 * 2
    assert dataclasses.replace(cfg, seed=2) != cfg


def test_cli_writes_a_world_and_reports_bad_configs_in_one_line(tmp_path):
    cmd = [sys.executable, "-c", "from namesae.cli import main; main()", "synth"]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[synth]\nn_first = 6\nn_last = 6\nn_full = 12\nn_dedicated = 4\nsamples_seen = [1000000, "
                   "10000000]\n")
    done = subprocess.run([*cmd, "--out", str(tmp_path / "w"), "--config", str(cfg), "--seed", "4"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "w") in done.stdout and '"dedicated": 4' in done.stdout
    assert load_truth(tmp_path / "w")["seed"] == 4
    cfg.write_text("[synth]\nn_dedicated = 13\nn_full = 12\n")
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "x"), "--config", str(cfg)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 2
    expected = (f"namesae: error: {cfg} [synth]: n_dedicated=13 exceeds n_full=12: only full names can own an "
                "identity direction; lower n_dedicated or raise n_full")
    assert bad.stderr.strip().splitlines() == [expected]
