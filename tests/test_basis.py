"""Name basis and toy encoder: compositional names are paintable from other names' parts, dedicated names are not."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from namesae.basis import (
    DEFAULT_PHRASES,
    best_pairs,
    build_vocabulary,
    centered_cosine,
    cosine,
    fit_name_axes,
    paint,
    read_vocabulary,
    render_painting,
    sparse_nonnegative_fit,
    sparse_nonnegative_fit_batch,
    term_prompt,
    walk_axis,
    write_vocabulary,
)
from namesae.cli import app, main
from namesae.errors import NamesaeError, StoreError
from namesae.store import write_store
from namesae.synth import SynthConfig, build_world, write_world
from namesae.synth.score.basis import score_basis_on_world
from namesae.synth.toy_encoder import CANCELLERS, TRIGGERS, ToyTextEncoder, tokenize

SMALL = {"n_first": 12, "n_last": 12, "n_full": 40, "n_dedicated": 10, "n_templates": 5, "progression": False}
runner = CliRunner()


@pytest.fixture(scope="module")
def world():
    return build_world(SynthConfig(seed=1, **SMALL))


@pytest.fixture(scope="module")
def encoder(world):
    return ToyTextEncoder(world)


@pytest.fixture(scope="module")
def vocab(world, encoder):
    return build_vocabulary(encoder, {"first": [r.name for r in world.names if r.kind == "first"],
                                      "last": [r.name for r in world.names if r.kind == "last"],
                                      "phrase": list(DEFAULT_PHRASES)})


def _full(world, dedicated):
    return [r for r in world.names if r.kind == "full" and r.dedicated == dedicated]


def _text_row(world, name, template="a photo of {}"):
    rows = world.stores["text"]
    return rows.embeddings[rows.prompts.index(template.format(name))]


# ---- the toy encoder ---------------------------------------------------------------------------------------
def test_toy_encoder_agrees_with_the_worlds_text_store(world, encoder):
    rows = world.stores["text"]
    x = encoder.encode_text(rows.prompts)
    assert x.shape == (len(rows.prompts), world.config.dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert (x * rows.embeddings).sum(1).min() > 0.99  # only the fixed per-text noise differs
    assert encoder.space("text") == rows.space and encoder.normalized and encoder.dim == world.config.dim


def test_toy_encoder_is_deterministic_and_a_repeated_word_counts_once(world, encoder):
    again = ToyTextEncoder(world)
    texts = ["a photo of a person, charcoal", "a vintage photo of a woman"]
    np.testing.assert_array_equal(encoder.encode_text(texts), again.encode_text(texts))
    a, b = encoder.raw_vector("a sketch, charcoal"), encoder.raw_vector("a sketch, charcoal charcoal")
    noise = 2 * world.config.text_noise  # the two texts differ only in their per-text noise
    assert np.linalg.norm(a - b) < noise
    assert tokenize("A photo of Vicki, middle-aged!") == ["a", "photo", "of", "vicki", ",", "middle-aged", "!"]


def test_a_dedicated_full_name_carries_its_identity_and_its_separated_parts_do_not(world, encoder):
    ded = _full(world, True)[0]
    u = world.directions[f"identity:{ded.name}"]
    together = encoder.encode_text([f"a photo of {ded.name}"])[0]
    apart = encoder.encode_text([f"a photo of {ded.first}, {ded.last}"])[0]
    assert together @ u > 0.3
    assert abs(apart @ u) < 0.05
    # A compositional name carries no identity direction; its parts' tokens are random directions, so they overlap
    # each identity direction a little (token_strength 0.3 over 64 dimensions: std 0.05 per direction).
    for comp in _full(world, False):
        x = encoder.raw_vector(f"a photo of {comp.name}")
        for label, v in world.directions.items():
            if label.startswith("identity:"):
                assert abs(x @ v) < 0.2, (comp.name, label)


def test_triggers_switch_on_their_direction_harder_than_the_plain_word(world, encoder):
    plain = {"style:sketch": "sketch", "scene:beach": "beach", "style:painting": "painting"}
    for word, label in TRIGGERS.items():
        if label not in plain:
            continue
        u = world.directions[label]
        with_trigger = encoder.encode_text([f"a person, {word}"])[0] @ u
        with_plain = encoder.encode_text([f"a person, {plain[label]}"])[0] @ u
        assert with_trigger > with_plain + 0.1, word
    assert encoder.triggers_of("style:sketch") == ["charcoal"]


def test_cancellers_remove_their_direction(world, encoder):
    for word, label in CANCELLERS.items():
        u = world.directions[label]
        plain = {"scene:beach": "at the beach", "scene:astronaut": "as an astronaut", "style:painting": "painting",
                 "style:cartoon": "cartoon", "age:elderly": "elderly", "glasses:yes": "wearing glasses"}[label]
        before = encoder.encode_text([f"a photo of a person {plain}"])[0] @ u
        after = encoder.encode_text([f"a photo of a person {plain}, {word}"])[0] @ u
        assert before > 0.2 and abs(after) < 0.05, word


# ---- the fit -----------------------------------------------------------------------------------------------
def test_nonnegative_omp_recovers_a_planted_sparse_combination():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(200, 32))
    reference = rng.normal(size=32)
    target = 0.8 * reference + 0.7 * atoms[3] + 0.4 * atoms[10] + 0.2 * atoms[150]
    fit = sparse_nonnegative_fit(target, atoms, reference, k=5).final
    assert set(fit.indices) == {3, 10, 150}
    np.testing.assert_allclose(sorted(fit.weights), [0.2, 0.4, 0.7], atol=1e-6)
    assert fit.reference_weight == pytest.approx(0.8, abs=1e-6)
    assert fit.cosine == pytest.approx(1.0, abs=1e-9)
    two = sparse_nonnegative_fit(target, atoms, reference, k=2)
    assert len(two.final.indices) <= 2 and min(two.final.weights) > 0
    assert all(b.cosine >= a.cosine - 1e-12 for a, b in itertools.pairwise(two.steps))
    # A target only reachable with a negative weight is not fitted with one.
    neg = sparse_nonnegative_fit(reference - atoms[7], atoms, reference, k=4).final
    assert 7 not in neg.indices and all(w > 0 for w in neg.weights)


def test_the_fit_obeys_what_a_prompt_can_say():
    rng = np.random.default_rng(1)
    atoms = rng.normal(size=(30, 16))
    kinds = ["first"] * 10 + ["last"] * 10 + ["full"] * 5 + ["phrase"] * 5
    target = atoms[0] + atoms[1] + atoms[2] + atoms[12] + atoms[13]  # three first names, two surnames
    fit = sparse_nonnegative_fit(target, atoms, np.ones(16), k=6, kinds=kinds,
                                 max_per_kind={"first": 1, "last": 1, "full": 1}).final
    chosen = [kinds[i] for i in fit.indices]
    assert chosen.count("first") <= 1 and chosen.count("last") <= 1
    assert not ("full" in chosen and ("first" in chosen or "last" in chosen))
    assert render_painting([("elderly", "phrase"), ("Sullivan", "last"), ("Vicki", "first")]) == \
        "a photo of Vicki Sullivan, elderly"
    assert term_prompt("elderly", "phrase") == "a photo of a person, elderly"


def test_the_batched_fit_equals_the_per_target_fit():
    rng = np.random.default_rng(2)
    atoms = rng.normal(size=(300, 32))
    atoms[40] = atoms[7]  # an exact tie: both take the lower index
    nudge = np.random.default_rng(3).normal(size=(21, 32))
    atoms[41:61] = atoms[8] + 3e-7 * nudge[1:]  # near-ties with atom 8 that float32 misorders, float64 not
    atoms[50] = 0.0  # a zero atom is never chosen
    copies = [i for i in range(41, 61) if i != 50]
    kinds = ["first"] * 100 + ["last"] * 100 + ["full"] * 50 + ["phrase"] * 50
    reference = rng.normal(size=32)
    targets = np.empty((23, 32))
    targets[:20] = np.array([0.6 * reference + rng.uniform(0.2, 1.0, 3) @ atoms[rng.choice(300, 3, replace=False)]
                             + 0.05 * rng.normal(size=32) for _ in range(20)])
    targets[20] = 0.3 * reference + atoms[7] + atoms[8] + 0.05 * nudge[0]
    targets[21] = reference  # nothing to add after the reference: one step
    targets[22] = reference - atoms[5]  # only reachable with a negative weight
    for kw in ({}, {"kinds": kinds, "max_per_kind": {"first": 1, "last": 1, "full": 1}}):
        batched = sparse_nonnegative_fit_batch(targets, atoms, reference, k=4, batch=5, **kw)
        singles = [sparse_nonnegative_fit(target, atoms, reference, k=4, **kw) for target in targets]
        assert len(batched) == len(targets)
        for fit, single in zip(batched, singles):
            assert len(fit.steps) == len(single.steps)
            for a, b in zip(fit.steps, single.steps):
                assert a.indices == b.indices
                np.testing.assert_allclose(a.weights, b.weights, rtol=1e-9, atol=1e-12)
                assert a.reference_weight == pytest.approx(b.reference_weight, rel=1e-9, abs=1e-12)
                assert a.cosine == pytest.approx(b.cosine, abs=1e-12)
                np.testing.assert_allclose(a.fit, b.fit, rtol=1e-9, atol=1e-12)
        if not kw:  # the near-tie went to the copy with the best float64 score
            unit = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-300)
            near = [8, *copies]
            best = near[int(np.argmax(unit[near] @ (targets[20] - singles[20].steps[1].fit)))]
            assert best != 8 and best in batched[20].final.indices
            alone = sparse_nonnegative_fit_batch(targets[20:21], atoms, reference, k=4)[0]
            assert alone.final.indices == singles[20].final.indices
    assert len(batched[21].steps) == 1
    with pytest.raises(NamesaeError, match="shapes disagree"):
        sparse_nonnegative_fit_batch(targets[0], atoms, reference, k=4)


# ---- painting ----------------------------------------------------------------------------------------------
class SpyEncoder:
    """Wraps an encoder and records every text it encodes."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []
        self.dim, self.normalized = inner.dim, inner.normalized

    def encode_text(self, texts):
        self.seen += list(texts)
        return self.inner.encode_text(texts)

    def space(self, kind):
        return self.inner.space(kind)


