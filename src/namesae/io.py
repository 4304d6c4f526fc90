"""Writing files: checksums of files and sealed JSON objects, and tables for people.

`sealed(data)` adds a `checksum` field (sha256 of the object's canonical JSON without it) and `check_sealed` refuses
an object that changed after it was sealed; `sha256_file` hashes a file. Every CSV namesae writes goes through
`csv_text`, which defuses spreadsheet formulas.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice
and Google Sheets (CSV injection); such string cells are written with a leading `'` (the OWASP recommendation),
which spreadsheets show as text. Numbers are never changed (a negative number stays a number). Readers of CSVs
namesae wrote undo the prefix with `csv_unescape`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError

CHECKSUM_KEY = "checksum"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_checksum(data: dict[str, Any]) -> str:
    """Hex sha256 of a JSON object's canonical form, leaving out its own `checksum` field."""
    body = json.loads(json.dumps({k: v for k, v in data.items() if k != CHECKSUM_KEY}))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sealed(data: dict[str, Any]) -> dict[str, Any]:
    """A JSON object with its `checksum` field set, so any later change to it is detected."""
    return {**{k: v for k, v in data.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: json_checksum(data)}


def check_sealed(data: dict[str, Any], path: Path, fix: str) -> None:
    """Refuse a sealed JSON object whose `checksum` is missing or does not match its other fields."""
    if not isinstance(data.get(CHECKSUM_KEY), str):
        raise NamesaeError(f"{path}: field {CHECKSUM_KEY!r} is missing or not a string; {fix}")
    if data[CHECKSUM_KEY] != json_checksum(data):
        raise NamesaeError(f"{path}: checksum mismatch: the file changed after namesae wrote it; {fix}")


def csv_cell(value: Any) -> Any:
    """A CSV cell value made safe for spreadsheets: strings that start a formula get a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_unescape(value: str) -> str:
    """The original text of a cell `csv_cell` escaped (`'=x` -> `=x`); other text unchanged."""
    if value.startswith("'") and value[1:2] and value[1:].startswith(FORMULA_PREFIXES):
        return value[1:]
    return value


def csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """CSV text of dict rows (header = fields, extra keys ignored), every cell through `csv_cell`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


def csv_frame_text(frame: Any) -> str:
    """CSV text of a pandas DataFrame (no index), its text cells through `csv_cell`."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(csv_cell)
    return safe.to_csv(index=False)
