"""The result files of feature search (`namesae search drive / cancel / contrast`, the demo's search.json and the
world score): one versioned format, `SearchFile`, with the fields each kind must hold."""

from __future__ import annotations

from typing import ClassVar

from namesae.io import KindedFile


class SearchFile(KindedFile):
    """A feature-search result file: kind drive (drive.json), cancel (cancel.json), contrast (contrast.json),
    world (the demo's search.json: planted dictionary and demo SAE) or score (search_score.json)."""

    FORMAT: ClassVar[str] = "search"
    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "drive": ("features", "label", "ranked", "searches"),
        "cancel": ("features", "label"),
        "contrast": ("store", "rows"),
        "world": ("planted_dictionary", "demo_sae"),
        "score": ("world", "sae"),
    }
    COMMAND: ClassVar[str] = "namesae search"
