"""Writing files: atomic writes that keep the user's umask, JSON cleaning, checksums, and tables for people.

Every file namesae writes goes through `atomic_file` (or `atomic_write_text` / `_bytes` / `_json` over it): the
bytes go to a temporary file beside the target, which is renamed onto it only once complete, so a crash leaves
either the old file or the new one. Whole folders (a report, an SAE checkpoint, a training state) go through
`atomic_dir`. Temporary files from `tempfile.mkstemp` are created 0600 and `mkdtemp` folders 0700; both are set to
what the umask gives a plain `open` / `mkdir` (0644 / 0755 under umask 022) before the rename, so a report copied to
a shared server stays readable. `json_ready` is the one JSON cleaner: numpy scalars and arrays to Python, NaN and
infinities to null.

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
import functools
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from namesae.errors import NamesaeError

CHECKSUM_KEY = "checksum"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


# ---- atomic writes ------------------------------------------------------------------------------------------------
@functools.cache
def umask() -> int:
    """The process umask, read once. Linux shows it in /proc/self/status; elsewhere it can only be read by setting
    it (os.umask), which is done once here rather than around every write (another thread could write meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0)
    os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a new file under the umask (0o644 under 022)."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """Mode of a new folder under the umask (0o755 under 022)."""
    return 0o777 & ~umask()


@contextmanager
def atomic_file(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write to (by any library: matplotlib, PIL, safetensors, h5py); when the
    block ends without error it gets the umask's file mode and is renamed onto `path`, otherwise it is removed.

    The temporary name ends with `suffix` (default: the target's own, so `savefig` picks the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix if suffix is None else suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to `path` atomically (umask kept); returns the path."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text to `path` atomically (umask kept); returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 1, sort_keys: bool = False,
                      default: Any = None) -> Path:
    """Write `json_ready(data)` as JSON (and a final newline) to `path` atomically; returns the path.

    `default` converts objects JSON does not know (e.g. `str` for free-form metadata); without it they are refused.
    """
    text = json.dumps(json_ready(data), indent=indent, sort_keys=sort_keys, default=default)
    return atomic_write_text(path, text + "\n")


def replace_dir(src: Path, dst: Path) -> None:
    """Rename folder `src` onto `dst`: an existing `dst` is moved aside to `.NAME.old-PID`, `src` renamed in, and
    the old one deleted; if the second rename fails the old one is put back. A kill between the two renames
    leaves the old folder beside `dst` under that name (readers that resume, like `sae.state`, look there)."""
    src, dst = Path(src), Path(dst)
    if not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A fresh temporary folder `.NAME.tmp-PID` beside `path` to fill; when the block ends without error it
    replaces `path` whole (`replace_dir`), otherwise it is removed and `path` is left as it was. The folder gets
    the umask's mode (0755 under 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a killed run of this process id
    tmp.mkdir()
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---- JSON ---------------------------------------------------------------------------------------------------------
def json_ready(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars and arrays (and anything with `tolist`, e.g. tensors) as Python values,
    NaN and infinities as None, tuples as lists, dict keys as strings, paths as strings; recursively."""
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_ready(value.tolist())
    return value


def require_format(data: Any, path: str | Path, kind: str, version: int, fix: str) -> dict[str, Any]:
    """The top-level object of a result file, refused with one line unless it is an object of `version`."""
    if not isinstance(data, dict):
        raise NamesaeError(f"{path}: top level must be an object, got {type(data).__name__}; {fix}")
    found = data.get("format_version")
    if found != version:
        got = "is missing" if "format_version" not in data else f"is {found!r}"
        raise NamesaeError(f"{path}: field 'format_version' {got}, but this namesae reads {kind} "
                           f"format_version {version}; {fix} with this namesae")
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


FIELD_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "any": ("any value", lambda v: True),
    "str": ("a string", lambda v: isinstance(v, str)),
    "str?": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "int": ("an integer", _is_int),
    "int?": ("an integer or null", lambda v: v is None or _is_int(v)),
    "num": ("a number", _is_num),
    "num?": ("a number or null", lambda v: v is None or _is_num(v)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "bool?": ("true, false or null", lambda v: v is None or isinstance(v, bool)),
    "obj": ("an object", lambda v: isinstance(v, dict)),
    "obj?": ("an object or null", lambda v: v is None or isinstance(v, dict)),
}
"""The kinds a result file's schema names (`check_fields`): a JSON value's description and its test."""


def check_fields(data: Mapping[str, Any], spec: Mapping[str, str], path: str | Path, fix: str, where: str = "",
                 optional: Collection[str] = (),
                 kinds: Mapping[str, tuple[str, Callable[[Any], bool]]] | None = None) -> None:
    """Refuse the first field of `data` that is missing (unless `optional`) or not of its kind in `spec`, with one
    line naming the file, the field (prefixed by `where`, e.g. "names[3].") and the fix.

    A kind is a key of FIELD_KINDS (or of `kinds`), or "[kind]" for a list whose every entry is of that kind."""
    table = {**FIELD_KINDS, **(kinds or {})}
    for key, kind in spec.items():
        field_name = f"{where}{key}"
        if key not in data:
            if key in optional:
                continue
            raise NamesaeError(f"{path}: field {field_name!r} is missing; {fix}")
        value = data[key]
        if kind.startswith("["):
            what, ok = table[kind[1:-1]]
            if not isinstance(value, list) or not all(ok(v) for v in value):
                raise NamesaeError(f"{path}: field {field_name!r} must be a list, each entry {what}, got "
                                   f"{value!r:.80}; {fix}")
        else:
            what, ok = table[kind]
            if not ok(value):
                raise NamesaeError(f"{path}: field {field_name!r} must be {what}, got {value!r:.80}; {fix}")