def test_the_reencoded_cosine_comes_from_encoding_the_rendered_prompt(world, encoder, vocab):
    rec = _full(world, False)[0]
    target = _text_row(world, rec.name)
    spy = SpyEncoder(encoder)
    p = paint(target, vocab, spy, k=4, exclude=[rec.first, rec.last])
    assert p.prompt in spy.seen
    assert p.reencoded_cosine == pytest.approx(cosine(encoder.encode_text([p.prompt])[0], target), abs=1e-6)
    assert all(t.term not in (rec.first, rec.last) for t in p.terms)
    assert p.chosen_step == max(range(len(p.path)), key=lambda i: p.path[i].reencoded_cosine)
    full = paint(target, vocab, encoder, k=4, exclude=[rec.first, rec.last], choose="full")
    assert full.cosine >= p.cosine - 1e-9  # the full fit is the best combination, not always the best prompt


def test_compositional_names_are_painted_well_and_dedicated_names_poorly(world):
    score = score_basis_on_world(world, k=4)
    comp, ded = score["compositional"], score["dedicated"]
    assert score["n_compositional"] == 30 and score["n_dedicated"] == 10
    # Painted from other names' parts, a compositional name misses only its own parts' tokens.
    assert comp["reencoded_cosine"] > 0.9 and comp["reencoded_centered_cosine"] > 0.75
    assert ded["reencoded_centered_cosine"] < 0.65
    assert score["centered_gap"] > 0.2 and score["auc"] > 0.95 and score["mannwhitney_p"] < 1e-4
    # With its own parts allowed, a compositional name's planted parts are its top terms; a dedicated name's
    # identity takes weight from them.
    assert comp["parts_recall_top3"] >= 0.8 > ded["parts_recall_top3"]
    # The same holds for image targets (a name's mean generation).
    image = score_basis_on_world(world, k=4, target="image")
    assert image["centered_gap"] > 0.15 and image["auc"] > 0.9


