"""Name corpora, prompt templates and user name lists."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
from importlib import resources
from pathlib import Path

import pytest

from namesae import names as N
from namesae.errors import ConfigError, NamesaeError

ROOT = Path(__file__).resolve().parents[1]


# ---- shipped corpora ---------------------------------------------------------------------------------------
def test_first_names_hold_top_300_per_sex_for_every_decade_1880s_to_2010s():
    rows = N.first_names()
    assert N.decades() == list(range(1880, 2020, 10))
    for decade in N.decades():
        for sex in N.SEXES:
            group = N.first_names(decade=decade, sex=sex)
            assert [r.rank for r in group] == list(range(1, 301))
            counts = [r.count for r in group]
            assert counts == sorted(counts, reverse=True)
    assert len(rows) == 14 * 2 * 300


def test_first_names_match_known_ssa_facts():
    top = {(r.decade, r.sex): r.name for r in N.first_names(top=1)}
    assert top[(1880, "F")] == "Mary" and top[(1880, "M")] == "John"
    assert top[(1990, "F")] == "Jessica" and top[(1990, "M")] == "Michael"
    assert top[(2010, "F")] == "Emma" and top[(2010, "M")] == "Noah"
    assert [r.name for r in N.first_names(decade=1990, sex="f", top=3)] == ["Jessica", "Ashley", "Emily"]


def test_first_name_filters_refuse_bad_values():
    with pytest.raises(ConfigError, match="decade 1875"):
        N.first_names(decade=1875)
    with pytest.raises(ConfigError, match="sex"):
        N.first_names(sex="X")
    with pytest.raises(ConfigError, match="top"):
        N.first_names(top=0)


def test_shipped_first_names_are_what_the_build_script_makes_from_ssa_tables():
    spec = importlib.util.spec_from_file_location("build_name_corpora", ROOT / "scripts" / "build_name_corpora.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.first_names_by_decade(script.ssa_table(), 300)
    shipped = list(csv.DictReader(io.StringIO(
        resources.files("namesae").joinpath("data", "first_names.csv").read_text(encoding="utf-8"))))
    assert len(built) == len(shipped)
    for row, rec in zip(built.itertuples(index=False), shipped):
        assert (row.name, row.sex, row.decade, row.rank, row.count) == (
            rec["name"], rec["sex"], int(rec["decade"]), int(rec["rank"]), int(rec["count"]))


def test_name_frequency_is_the_all_time_count_over_both_sexes():
    james_m, james_f = N.name_frequency("James", "M"), N.name_frequency("James", "F")
    assert james_m > 5_000_000 and 0 < james_f < james_m
    assert N.name_frequency("James") == james_m + james_f
    # the all-time count is at least the count of any single decade
    best_decade = max(r.count for r in N.first_names(sex="M") if r.name == "James")
    assert james_m > best_decade
    assert N.name_frequency("Qqqzx") == 0
    assert N.name_frequency("Vicki") > N.name_frequency("Vicky") > 0


def test_surnames_are_ranked_census_surnames():
    rows = N.surnames()
    assert len(rows) == 1000
    assert [r.name for r in rows[:5]] == ["Smith", "Johnson", "Williams", "Jones", "Brown"]
    assert [r.rank for r in rows] == list(range(1, 1001))
    percents = [r.percent for r in rows]
    assert percents == sorted(percents, reverse=True)
    names = {r.name for r in rows}
    assert {"O'Brien", "McDonald"} <= names and "Obrien" not in names
    assert len(N.surnames(top=10)) == 10


def test_famous_names_cover_people_characters_and_artworks_without_duplicates():
    rows = N.famous_names()
    assert len(rows) >= 300
    assert len({r.name for r in rows}) == len(rows)
    by_name = {r.name: r.category for r in rows}
    assert by_name["Barack Obama"] == "politician"
    assert by_name["Mona Lisa"] == "artwork"
    assert by_name["Sherlock Holmes"] == "fictional"
    for category in ("politician", "actor", "musician", "artist", "athlete", "scientist", "fictional", "artwork"):
        assert len(N.famous_names(category)) >= 10
    for r in rows:  # every shipped name passes the same validation as user names
        assert N.clean_name(r.name, "famous_names.csv") == r.name
    with pytest.raises(ConfigError, match="category 'royalty'"):
        N.famous_names("royalty")


def test_builtin_lists_are_distinct_names_in_rank_order():
    first = N.builtin_names("first", top=1)
    assert set(first) == {r.name for r in N.first_names(top=1)}
    assert len(first) == len(set(first))
    assert N.builtin_names("surnames", top=3) == ["Smith", "Johnson", "Williams"]
    assert N.builtin_names("famous", category="artwork", top=1) == ["Mona Lisa"]
    with pytest.raises(ConfigError, match="builtin name list 'pets'"):
        N.builtin_names("pets")


# ---- templates ---------------------------------------------------------------------------------------------
def test_every_shipped_template_holds_name_and_renders():
    assert {"portrait", "scenario", "style"} <= set(N.template_kinds())
    for kind in N.template_kinds():
        temps = N.templates(kind)
        assert temps and len(set(temps)) == len(temps)
        for t in temps:
            prompt = N.render(t, "Zoë Smith")
            assert "Zoë Smith" in prompt and "{" not in prompt
    assert "a photo of {name}" in N.templates("portrait")
    assert "{name} as an astronaut" in N.templates("scenario")
    assert "a painting of {name}" in N.templates("style")


def test_render_replaces_every_placeholder_and_leaves_braces_in_names_alone():
    assert N.render("{name} and {name}", "Ann") == "Ann and Ann"
    assert N.render("a photo of {name}", "{x}") == "a photo of {x}"


@pytest.mark.parametrize("bad, message", [
    ("a photo of a person", "has no {name}"),
    ("a photo of {name} in {place}", "holds {place}"),
    ("a photo of {name} }", "stray brace"),
])
def test_templates_without_name_or_with_other_placeholders_are_refused(bad, message):
    with pytest.raises(N.TemplateError, match=message):
        N.render(bad, "Ann")


def test_resolve_templates_mixes_kinds_and_literals_without_duplicates():
    got = N.resolve_templates(["style", "a painting of {name}", "{name} at dusk"])
    assert got == N.templates("style") + ["{name} at dusk"]
    with pytest.raises(N.TemplateError, match="template kind|has no"):
        N.resolve_templates(["portraits"])
    with pytest.raises(N.TemplateError, match="no templates"):
        N.resolve_templates([])


# ---- user name lists ---------------------------------------------------------------------------------------
def write(tmp_path: Path, filename: str, text: str | bytes) -> Path:
    path = tmp_path / filename
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_txt_names_skip_blank_and_comment_lines_and_are_normalised(tmp_path):
    path = write(tmp_path, "n.txt", "# my list\n  Vicki \n\nBarack   Obama\nZoe\u0301\n")
    assert N.load_names(path) == ["Vicki", "Barack Obama", "Zo\u00e9"]


def test_csv_and_json_name_lists(tmp_path):
    csv_path = write(tmp_path, "n.csv", "\ufeffid,Name,notes\n1,Ann,x\n2,\"Smith, John\",y\n")
    assert N.load_names(csv_path) == ["Ann", "Smith, John"]
    assert N.load_names(write(tmp_path, "a.json", json.dumps(["Ann", "Bo"]))) == ["Ann", "Bo"]
    objects = json.dumps([{"name": "Ann", "group": 1}, {"name": "Mona Lisa"}])
    assert N.load_names(write(tmp_path, "b.json", objects)) == ["Ann", "Mona Lisa"]


def test_duplicate_names_are_dropped_with_a_warning_keeping_the_first(tmp_path, caplog):
    path = write(tmp_path, "n.txt", "Ann\nBo\nZo\u00e9\nAnn\nZoe\u0301\nann\n")
    with caplog.at_level(logging.WARNING, logger="namesae.names"):
        got = N.load_names(path)
    assert got == ["Ann", "Bo", "Zo\u00e9", "ann"]  # NFC-equal names are duplicates; case is kept
    assert len([r for r in caplog.records if "duplicate" in r.message]) == 2
    assert f"{path}:4" in caplog.text


@pytest.mark.parametrize("filename, text, message", [
    ("n.csv", "name\nAnn\n\n\"  \"\n", r"n.csv:4: empty name"),
    ("n.txt", "Ann\nBo\n" + "x" * 101 + "\n", r"n.txt:3: name is 101 characters long \(max 100\)"),
    ("n.txt", "Ann\nB\x00o\n", r"n.txt:2: .*control/invisible character U\+0000"),
    ("n.txt", "\n# nothing\n", r"n.txt: no names"),
    ("n.csv", "person\nAnn\n", r"n.csv: CSV has no 'name' column"),
    ("n.json", "{\"name\": \"Ann\"}", r"n.json: JSON must be a list"),
    ("n.json", "[\"Ann\", {\"who\": \"Bo\"}]", r"n.json: item 1: object has no 'name'"),
    ("n.json", "[\"Ann\", 3]", r"n.json: item 1: name is int"),
    ("n.json", "[\"Ann\",", r"n.json:1: invalid JSON"),
    ("n.xlsx", "Ann", r"unsupported name file type '.xlsx'"),
])
def test_bad_name_files_raise_an_error_naming_file_and_line(tmp_path, filename, text, message):
    path = write(tmp_path, filename, text)
    with pytest.raises(N.NameFileError, match=message):
        N.load_names(path)


def test_a_100_character_name_is_accepted_and_non_utf8_is_refused(tmp_path):
    assert N.load_names(write(tmp_path, "ok.txt", "y" * 100 + "\n")) == ["y" * 100]
    with pytest.raises(NamesaeError, match="not UTF-8"):
        N.load_names(write(tmp_path, "latin.txt", "Zo\xe9\n".encode("latin-1")))
    with pytest.raises(NamesaeError, match="not found"):
        N.load_names(tmp_path / "missing.txt")
