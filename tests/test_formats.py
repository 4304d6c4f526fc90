"""Every result file round-trips through the module that owns it, on files the real pipeline wrote; a file of
another format_version, or with a field missing or of the wrong type, is refused with one line naming the file,
the field and the fix. And the notebook API (`import namesae as ns`) is a thin, lazy front over the same calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from namesae.errors import NamesaeError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world, an oracle SAE (its dictionary is the planted directions) and every result file
    the identity, features and groups steps write for it."""
    import namesae as ns
    from namesae.features import compute_feature_stats, labels_from_store
    from namesae.features.result import write_features
    from namesae.identity import write_identity
    from namesae.sae import build_sae_from_weights
    from namesae.synth import SynthConfig, build_world, load_truth, write_world

    root = tmp_path_factory.mktemp("formats")
    built = build_world(SynthConfig(seed=0, n_first=16, n_last=16, n_full=48, n_dedicated=8, progression=False))
    paths = write_world(built, root / "world")
    truth = load_truth(paths.root)
    directions = built.truth.directions.astype(np.float32)
    build_sae_from_weights(directions.T, np.full(len(directions), -0.1), directions, np.zeros(directions.shape[1]),
                           space=truth["spaces"]["image"], architecture="standard", out_dir=root / "sae")
    sae = ns.load_sae(root / "sae")
    found = ns.identity(paths.image, sae, text_store=paths.text, vocab=paths.vocab, prior_names=paths.prior_names)
    write_identity(found, root / "out", {"sae": str(root / "sae"), "store": str(paths.image)})
    with ns.open_store(paths.image) as image, ns.open_store(paths.vocab) as vocab:
        stats = compute_feature_stats(sae, image)
        stats.labels = labels_from_store(sae, vocab)
        write_features(stats, root / "out", image, {"sae": str(root / "sae"), "store": str(paths.image)})
    planted = sorted(r["name"] for r in truth["names"] if r["dedicated"])
    ns.groups(paths.image, sae, names=planted[:2], select="concepts").save(root / "out" / "groups.json")
    return root, paths, truth, sae, found


def _refused(load, path: Path, data: dict, field: str, fix: str) -> None:
    """Write `data` to path; `load` must refuse it with one line naming the file, the field and a fix."""
    path.write_text(json.dumps(data))
    with pytest.raises(NamesaeError) as err:
        load(path)
    line = str(err.value)
    named = "checksum mismatch" if field == "checksum" else f"'{field}'"
    assert "\n" not in line and str(path) in line and named in line and fix in line, line


# ---- identity.json ------------------------------------------------------------------------------------------------
def test_identity_json_round_trips_typed_with_feature_ids_and_their_details(world, tmp_path):
    from namesae.identity import IdentityFeature, IdentityResult, TopFeature

    root, _, truth, _, found = world
    written = json.loads((root / "out" / "identity.json").read_text())
    back = IdentityResult.load(root / "out" / "identity.json")
    assert back.config == found.config and back.meta["store"] == written["store"]
    assert [r.to_dict() for r in back.records] == written["names"]
    planted = {r["name"] for r in truth["names"] if r["dedicated"]}
    assert {r.name for r in back.dedicated()} == planted  # the oracle SAE finds every planted name, no other
    rec = next(r for r in back.records if r.dedicated)
    assert rec.identity_features == tuple(d.feature for d in rec.identity_feature_details) and \
        all(isinstance(j, int) for j in rec.identity_features)
    assert isinstance(rec.identity_feature_details[0], IdentityFeature) and isinstance(rec.top_features[0], TopFeature)
    assert rec.identity_feature_details[0].precision >= found.config.tau_p and rec.top_features[0].label
    again = back.save(tmp_path / "identity.json")
    assert {k: v for k, v in json.loads(again.read_text()).items() if k != "checksum"} == \
        {k: v for k, v in written.items() if k != "checksum"}


def test_identity_json_of_another_version_or_with_a_bad_field_is_refused_with_one_line(world, tmp_path):
    from namesae.identity import IdentityResult

    root = world[0]
    data = json.loads((root / "out" / "identity.json").read_text())
    first = data["names"][0]
    ded = next(i for i, r in enumerate(data["names"]) if r["identity_features"])
    bad_feature = {**data["names"][ded]["identity_features"][0], "precision": "high"}
    cases = [({**data, "format_version": 2}, "format_version"),
             ({k: v for k, v in data.items() if k != "format_version"}, "format_version"),
             ({k: v for k, v in data.items() if k != "names"}, "names"),
             ({**data, "names": [{k: v for k, v in first.items() if k != "dedicated"}]}, "names[0].dedicated"),
             ({**data, "names": [{**first, "n_rows": 3.5}]}, "names[0].n_rows"),
             ({**data, "names": [{**data["names"][ded], "identity_features": [bad_feature]}]},
              "names[0].identity_features[0].precision"),
             ({**data, "config": {**data["config"], "tau_p": "high"}}, "config"),
             ({**data, "names": [{**first, "n_rows": first["n_rows"] + 1}]}, "checksum")]
    for bad, field in cases:
        _refused(IdentityResult.load, tmp_path / "identity.json", bad, field, "re-run `namesae identity`")


