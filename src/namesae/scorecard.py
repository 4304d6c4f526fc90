"""The demo scorecard's file format, scorecard.json: its reader, writer and schema check.

`namesae demo` builds the scorecard (`namesae.demo.Scorecard`) and writes `Scorecard.to_dict()`; readers (the
report, tests) go through `load_scorecard`, never through the raw JSON. Format version 1::

    {"format_version": 1,
     "lines": [{"key": "identity.dedicated_recall", "value": 1.0, "target": ">= 0.8", "pass": true, "what": "..."},
               ...],                      # every line, in the demo's stable order
     "passed": 12, "failed": 1,           # lines with pass true / false (pass null: reported, not held to a target)
     "seconds": {"synth": 1.2, ...},      # wall time per demo step
     "paths": {"report": "report", ...}}  # where the demo wrote things
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import read_json, require_format

SCORECARD_FORMAT_VERSION = 1
_FIX = "re-run `namesae demo` to rewrite it"


@dataclass(frozen=True)
class ScorecardLine:
    """One line: a measured value, the target it is held to (None: reported only) and whether it meets it."""

    key: str
    value: Any
    target: str | None = None
    passed: bool | None = None
    what: str = ""

    @property
    def verdict(self) -> str:
        """PASS, MISS, or "" for a line without a target."""
        return {True: "PASS", False: "MISS", None: ""}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        """The line as written in scorecard.json."""
        return {"key": self.key, "value": self.value, "target": self.target, "pass": self.passed, "what": self.what}


@dataclass(frozen=True)
class ScorecardFile:
    """The content of scorecard.json."""

    lines: list[ScorecardLine]
    seconds: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        """Lines that meet their target."""
        return sum(line.passed is True for line in self.lines)

    @property
    def failed(self) -> int:
        """Lines that miss their target."""
        return sum(line.passed is False for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of scorecard.json (the same fields `namesae.demo.Scorecard.to_dict` writes)."""
        return {"format_version": SCORECARD_FORMAT_VERSION, "lines": [line.to_dict() for line in self.lines],
                "passed": self.passed, "failed": self.failed, "seconds": dict(self.seconds),
                "paths": dict(self.paths)}


def save_scorecard(card: Any, path: str | Path) -> Path:
    """Write a scorecard (a ScorecardFile, an object with `to_dict`, or its dict) as scorecard.json, atomically."""
    from namesae.io import atomic_write_json

    data = card if isinstance(card, Mapping) else card.to_dict()
    scorecard_from_dict(data, path)  # never write a file the reader would refuse
    return atomic_write_json(path, data)


def scorecard_from_dict(data: Any, path: str | Path = "<scorecard.json>") -> ScorecardFile:
    """A ScorecardFile from the content of scorecard.json, checked field by field (one line per problem)."""
    path = Path(path)
    require_format(data, path, "scorecard", SCORECARD_FORMAT_VERSION, _FIX)
    lines = data.get("lines")
    if not isinstance(lines, list):
        raise NamesaeError(f"{path}: field 'lines' must be a list of lines, got {lines!r:.80}; {_FIX}")
    out = []
    for i, line in enumerate(lines):
        where = f"lines[{i}]"
        if not isinstance(line, dict):
            raise NamesaeError(f"{path}: field {where!r} must be an object, got {line!r:.80}; {_FIX}")
        for key, ok, what in (("key", lambda v: isinstance(v, str) and v, "a non-empty string"),
                              ("target", lambda v: v is None or isinstance(v, str), "a string or null"),
                              ("pass", lambda v: v is None or isinstance(v, bool), "true, false or null"),
                              ("what", lambda v: isinstance(v, str), "a string")):
            if key not in line:
                raise NamesaeError(f"{path}: field '{where}.{key}' is missing; {_FIX}")
            if not ok(line[key]):
                raise NamesaeError(f"{path}: field '{where}.{key}' must be {what}, got {line[key]!r:.80}; {_FIX}")
        if "value" not in line:
            raise NamesaeError(f"{path}: field '{where}.value' is missing; {_FIX}")
        if (line["target"] is None) != (line["pass"] is None):
            raise NamesaeError(f"{path}: field '{where}.pass' must be null exactly when '{where}.target' is; {_FIX}")
        out.append(ScorecardLine(line["key"], line["value"], line["target"], line["pass"], line["what"]))
    for key in ("seconds", "paths"):
        if not isinstance(data.get(key, {}), dict):
            raise NamesaeError(f"{path}: field {key!r} must be an object, got {data[key]!r:.80}; {_FIX}")
    card = ScorecardFile(out, dict(data.get("seconds", {})), dict(data.get("paths", {})))
    for key, count in (("passed", card.passed), ("failed", card.failed)):
        if key in data and data[key] != count:
            raise NamesaeError(f"{path}: field {key!r} is {data[key]!r} but {count} line(s) say so; {_FIX}")
    return card


def load_scorecard(path: str | Path) -> ScorecardFile:
    """Read scorecard.json; one clear line (file, field, fix) when it cannot be read, is of another
    format_version, or a field is missing or of the wrong kind."""
    return scorecard_from_dict(read_json(path, "run `namesae demo` first", _FIX), path)