def test_a_written_world_scores_the_same_as_the_world_in_memory(world, tmp_path):
    write_world(world, tmp_path / "w")
    a = score_basis_on_world(world, max_names=6)
    b = score_basis_on_world(tmp_path / "w", max_names=6)
    assert [r["prompt"] for r in a["names"]] == [r["prompt"] for r in b["names"]]
    np.testing.assert_allclose([r["reencoded_cosine"] for r in a["names"]],
                               [r["reencoded_cosine"] for r in b["names"]], atol=1e-5)


def test_pair_grid_in_batches_matches_the_plain_loop(world, encoder, vocab):
    rec = _full(world, False)[1]
    target = _text_row(world, rec.name)
    fast = best_pairs(target, vocab, encoder, top=200, reencode=12, batch=5)
    firsts, lasts = vocab.of_kind("first"), vocab.of_kind("last")
    r = vocab.reference
    plain = {}
    for f, af in zip(firsts.terms, firsts.embeddings):
        for l, al in zip(lasts.terms, lasts.embeddings):
            plain[f, l] = centered_cosine((af - r) + (al - r), target, r)
    best = sorted(plain, key=plain.get, reverse=True)[:12]
    assert {(p.first, p.last) for p in fast.pairs} == set(best)
    for p in fast.pairs:
        assert p.predicted_centered_cosine == pytest.approx(plain[p.first, p.last], abs=1e-6)
    assert fast.n_scored == len(firsts) * len(lasts)


def test_pair_search_finds_a_compositional_names_own_parts(world, encoder, vocab):
    hits = 0
    comp = _full(world, False)[:8]
    for rec in comp:
        result = best_pairs(_text_row(world, rec.name), vocab, encoder, top=3, reencode=20)
        hits += (rec.first, rec.last) in {(p.first, p.last) for p in result.pairs}
        assert result.pairs[0].reencoded_cosine > 0.99
    assert hits >= 6
    ded = _full(world, True)[0]
    banned = best_pairs(_text_row(world, ded.name), vocab, encoder, top=3, exclude=[ded.name])
    assert all(f"{p.first} {p.last}" != ded.name for p in banned.pairs)
    assert banned.pairs[0].reencoded_cosine < 0.9  # without its own name, no pair reaches a dedicated identity