# ---- features.json ------------------------------------------------------------------------------------------------
def test_features_json_round_trips_with_labels_top_names_and_rows(world, tmp_path):
    from namesae.features.result import FeaturesResult

    root, _, truth, _, _ = world
    written = json.loads((root / "out" / "features.json").read_text())
    back = FeaturesResult.load(root / "out" / "features.json")
    assert back.d_sae == len(truth["directions"]) == len(back.features) and back.meta["sae"] == written["sae"]
    assert [r.to_dict() for r in back.features] == written["features"]
    shared = [j for j, d in enumerate(truth["directions"]) if d["kind"] == "attribute"]
    assert np.mean([back.features[j].label == truth["directions"][j]["label"] for j in shared]) >= 0.9
    top = back.features[0].top_rows[0]
    assert top.name and top.prompt and back.labels()[0][0] == back.features[0].label
    again = back.save(tmp_path / "features.json")
    assert json.loads(again.read_text()) == written


def test_features_json_of_another_version_or_with_a_bad_field_is_refused_with_one_line(world, tmp_path):
    from namesae.features.result import FeaturesResult

    data = json.loads((world[0] / "out" / "features.json").read_text())
    first = data["features"][0]
    cases = [({**data, "format_version": "1"}, "format_version"),
             ({k: v for k, v in data.items() if k != "d_sae"}, "d_sae"),
             ({**data, "features": [{**first, "top_rows": [{"row": "7", "activation": 1.0}]}]},
              "features[0].top_rows[0].row"),
             ({**data, "features": [{k: v for k, v in first.items() if k != "mass"}]}, "features[0].mass")]
    for bad, field in cases:
        _refused(FeaturesResult.load, tmp_path / "features.json", bad, field, "re-run `namesae features`")


# ---- groups.json --------------------------------------------------------------------------------------------------
def test_groups_json_of_names_round_trips_and_the_other_layout_is_pointed_to(world, tmp_path):
    from namesae.groups import EmbeddingGroups, GroupsResult

    root = world[0]
    written = json.loads((root / "out" / "groups.json").read_text())
    back = GroupsResult.load(root / "out" / "groups.json")
    assert back.to_dict() == written and back.config.select == "concepts" and len(back.names) == 2
    for name, groups in back.names.items():
        shares = [g.mass_share for g in groups.grouping.groups]
        assert groups.name == name and sum(shares) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(NamesaeError, match="holds the groups of many names; read it with GroupsResult.load"):
        EmbeddingGroups.load(root / "out" / "groups.json")
    name = next(iter(written["names"]))
    bad = {**written, "names": {name: {**written["names"][name], "k": "2"}}}
    _refused(GroupsResult.load, tmp_path / "groups.json", {**written, "format_version": 2}, "format_version",
             "re-run `namesae groups --out`")
    _refused(GroupsResult.load, tmp_path / "groups.json", bad, f"names[{json.dumps(name)}].k", "re-run")


