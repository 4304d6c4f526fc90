"""Name corpora and prompt templates: the left end of the pipeline (names -> prompts).

Shipped data (src/namesae/data, rebuilt by scripts/build_name_corpora.py where it comes from public tables):
  first_names.csv        top 300 first names per sex per decade, 1880s-2010s (US Social Security baby names,
                         public domain; the 2010s hold 2010-2017): name,sex,decade,rank,count
  first_name_totals.csv  all-time SSA count per (name, sex) with >= 1000 babies: name,sex,count,first_year,peak_decade
  surnames.csv           the 1000 most common US surnames (US Census 1990 surname list): name,rank,percent,count
  famous_names.csv       a hand-curated list of well-known people, characters and artworks: name,category
  templates.json         prompt templates by kind (portrait, scenario, style), each holding {name} once or more

User name lists (`load_names`): TXT (one name per line; blank lines and lines starting with '#' are skipped),
CSV (a `name` column) or JSON (a list of strings, or of objects with a "name" field). Every name is normalised to
Unicode NFC, stripped, and internal runs of whitespace become one space. Empty names, names longer than
MAX_NAME_CHARS characters and names holding control characters are errors naming the file and line. Duplicates
(after normalisation, case-sensitive) are dropped with a logged warning, keeping the first occurrence, so that a
merged list can be reused as it is.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from namesae.errors import ConfigError, NamesaeError

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 100
NAME_PLACEHOLDER = "{name}"
SEXES = ("F", "M")
BUILTIN_LISTS = ("first", "surnames", "famous")


class NameFileError(NamesaeError):
    """A user's name list is missing, unreadable, empty or holds an invalid name."""


class TemplateError(ConfigError):
    """A prompt template is invalid (no {name}, unknown placeholder) or an unknown template kind was asked for."""


@dataclass(frozen=True)
class FirstName:
    """One first name's standing among US births of one sex in one decade (SSA baby names)."""

    name: str
    sex: str  # "F" or "M"
    decade: int  # 1880, 1890, ..., 2010
    rank: int  # 1 = most common of that sex in that decade
    count: int  # babies given the name in that decade


@dataclass(frozen=True)
class Surname:
    """One common US surname with its rank and share of the population (US Census)."""

    name: str
    rank: int  # 1 = most common
    percent: float  # percent of people with the surname
    count: int | None  # people with the surname, where the source table gives it


@dataclass(frozen=True)
class FamousName:
    """A well-known name (person, character or artwork) with a coarse category."""

    name: str
    category: str  # politician, actor, musician, artist, athlete, scientist, writer, business, historical, ...


# ---- shipped data ------------------------------------------------------------------------------------------
def _data_text(filename: str) -> str:
    """Text of a data file shipped in the package."""
    return resources.files("namesae").joinpath("data", filename).read_text(encoding="utf-8")


@cache
def _first_name_rows() -> tuple[FirstName, ...]:
    rows = csv.DictReader(io.StringIO(_data_text("first_names.csv")))
    return tuple(FirstName(r["name"], r["sex"], int(r["decade"]), int(r["rank"]), int(r["count"])) for r in rows)


@cache
def _name_totals() -> dict[tuple[str, str], int]:
    rows = csv.DictReader(io.StringIO(_data_text("first_name_totals.csv")))
    return {(r["name"], r["sex"]): int(r["count"]) for r in rows}


def decades() -> list[int]:
    """Decades covered by the first-name table, oldest first."""
    return sorted({row.decade for row in _first_name_rows()})


def first_names(decade: int | None = None, sex: str | None = None, top: int | None = None) -> list[FirstName]:
    """First names of US births, filtered by decade, sex ("F"/"M") and rank <= top; by decade, sex, rank."""
    if decade is not None and int(decade) not in decades():
        raise ConfigError(f"first_names: decade {decade} is not in the table; use one of {decades()}")
    if sex is not None and sex.upper() not in SEXES:
        raise ConfigError(f"first_names: sex {sex!r} is not 'F' or 'M'")
    if top is not None and top < 1:
        raise ConfigError(f"first_names: top must be >= 1, got {top}")
    rows = [
        r for r in _first_name_rows()
        if (decade is None or r.decade == int(decade)) and (sex is None or r.sex == sex.upper())
        and (top is None or r.rank <= top)
    ]
    return sorted(rows, key=lambda r: (r.decade, r.sex, r.rank))