def rows_json_text(head: Mapping[str, Any], key: str, rows: Sequence[Any], seal: bool = True) -> str:
    """JSON text of `head` plus head[key] = rows (both `json_ready`), the header indented and each row compact on
    its own line; with `seal`, a `checksum` field over the whole document (see `sealed`).

    (json only uses its fast C encoder without indentation; one row per line keeps a large file readable.)"""
    head, rows = json_ready(dict(head)), json_ready(list(rows))

    def text(top: Mapping[str, Any]) -> str:
        opening = json.dumps(dict(top), indent=1)[:-2] + ",\n" if len(top) else "{\n"
        body = ",\n".join(json.dumps(row) for row in rows)
        return f"{opening} {json.dumps(key)}: [\n{body}\n ]\n}}\n"

    if not seal:
        return text(head)
    return text({**head, CHECKSUM_KEY: json_checksum({**head, key: rows})})


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
    """A JSON object with its `checksum` field set, so any later change to it is detected.

    The object is `json_ready` first, so writing it (which cleans again) cannot change what was hashed.
    """
    body = json_ready({k: v for k, v in data.items() if k != CHECKSUM_KEY})
    return {**body, CHECKSUM_KEY: json_checksum(body)}


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


def atomic_write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Path:
    """Write a CSV table (`csv_text`: fields in the given order) to `path` atomically; returns the path."""
    return atomic_write_text(path, csv_text(rows, fields))


def csv_frame_text(frame: Any) -> str:
    """CSV text of a pandas DataFrame (no index), its text cells through `csv_cell`."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object:
            safe[column] = safe[column].map(csv_cell)
    return safe.to_csv(index=False)


def read_json(path: str | Path, missing: str, fix: str) -> Any:
    """The parsed content of a result file (JSON); one line naming the file when it is absent (`missing`: what
    to run), unreadable, or not JSON (`fix`: how to rewrite it)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NamesaeError(f"{path}: file not found; {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NamesaeError(f"{path}: invalid JSON ({err}); {fix}") from None
    except IsADirectoryError:
        raise NamesaeError(f"{path}: is a folder, not a JSON file; {missing}") from None
    except OSError as err:
        raise NamesaeError(f"{path}: cannot read it ({err.strerror}); check its permissions") from None


def read_json_input(path: str | Path, missing: str, error: type[NamesaeError] = NamesaeError) -> Any:
    """The parsed content of an input file a user wrote (JSON): one `error` line `{path}: {missing}` when it is not
    a file, `{path}:{line}: invalid JSON ({what})` when it is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise error(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


@dataclass
class KindedFile:
    """A result file of one of several kinds owned by one package (basis: paint, pairs, axes, ...): its kind
    and its fields. Subclasses set FORMAT ("basis"), VERSION, KINDS ({kind: required fields}) and COMMAND."""

    kind: str
    data: dict[str, Any]
    FORMAT: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {}
    COMMAND: ClassVar[str] = ""

    def save(self, path: str | Path) -> Path:
        """Write the file atomically: {"format_version", "namesae": FORMAT, "kind", ...fields}."""
        if self.kind not in self.KINDS:
            raise NamesaeError(f"{path}: unknown {self.FORMAT} kind {self.kind!r}; one of {sorted(self.KINDS)}")
        return atomic_write_json(path, {"format_version": self.VERSION, "namesae": self.FORMAT, "kind": self.kind,
                                        **self.data})

    @classmethod
    def load(cls, path: str | Path) -> KindedFile:
        """Read a file `save` wrote; another format, version or kind, or a missing field, is one line."""
        fix = f"re-run `{cls.COMMAND}` to rewrite it"
        data = require_format(read_json(path, f"run `{cls.COMMAND}` first", fix), path, cls.FORMAT, cls.VERSION, fix)
        if data.get("namesae") != cls.FORMAT or data.get("kind") not in cls.KINDS:
            raise NamesaeError(f"{path}: field 'kind' is {data.get('kind')!r} (namesae {data.get('namesae')!r}), "
                               f"not a {cls.FORMAT} file of kind {' / '.join(sorted(cls.KINDS))}; {fix}")
        missing = [f for f in cls.KINDS[data["kind"]] if f not in data]
        if missing:
            raise NamesaeError(f"{path}: field {missing[0]!r} is missing from this {cls.FORMAT} {data['kind']} "
                               f"file; {fix}")
        return cls(data["kind"], {k: v for k, v in data.items() if k not in ("format_version", "namesae", "kind")})


def confined_file(root: str | Path, relative: str) -> tuple[Path | None, bool]:
    """(the file `relative` names inside folder `root`, or None; whether it leads outside `root`). Resolved
    first, so `..`, absolute paths and symlinks out of `root` all count as outside."""
    root = Path(root).resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        return None, True
    if not path.is_relative_to(root):
        return None, True
    return (path if path.is_file() else None), False
