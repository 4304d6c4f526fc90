"""run.json: every command records what it wrote, the run folder rule, the legacy form, one-line refusals."""

from __future__ import annotations

import json

import pytest

from namesae.errors import NamesaeError
from namesae.runs import read_run, record_artefact, record_decoder, run_folder_for


def test_outputs_find_their_run_folder_and_paths_are_relative(tmp_path):
    run = tmp_path / "run"
    (run / "world").mkdir(parents=True)
    assert run_folder_for(run / "world" / "image.h5") == run / "world"  # nothing recorded yet: its own folder
    record_artefact(run / "identity.json", "identity", command="namesae identity")
    assert run_folder_for(run / "world" / "image.h5") == run  # the nearest folder with a run.json
    record_artefact(run / "world" / "image.h5", "image_store", inputs={"names": tmp_path / "names.txt"})
    (run / "sae").mkdir()
    record_artefact(run / "sae", "sae")
    data = json.loads((run / "run.json").read_text())
    assert data["format"] == "namesae-run" and data["format_version"] == 1
    assert {k: v["path"] for k, v in data["artefacts"].items()} == {
        "identity": "identity.json", "image_store": "world/image.h5", "sae": "sae"}
    assert data["artefacts"]["image_store"]["inputs"]["names"] == str(tmp_path / "names.txt")  # outside: absolute
    assert data["artefacts"]["identity"]["command"] == "namesae identity"
    manifest = read_run(run)
    assert manifest.path("sae") == run / "sae" and manifest.path("missing") is None


def test_subfolder_records_merge_and_the_decoder_is_kept(tmp_path):
    run = tmp_path / "run"
    record_artefact(run / "world" / "image.h5", "image_store", run=run / "world")
    record_artefact(run / "basis" / "paint.json", "basis.paint", run=run)
    record_artefact(run / "basis" / "pairs.json", "basis.pairs", run=run)
    record_decoder(run, "kandinsky22", f"tiny:{run / 'steer' / 'tiny'}")
    manifest = read_run(run)
    assert manifest.path("image_store") == run / "world" / "image.h5"
    assert sorted(manifest.with_prefix("basis")) == ["basis.paint", "basis.pairs"]
    assert manifest.decoder == {"pipeline": "kandinsky22", "model": f"tiny:{run / 'steer' / 'tiny'}"}
    assert json.loads((run / "run.json").read_text())["decoder"]["model"] == "tiny:steer/tiny"  # relative


def test_the_flat_legacy_form_is_read_and_other_versions_are_refused_with_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"identity": "identity.json"}))
    assert read_run(tmp_path).path("identity") == tmp_path / "identity.json"
    (tmp_path / "run.json").write_text(json.dumps({"format": "namesae-run", "format_version": 7, "artefacts": {}}))
    with pytest.raises(NamesaeError) as err:
        read_run(tmp_path)
    assert "\n" not in str(err.value) and "'format_version'" in str(err.value) and "run.json" in str(err.value)
    (tmp_path / "run.json").write_text(json.dumps({"identity": 3}))
    with pytest.raises(NamesaeError, match="field 'identity' must be a path"):
        read_run(tmp_path)
