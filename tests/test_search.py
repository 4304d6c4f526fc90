"""Feature search, anti-patterns and contrast find what the synthetic world planted: triggers, cancellers, scenes."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from namesae.cli import app, main
from namesae.errors import NamesaeError
from namesae.search import (
    FeatureTarget,
    bootstrap_d,
    cohen_d,
    contrast_codes,
    contrast_store,
    corpus_prompts,
    find_cancellers,
    improve_prompt,
    parse_features,
    prompt_edits,
    rank_prompts,
    select_rows,
)
from namesae.store import EmbeddingStore, write_store
from namesae.synth import SynthConfig, build_world, write_world
from namesae.synth.score.search import planted_dictionary, score_search_on_world
from namesae.synth.toy_encoder import ToyTextEncoder

SMALL = {"n_first": 12, "n_last": 12, "n_full": 40, "n_dedicated": 10, "n_templates": 5, "progression": False}
runner = CliRunner()


@pytest.fixture(scope="module")
def world():
    return build_world(SynthConfig(seed=2, **SMALL))


@pytest.fixture(scope="module")
def encoder(world):
    return ToyTextEncoder(world)


@pytest.fixture(scope="module")
def oracle(world):
    return planted_dictionary(world)


def target_of(oracle, *labels):
    ids = tuple(oracle.labels.index(label) for label in labels)
    return FeatureTarget(oracle.codes, ids, len(oracle.labels), oracle.directions[list(ids)], ",".join(labels))


def full_names(world, n=4):
    return [r.name for r in world.names if r.kind == "full"][:n]


# ---- feature search ----------------------------------------------------------------------------------------
def test_search_finds_every_planted_trigger_and_canceller_and_the_contrast(world):
    score = score_search_on_world(world, steps=1, n_boot=100)
    assert score["dictionary"] == "planted"
    assert score["triggers"]["found"] == score["triggers"]["of"] == 10
    assert score["triggers"]["top1"] == 10
    assert score["cancellers"]["found"] == score["cancellers"]["of"] == 6
    assert score["contrast"]["found"]
    assert all(t["gain"] > 0 for t in score["triggers"]["items"])
    assert all(c["drop_fraction"] > 0.7 and c["rest_cosine"] > 0.99 for c in score["cancellers"]["items"])


def test_corpus_ranking_orders_every_prompt_by_its_activation(world, encoder, oracle):
    target = target_of(oracle, "scene:beach")
    corpus = corpus_prompts(full_names(world), ["a photo of {name}", "a photo of {name} at the beach"],
                            ["a beach", "an office"])
    assert len(corpus) == 10
    ranked = rank_prompts(corpus, encoder, target, batch=3)
    assert sorted(r.prompt for r in ranked) == sorted(corpus)
    direct = target.activation(encoder.encode_text([r.prompt for r in ranked]))
    np.testing.assert_allclose([r.activation for r in ranked], direct, atol=1e-6)
    assert all(a.activation >= b.activation for a, b in itertools.pairwise(ranked))
    assert "beach" in ranked[0].prompt and "beach" not in ranked[-1].prompt


def test_token_search_gains_at_every_step_and_reports_real_activations(encoder, oracle):
    target = target_of(oracle, "style:sketch")
    tokens = encoder.search_tokens()
    result = improve_prompt("a sketch of a person", tokens, encoder, target, steps=3)
    assert result.steps and all(s.gain > 0 for s in result.steps)
    assert "charcoal" in result.best_prompt.split()
    assert result.best_activation == pytest.approx(target.activation(encoder.encode_text([result.best_prompt]))[0],
                                                   abs=1e-6)
    assert result.best_activation == pytest.approx(result.start_activation + sum(s.gain for s in result.steps))
    beam = improve_prompt("a sketch of a person", tokens, encoder, target, steps=3, beam=3)
    assert beam.best_activation >= result.best_activation - 1e-9


def test_prompt_edits_try_every_substitution_and_insertion():
    edits = prompt_edits(("a", "photo"), ["photo", "x"])
    subs = [e for _, e in edits if e.startswith("substitute")]
    ins = [w for w, e in edits if e.startswith("insert")]
    assert len(subs) == 2 * 2 - 1  # 'photo' -> 'photo' is no edit
    assert len(ins) == 3 * 2 and ("x", "a", "photo") in ins and ("a", "photo", "x") in ins
    assert len(prompt_edits(("a", "photo"), ["x"], ops=("insert",))) == 3


# ---- anti-patterns -----------------------------------------------------------------------------------------
def test_the_planted_canceller_suppresses_an_unwanted_scene_and_keeps_the_rest(world, encoder, oracle):
    target = target_of(oracle, "scene:beach")
    prompt = f"a photo of {full_names(world)[0]} at the beach"
    result = find_cancellers(prompt, encoder.search_tokens(), encoder, target, steps=2, top=5)
    best = result.ranked[0]
    assert best.addition == "indoors" and best.prompt == f"{prompt}, indoors"
    assert best.drop_fraction > 0.9 and best.rest_cosine > 0.99
    assert best.activation == pytest.approx(target.activation(encoder.encode_text([best.prompt]))[0], abs=1e-6)
    assert all(a.drop <= best.drop + 1e-12 for a in result.ranked)
    assert all(a.rest_cosine >= 0.9 for a in result.ranked)
    strict = find_cancellers(prompt, ["indoors", "office", "a kitchen"], encoder, target, min_rest_cosine=1.0)
    assert strict.ranked == [] and strict.n_rejected == strict.n_candidates == 3
    anywhere = find_cancellers(prompt, ["indoors"], encoder, target, positions="any")
    assert anywhere.n_candidates == 1 + len(prompt.split())


def test_a_group_is_cancelled_one_feature_at_a_time(world, encoder, oracle):
    target = target_of(oracle, "scene:beach", "age:elderly")
    prompt = f"a photo of {full_names(world)[1]} at the beach, elderly"
    result = find_cancellers(prompt, encoder.search_tokens(), encoder, target, steps=3)
    assert {a.addition for a in result.path[:2]} == {"indoors", "ageless"}
    assert result.path[1].activation < result.path[0].activation < result.activation


# ---- contrast ----------------------------------------------------------------------------------------------
def test_contrast_recovers_planted_differences_with_a_covering_interval():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(0.5, 1.0, size=(400, 30)), 0)
    b = np.maximum(rng.normal(0.5, 1.0, size=(300, 30)), 0)
    a[:, 4] += 1.0
    b[:, 11] += 0.6
    result = contrast_codes(a, b, top=5, n_boot=300, seed=1)
    assert [r.feature for r in result.rows[:2]] == [4, 11]
    assert result.rows[0].cohen_d > 0 > result.rows[1].cohen_d
    row = result.rows[0]
    pooled = np.sqrt(((399) * a[:, 4].var(ddof=1) + 299 * b[:, 4].var(ddof=1)) / 698)
    assert row.cohen_d == pytest.approx((a[:, 4].mean() - b[:, 4].mean()) / pooled, rel=1e-9)
    assert row.ci_low < row.cohen_d < row.ci_high and row.ci_high - row.ci_low < 0.5
    assert all(abs(r.cohen_d) < 0.3 for r in result.rows[2:])


def test_bootstrap_of_identical_sets_brackets_zero():
    rng = np.random.default_rng(3)
    x = rng.exponential(size=(200, 3))
    lo, hi = bootstrap_d(x, x.copy(), n_boot=400)
    assert np.all(lo < 0) and np.all(hi > 0)
    assert cohen_d(np.zeros(1), np.zeros(1), 5, np.zeros(1), np.zeros(1), 5)[0] == 0.0


def test_streamed_store_contrast_matches_the_in_memory_reference(world, oracle, tmp_path):
    rows = world.stores["image"]
    path = write_store(tmp_path / "image.h5", rows.embeddings, rows.names, rows.prompts, rows.kinds, rows.space,
                       normalized=True, seeds=rows.seeds)
    with EmbeddingStore.open(path) as store:
        a = select_rows(store, prompt_contains="at the beach")
        b = select_rows(store, prompt_contains="in an office")
        streamed = contrast_store(oracle.codes, store, a, b, len(oracle.labels), top=10, n_boot=50, batch=7)
        with pytest.raises(NamesaeError, match="names \\['Nobody'\\] have no rows"):
            select_rows(store, names=["Nobody"])
        one = select_rows(store, names=[full_names(world)[0]], prompt_contains="at the beach")
        assert len(one) == world.config.images_per_template
        with pytest.raises(NamesaeError, match="at least 2 rows in each set"):
            contrast_store(oracle.codes, store, one[:1], b, len(oracle.labels))
    x = rows.embeddings
    reference = contrast_codes(oracle.codes(x[a]), oracle.codes(x[b]), top=10, n_boot=50)
    assert [r.feature for r in streamed.rows] == [r.feature for r in reference.rows]
    np.testing.assert_allclose([r.cohen_d for r in streamed.rows], [r.cohen_d for r in reference.rows], rtol=1e-6)
    np.testing.assert_allclose([r.ci_low for r in streamed.rows], [r.ci_low for r in reference.rows], rtol=1e-6)
    labels = [oracle.labels[r.feature] for r in streamed.rows[:2]]
    assert set(labels) == {"scene:beach", "scene:office"}


# ---- bad input ---------------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_a_clear_error(encoder, oracle):
    target = target_of(oracle, "scene:beach")
    with pytest.raises(NamesaeError, match=f"out of range; the SAE has {len(oracle.labels)} features"):
        FeatureTarget(oracle.codes, (99,), len(oracle.labels))
    with pytest.raises(NamesaeError, match="expected feature ids"):
        parse_features("3,x")
    assert parse_features("3, 4 9") == [3, 4, 9]
    with pytest.raises(NamesaeError, match="token vocabulary is empty"):
        improve_prompt("a photo", [" "], encoder, target)
    with pytest.raises(NamesaeError, match="ops"):
        improve_prompt("a photo", ["x"], encoder, target, ops=("delete",))
    with pytest.raises(NamesaeError, match="corpus is empty"):
        rank_prompts([], encoder, target)
    with pytest.raises(NamesaeError, match="positions must be"):
        find_cancellers("a photo", ["x"], encoder, target, positions="middle")
    with pytest.raises(NamesaeError, match="equal features"):
        contrast_codes(np.ones((3, 2)), np.ones((3, 4)))


def test_the_search_commands_write_json_and_refuse_bad_input(world, tmp_path, monkeypatch, capsys):
    root = tmp_path / "w"
    write_world(world, root)
    out = tmp_path / "out"
    res = runner.invoke(app, ["search", "cancel", "--world", str(root), "--features", "scene:beach", "--prompt",
                              f"a photo of {full_names(world)[0]} at the beach", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "cancel.json").read_text())["ranked"][0]["addition"] == "indoors"
    res = runner.invoke(app, ["search", "drive", "--world", str(root), "--features", "style:sketch", "--templates",
                              "a photo of {name}", "--templates", "a sketch of {name}", "--steps", "1", "--out",
                              str(out)])
    assert res.exit_code == 0, res.output
    drive = json.loads((out / "drive.json").read_text())
    assert drive["ranked"][0]["prompt"].startswith("a sketch of")
    assert "charcoal" in drive["searches"][0]["best_prompt"]
    res = runner.invoke(app, ["search", "contrast", "--world", str(root), "--store", str(root / "text.h5"),
                              "--a-prompt", "at the beach", "--b-prompt", "in an office", "--n-boot", "50",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "contrast.json").read_text())["rows"]
    assert {rows[0]["label"], rows[1]["label"]} == {"scene:beach", "scene:office"}
    assert (out / "contrast.csv").read_text().startswith("feature,label,mean_a")
    monkeypatch.setattr(sys, "argv", ["namesae", "search", "cancel", "--world", str(root), "--features",
                                      "scene:nowhere", "--prompt", "a photo"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'scene:nowhere' is neither an id nor a planted label" in err[0]


def test_an_saelens_sae_drives_the_searches_through_load_sae(world, oracle, tmp_path):
    from namesae.sae import build_sae_from_weights, load_sae
    from namesae.search import sae_target

    d = oracle.directions  # [F, d]: a standard SAE whose encoder and decoder are the planted directions
    build_sae_from_weights(d.T, np.full(len(d), -oracle.threshold), d, np.zeros(d.shape[1]),
                           space=world.stores["image"].space, out_dir=tmp_path / "sae")
    sae = load_sae(tmp_path / "sae")
    beach = oracle.labels.index("scene:beach")
    target = sae_target(sae, [beach])
    x = world.stores["text"].embeddings[:50]
    np.testing.assert_allclose(target.activation(x), oracle.codes(x)[:, beach], atol=1e-5)
    with pytest.raises(NamesaeError, match="out of range"):
        sae_target(sae, [len(d)])
    root = tmp_path / "w"
    write_world(world, root)
    res = runner.invoke(app, ["search", "cancel", "--sae", str(tmp_path / "sae"), "--world", str(root),
                              "--features", str(beach), "--prompt", f"a photo of {full_names(world)[0]} at the beach",
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "cancel.json").read_text())["ranked"][0]["addition"] == "indoors"
    other = tmp_path / "other"
    build_sae_from_weights(d.T, np.zeros(len(d)), d, np.zeros(d.shape[1]), space="synth:99:image", out_dir=other)
    res = runner.invoke(app, ["search", "cancel", "--sae", str(other), "--world", str(root), "--features", "1",
                              "--prompt", "a photo"])
    assert res.exit_code != 0 and "space" in str(res.exception)
