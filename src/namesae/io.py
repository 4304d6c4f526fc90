"""Writing tables for people: every CSV namesae writes goes through `csv_text`, which defuses spreadsheet formulas.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice
and Google Sheets (CSV injection); such string cells are written with a leading `'` (the OWASP recommendation),
which spreadsheets show as text. Numbers are never changed (a negative number stays a number). Readers of CSVs
namesae wrote undo the prefix with `csv_unescape`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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