@cache
def _peak_decades() -> dict[str, tuple[int, int]]:
    """First name -> (count, peak decade) of its more common sex."""
    out: dict[str, tuple[int, int]] = {}
    for r in csv.DictReader(io.StringIO(_data_text("first_name_totals.csv"))):
        count, decade = int(r["count"]), int(r["peak_decade"])
        if count > out.get(r["name"], (-1, 0))[0]:
            out[r["name"]] = (count, decade)
    return out


def peak_decade(name: str) -> int | None:
    """Decade in which a first name (or the first word of a full name) was most given in the US; None if unknown."""
    words = name.split()
    entry = _peak_decades().get(words[0]) if words else None
    return entry[1] if entry else None


def name_frequency(name: str, sex: str | None = None) -> int:
    """Total US births given this first name 1880-2017 (both sexes unless `sex`); 0 if rarer than 1000."""
    if sex is not None and sex.upper() not in SEXES:
        raise ConfigError(f"name_frequency: sex {sex!r} is not 'F' or 'M'")
    totals = _name_totals()
    sexes = SEXES if sex is None else (sex.upper(),)
    return sum(totals.get((name, s), 0) for s in sexes)


def surnames(top: int | None = None) -> list[Surname]:
    """The most common US surnames, most common first (at most `top`)."""
    if top is not None and top < 1:
        raise ConfigError(f"surnames: top must be >= 1, got {top}")
    rows = [
        Surname(r["name"], int(r["rank"]), float(r["percent"]), int(r["count"]) if r["count"] else None)
        for r in csv.DictReader(io.StringIO(_data_text("surnames.csv")))
    ]
    rows.sort(key=lambda r: r.rank)
    return rows if top is None else rows[:top]


def famous_names(category: str | None = None) -> list[FamousName]:
    """Well-known names, optionally of one category, in file order."""
    rows = [FamousName(r["name"], r["category"]) for r in csv.DictReader(io.StringIO(_data_text("famous_names.csv")))]
    if category is None:
        return rows
    cats = sorted({r.category for r in rows})
    if category not in cats:
        raise ConfigError(f"famous_names: category {category!r} is unknown; use one of {cats}")
    return [r for r in rows if r.category == category]


def _check_top(kind: str, top: int | None) -> None:
    """Refuse a `top` larger than the shipped corpus, naming the largest that means something."""
    if top is None:
        return
    if kind == "first":
        cap, unit = max(r.rank for r in _first_name_rows()), "ranks per decade and sex"
    elif kind == "surnames":
        cap, unit = len(surnames()), "surnames"
    elif kind == "famous":
        cap, unit = len(famous_names()), "famous names"
    else:
        return
    if top > cap:
        raise ConfigError(f"--top {top}: the built-in '{kind}' corpus holds only {cap} {unit}; "
                          f"use --top {cap} or less (or leave --top out for all of them)")


def builtin_names(
    kind: str, top: int | None = None, decade: int | None = None, sex: str | None = None,
    category: str | None = None,
) -> list[str]:
    """A distinct list of names from a shipped corpus: 'first', 'surnames' or 'famous'.

    A `top` beyond what the corpus holds is refused (ConfigError stating the cap), not silently capped.
    """
    _check_top(kind, top)
    if kind == "first":
        rows = first_names(decade=decade, sex=sex, top=top)
        best: dict[str, tuple[int, int]] = {}
        for r in rows:  # a name's best rank over decades/sexes, then its count, decides its place
            key = (r.rank, -r.count)
            best[r.name] = min(best.get(r.name, key), key)
        return sorted(best, key=lambda n: (*best[n], n))
    if kind == "surnames":
        return [s.name for s in surnames(top)]
    if kind == "famous":
        names = [f.name for f in famous_names(category)]
        return names if top is None else names[:top]
    raise ConfigError(f"builtin name list {kind!r} is unknown; use one of {BUILTIN_LISTS}")


# ---- prompt templates --------------------------------------------------------------------------------------
@cache
def _template_table() -> dict[str, tuple[str, ...]]:
    table = json.loads(_data_text("templates.json"))["templates"]
    return {kind: tuple(values) for kind, values in table.items()}


def template_kinds() -> list[str]:
    """Names of the shipped template kinds (portrait, scenario, style, ...)."""
    return list(_template_table())


def templates(kind: str) -> list[str]:
    """The shipped prompt templates of one kind."""
    table = _template_table()
    if kind not in table:
        raise TemplateError(f"template kind {kind!r} is unknown; use one of {list(table)} or a text with {{name}}")
    return list(table[kind])