# ---- axes --------------------------------------------------------------------------------------------------
def test_name_axes_order_name_parts_by_their_planted_bias(world, encoder, vocab):
    full = [r for r in world.names if r.kind == "full"]
    x = np.stack([_text_row(world, r.name) for r in full])
    axes = fit_name_axes(x, [r.name for r in full], n_axes=4)
    np.testing.assert_allclose(axes.axes @ axes.axes.T, np.eye(4), atol=1e-9)
    assert np.all(np.diff(axes.explained) <= 1e-12)
    np.testing.assert_allclose(axes.coordinates(x), axes.coords, atol=1e-9)
    firsts = vocab.of_kind("first")
    coords = axes.coordinates(firsts.embeddings)[:, 0]
    planted = [encoder.part_vector(n) @ axes.axes[0] for n in firsts.terms]
    assert spearmanr(coords, planted).statistic > 0.95
    walk = walk_axis(axes, 0, vocab, span=2.0, steps=5, top=2)
    lo, hi = walk[0].nearest["first"][0][0], walk[-1].nearest["first"][0][0]
    assert coords[firsts.terms.index(hi)] > coords[firsts.terms.index(lo)]


# ---- storage and bad input ---------------------------------------------------------------------------------
def test_a_vocabulary_survives_its_store(tmp_path, vocab):
    path = write_vocabulary(vocab, tmp_path / "v.h5")
    back = read_vocabulary(path)
    assert back.terms == vocab.terms and back.kinds == vocab.kinds and back.template == vocab.template
    np.testing.assert_array_equal(back.embeddings, vocab.embeddings)
    np.testing.assert_array_equal(back.reference, vocab.reference)
    plain = write_store(tmp_path / "plain.h5", np.ones((2, 4)), ["a", "b"], ["a", "b"], "text", "x:text")
    with pytest.raises(StoreError, match="plain.h5: not a basis vocabulary"):
        read_vocabulary(plain)


def test_bad_input_is_refused_with_a_clear_error(world, encoder, vocab):
    target = _text_row(world, _full(world, False)[0].name)
    with pytest.raises(NamesaeError, match="k must be >= 1"):
        paint(target, vocab, encoder, k=0)
    with pytest.raises(NamesaeError, match="expected one vector of dimension 64"):
        paint(np.ones(10), vocab, encoder)
    with pytest.raises(NamesaeError, match="zero or holds NaN"):
        paint(np.full(64, np.nan), vocab, encoder)
    with pytest.raises(NamesaeError, match="empty after exclusions"):
        paint(target, vocab.of_kind("first"), encoder, exclude=list(vocab.of_kind("first").terms))
    with pytest.raises(NamesaeError, match="choose must be"):
        paint(target, vocab, encoder, choose="best")
    with pytest.raises(NamesaeError, match="term kind 'nickname' is unknown"):
        build_vocabulary(encoder, {"nickname": ["Bob"]})
    with pytest.raises(NamesaeError, match="pair search needs first names and surnames"):
        best_pairs(target, vocab.of_kind("phrase"), encoder)
    with pytest.raises(NamesaeError, match="at least 3 names"):
        fit_name_axes(np.ones((2, 4)), ["a", "b"])


def test_the_basis_commands_write_json_and_refuse_bad_input(world, tmp_path, monkeypatch, capsys):
    root = tmp_path / "w"
    write_world(world, root)
    out = tmp_path / "out"
    res = runner.invoke(app, ["basis", "vocab", "--world", str(root), "--out", str(out / "v.h5")])
    assert res.exit_code == 0, res.output
    ded = _full(world, True)[0]
    res = runner.invoke(app, ["basis", "paint", "--vocab", str(out / "v.h5"), "--world", str(root), "--store",
                              str(root / "text.h5"), "--name", ded.name, "--exclude", ded.first, "--exclude",
                              ded.last, "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "paint.json").read_text())
    assert record["reencoded_cosine"] < 0.95 and record["prompt"].startswith("a photo of")
    assert "wrote" in res.output and (out / "paint.csv").is_file()
    res = runner.invoke(app, ["basis", "score", "--world", str(root), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "basis_score.json").read_text())["auc"] > 0.95
    monkeypatch.setattr(sys, "argv", ["namesae", "basis", "paint", "--vocab", str(root / "text.h5"), "--world",
                                      str(root), "--prompt", "a photo of a person"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a basis vocabulary" in err[0]
