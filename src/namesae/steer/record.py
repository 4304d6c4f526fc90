"""steer.json: what one steering run did (source, edits, seeds, decoder, summary, files), versioned.

`SteerRecord.save` writes it and `SteerRecord.load` reads it back; a file of another `format_version`, or one
whose fields do not fit, is refused with one line naming the file, the field and the fix. The edits are kept in
the JSON form `namesae steer --edit` reads (`parsed_edits` turns them back into edit objects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import atomic_write_json, read_json, require_format
from namesae.steer.edits import Edit, parse_edits

STEER_FORMAT_VERSION = 1
"""Version of steer.json that `save` writes and `load` reads (1: the fields of `SteerRecord.to_dict`)."""
_FIX = "write it again with `namesae steer`"


@dataclass
class SteerRecord:
    """The content of steer.json."""

    edits: list[dict[str, Any]]
    """The edits in `namesae steer --edit` JSON form (transfer references resolved to codes)."""
    seeds: list[int]
    """One original / edited image pair per seed."""
    source: dict[str, Any]
    """What was steered: {"kind": row | name | image | prompt | embedding, "value": ..., "scale": ...}."""
    sae: dict[str, Any] = field(default_factory=dict)
    """The SAE: dir, space, d_in, d_sae."""
    decoder: dict[str, Any] = field(default_factory=dict)
    """The decoder and its settings (`namesae.decoders.info_dict`)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """`SteerResult.summary()`: cosine to the original, distance, norms, features changed."""
    files: dict[str, Any] = field(default_factory=dict)
    """The images and embeddings written beside it, relative to its folder."""
    scale: float | None = None
    """The factor both embeddings were multiplied by before decoding (None: 1)."""
    keep_norm: bool = False
    """Whether the edited embedding was rescaled to the original's norm."""
    decode_prompt: str | None = None
    """SD 2.1 unCLIP: the text prompt decoded with the embedding."""
    layout: str = ""
    """How side_by_side.png is laid out."""
    made_by: str = "steer"
    """Which command wrote it (`steer`, `demo steer`, `playground`); the JSON key is `namesae`."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `save` writes."""
        return {"format_version": STEER_FORMAT_VERSION, "namesae": self.made_by, "sae": self.sae,
                "decoder": self.decoder, "source": self.source, "keep_norm": self.keep_norm,
                "decode_prompt": self.decode_prompt, "edits": self.edits, "seeds": self.seeds, "scale": self.scale,
                "layout": self.layout, "summary": self.summary, "files": self.files}

    def save(self, path: str | Path) -> Path:
        """Write steer.json atomically; returns its path."""
        return atomic_write_json(path, self.to_dict(), indent=2, default=str)

    @classmethod
    def load(cls, path: str | Path) -> SteerRecord:
        """Read a steer.json that `save` wrote; a file that does not fit is refused with one line."""
        return steer_record_from_dict(read_json(path, "run `namesae steer` first", _FIX), path)

    def parsed_edits(self) -> list[Edit]:
        """The recorded edits as edit objects (what `namesae steer --edit` would read)."""
        return parse_edits(self.edits, "steer.json field 'edits'")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_FIELDS: dict[str, tuple[str, Any]] = {
    "namesae": ("a string", lambda v: isinstance(v, str)),
    "edits": ("a list of edit objects", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v)),
    "seeds": ("a non-empty list of integers",
              lambda v: isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool) for s in v)),
    "source": ("an object with 'kind'", lambda v: isinstance(v, dict) and isinstance(v.get("kind"), str)),
    "sae": ("an object", lambda v: isinstance(v, dict)),
    "decoder": ("an object", lambda v: isinstance(v, dict)),
    "summary": ("an object", lambda v: isinstance(v, dict)),
    "files": ("an object", lambda v: isinstance(v, dict)),
    "scale": ("a number or null", lambda v: v is None or _is_num(v)),
    "keep_norm": ("true or false", lambda v: isinstance(v, bool)),
    "decode_prompt": ("a string or null", lambda v: v is None or isinstance(v, str)),
    "layout": ("a string", lambda v: isinstance(v, str)),
}


def steer_record_from_dict(data: Any, path: str | Path = "<steer.json>") -> SteerRecord:
    """A SteerRecord from the content of steer.json, checked field by field (one line per problem)."""
    path = Path(path)
    require_format(data, path, "steer", STEER_FORMAT_VERSION, _FIX)
    for key, (what, ok) in _FIELDS.items():
        if key not in data:
            raise NamesaeError(f"{path}: field {key!r} is missing; {_FIX}")
        if not ok(data[key]):
            raise NamesaeError(f"{path}: field {key!r} must be {what}, got {data[key]!r:.80}; {_FIX}")
    try:
        parse_edits(data["edits"], f"{path}: field 'edits'")
    except NamesaeError as err:
        raise NamesaeError(f"{err}; {_FIX}") from None
    return SteerRecord(edits=list(data["edits"]), seeds=list(data["seeds"]), source=dict(data["source"]),
                       sae=dict(data["sae"]), decoder=dict(data["decoder"]), summary=dict(data["summary"]),
                       files=dict(data["files"]), scale=data["scale"], keep_norm=data["keep_norm"],
                       decode_prompt=data["decode_prompt"], layout=data["layout"], made_by=data["namesae"])


def record_of(metadata: Mapping[str, Any], edits: list[dict[str, Any]], seeds: list[int], scale: float | None,
              layout: str, summary: dict[str, Any], files: dict[str, Any]) -> SteerRecord:
    """A SteerRecord from the free metadata a caller of `write_steer_outputs` hands in and what was written."""
    return SteerRecord(edits=edits, seeds=seeds, source=dict(metadata.get("source", {})),
                       sae=dict(metadata.get("sae", {})), decoder=dict(metadata.get("decoder", {})),
                       summary=summary, files=files, scale=scale, keep_norm=bool(metadata.get("keep_norm", False)),
                       decode_prompt=metadata.get("decode_prompt"), layout=layout,
                       made_by=str(metadata.get("namesae", "steer")))