_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def check_template(template: str) -> str:
    """Return the template if it holds {name} and no other placeholder or stray brace; else raise TemplateError."""
    if not isinstance(template, str) or NAME_PLACEHOLDER not in template:
        raise TemplateError(f"template {template!r} has no {{name}}; write e.g. 'a photo of {{name}}'")
    others = [m for m in _PLACEHOLDER.findall(template) if m != NAME_PLACEHOLDER]
    rest = _PLACEHOLDER.sub("", template)
    if others or "{" in rest or "}" in rest:
        bad = others[0] if others else "a stray brace"
        raise TemplateError(f"template {template!r} holds {bad}; only {{name}} may appear in braces")
    return template


def render(template: str, name: str) -> str:
    """The prompt for one name: the template with every {name} replaced by the name."""
    return check_template(template).replace(NAME_PLACEHOLDER, name)


def resolve_templates(specs: Iterable[str]) -> list[str]:
    """Templates from specs that are each a shipped kind or a literal template; duplicates dropped, order kept."""
    out: list[str] = []
    for spec in specs:
        found = templates(spec) if spec in _template_table() else [check_template(spec)]
        out.extend(t for t in found if t not in out)
    if not out:
        raise TemplateError(f"no templates given; use one of {template_kinds()} or a text with {{name}}")
    return out


# ---- user name lists ---------------------------------------------------------------------------------------
def clean_name(raw: str, where: str) -> str:
    """A name normalised to NFC with whitespace stripped and collapsed; `where` names the source for errors."""
    if not isinstance(raw, str):
        raise NameFileError(f"{where}: name is {type(raw).__name__}, expected text; quote it as a string")
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise NameFileError(f"{where}: empty name; remove the entry or fill it in")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise NameFileError(f"{where}: name {name[:40]!r} holds control/invisible character U+{ord(bad[0]):04X}; "
                            f"remove it")
    if len(name) > MAX_NAME_CHARS:
        raise NameFileError(f"{where}: name is {len(name)} characters long (max {MAX_NAME_CHARS}): "
                            f"{name[:40]!r}...; shorten it or check the file's format")
    return name


def _entries_txt(path: Path, text: str) -> list[tuple[str, str]]:
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((f"{path}:{i}", line))
    return out


def _entries_csv(path: Path, text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "name" not in fields:
        raise NameFileError(f"{path}: CSV has no 'name' column (header: {reader.fieldnames}); add a header "
                            f"line whose columns include 'name'")
    column = (reader.fieldnames or [])[fields.index("name")]
    out = []
    try:
        for rec in reader:
            out.append((f"{path}:{reader.line_num}", rec[column] if rec[column] is not None else ""))
    except csv.Error as err:
        raise NameFileError(f"{path}:{reader.line_num}: malformed CSV ({err}); fix the quoting") from None
    return out


def _entries_json(path: Path, text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NameFileError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); fix the syntax") from None
    if not isinstance(data, list):
        raise NameFileError(f"{path}: JSON must be a list of names or of objects with a 'name' field, "
                            f"got {type(data).__name__}")
    out = []
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if isinstance(item, dict):
            if "name" not in item:
                raise NameFileError(f"{where}: object has no 'name' field; add one")
            item = item["name"]
        out.append((where, item))
    return out


_READERS = {".txt": _entries_txt, ".csv": _entries_csv, ".json": _entries_json}


def text_lines(text: str) -> list[str]:
    """The non-empty lines of a text, stripped, '#' comment lines skipped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a text file, '#' comments skipped (names and phrases lists)."""
    path = Path(path)
    if not path.is_file():
        raise NamesaeError(f"{path}: file not found")
    return text_lines(path.read_text(encoding="utf-8"))


def load_names(path: str | Path) -> list[str]:
    """Names from a TXT, CSV or JSON file, validated and normalised; duplicates dropped with a warning."""
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise NameFileError(f"{path}: unsupported name file type {path.suffix or '(none)'!r}; use .txt (one name "
                            f"per line), .csv (a 'name' column) or .json (a list)")
    if not path.is_file():
        raise NameFileError(f"{path}: name file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NameFileError(f"{path}: not UTF-8 text (byte {err.start}); re-save the file as UTF-8") from None
    names: list[str] = []
    seen: dict[str, str] = {}
    for where, raw in reader(path, text):
        name = clean_name(raw, where)
        if name in seen:
            log.warning("%s: duplicate name %r (first at %s) dropped", where, name, seen[name])
            continue
        seen[name] = where
        names.append(name)
    if not names:
        raise NameFileError(f"{path}: no names in the file; add one name per line (TXT), a 'name' column (CSV) "
                            f"or a list (JSON)")
    return names