def test_groups_json_of_the_cli_round_trips_with_centroids(world, tmp_path):
    from typer.testing import CliRunner

    from namesae.cli import app
    from namesae.groups import EmbeddingGroups, GroupsResult

    root, paths, _, _, found = world
    name = found.dedicated()[0].name
    result = CliRunner().invoke(app, ["groups", "--sae", str(root / "sae"), "--store", str(paths.image), "--name",
                                      name, "--centroids", "--labels", str(root / "out" / "features.json"),
                                      "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "cli" / "groups.json").read_text())
    back = EmbeddingGroups.load(tmp_path / "cli" / "groups.json")
    assert back.to_dict(centroids=True) == written and back.name == name and back.row is None
    unit = [float(np.linalg.norm(g.centroid)) for g in back.grouping.groups]
    assert unit == pytest.approx([1.0] * len(unit), abs=1e-4) and any(g.label for g in back.grouping.groups)
    with pytest.raises(NamesaeError, match="one embedding's groups .* read it with EmbeddingGroups.load"):
        GroupsResult.load(tmp_path / "cli" / "groups.json")
    bad = {**written, "groups": [{**written["groups"][0], "weights": ["heavy"]}]}
    _refused(EmbeddingGroups.load, tmp_path / "bad.json", bad, "groups[0].weights", "re-run")


# ---- metrics.json -------------------------------------------------------------------------------------------------
def test_metrics_json_of_a_training_run_round_trips_typed(world, tmp_path):
    import namesae as ns
    from namesae.sae import SAEMetrics

    paths = world[1]
    sae = ns.train(paths.image, tmp_path / "sae", architecture="topk", k=4, expansion_factor=2.0, batch_size=64,
                   steps=20, checkpoint_every=10)
    written = json.loads((tmp_path / "sae" / "metrics.json").read_text())
    assert written["format_version"] == 1 and {k: v for k, v in written.items() if k != "format_version"} == \
        json.loads(json.dumps(sae.metrics))
    back = SAEMetrics.load(tmp_path / "sae" / "metrics.json")
    assert back.step == 20 and back.d_sae == 128 and back.mean_l0 == pytest.approx(4.0)
    assert back.by_kind["image"].rows == back.rows > 0 and back.explained_variance < 1  # 20 steps: barely trained
    assert {"format_version": 1, **back.to_dict()} == written
    assert ns.load_sae(tmp_path / "sae").metrics == sae.metrics  # the measurements, without the format field
    checkpoint = SAEMetrics.load(tmp_path / "sae" / "checkpoints" / "step_000010" / "metrics.json")
    assert checkpoint.architecture is None and checkpoint.rows == back.rows  # a checkpoint holds no run block
    back.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == written
    for bad, field in [({**written, "format_version": 0}, "format_version"),
                       ({**written, "mean_l0": None}, "mean_l0"),
                       ({k: v for k, v in written.items() if k != "world_size"}, "world_size"),
                       ({**written, "by_kind": {"image": {"rows": "all"}}}, "by_kind.image.rows")]:
        _refused(SAEMetrics.load, tmp_path / "metrics.json", bad, field, "re-run `namesae train`")


# ---- the notebook API ---------------------------------------------------------------------------------------------
def test_import_namesae_is_lazy_and_exports_what_it_lists():
    code = ("import sys, namesae as ns; assert 'torch' not in sys.modules and 'sae_lens' not in sys.modules; "
            "assert sorted(ns.__all__) == sorted({'__version__', *ns._CALLABLE, *ns._EXPORTS}); "
            "assert [n for n in ns.__all__ if not hasattr(ns, n)] == []; print(ns.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    import namesae

    assert out.stdout.strip() == namesae.__version__


def test_steps_are_callable_and_stay_the_subpackages_they_share_a_name_with():
    import namesae as ns
    import namesae.identity.analysis as analysis  # noqa: PLR0402 -- this import form is what is tested
    from namesae.identity import IdentityConfig

    assert all(callable(getattr(ns, step)) for step in ns._CALLABLE)
    assert ns.identity.IdentityConfig is IdentityConfig and analysis.__name__ == "namesae.identity.analysis"
    assert ns.steer.ZeroGroup is ns.ZeroGroup


def test_notebook_steer_keeps_the_error_term_and_zeroing_identity_features_moves_a_name_to_its_parts(world):
    import torch

    import namesae as ns
    from namesae.synth import compositional_prediction, load_world

    _, paths, _, sae, found = world
    with ns.open_store(paths.image) as store:
        rec = found.dedicated()[0]
        x = store.read_rows(store.rows_of(rec.name))
    assert torch.equal(ns.steer(sae, x, []).embeddings, torch.as_tensor(x))
    edit = json.dumps([{"op": "zero", "features": list(rec.identity_features)}])  # inline JSON, as on the CLI
    moved = ns.steer(sae, x, edit).embeddings.numpy()
    parts = compositional_prediction(load_world(paths.root), rec.name)

    def cos(rows: np.ndarray) -> float:
        return float((rows @ parts / np.linalg.norm(rows, axis=1)).mean())

    assert cos(moved) > cos(x) + 0.05
    transfer = ns.steer(sae, x[:1], [ns.Transfer(1.0, ns.CodeRef("name", found.records[0].name))], store=paths.image)
    assert not torch.equal(transfer.embeddings, torch.as_tensor(x[:1]))


def test_basis_and_search_files_round_trip_and_refuse_another_version_kind_or_missing_field(tmp_path):
    from namesae.basis.result import BasisFile
    from namesae.search.result import SearchFile

    for owner, kind, data in ((BasisFile, "paint", {"target": "t", "vocab": "v", "k": 4, "prompt": "a photo",
                                                    "terms": [{"term": "Ann", "weight": 0.5}]}),
                              (SearchFile, "cancel", {"features": [3], "label": "x", "ranked": []})):
        path = owner(kind, data).save(tmp_path / f"{kind}.json")
        back = owner.load(path)
        assert (back.kind, back.data) == (kind, data)
        raw = json.loads(path.read_text())
        for bad, field in (({**raw, "format_version": 2}, "format_version"), ({**raw, "kind": "nope"}, "kind"),
                           ({k: v for k, v in raw.items() if k != "label" and k != "vocab"},
                            "vocab" if owner is BasisFile else "label")):
            path.write_text(json.dumps(bad))
            with pytest.raises(NamesaeError) as err:
                owner.load(path)
            line = str(err.value)
            assert "\n" not in line and str(path) in line and f"'{field}'" in line and "re-run" in line
