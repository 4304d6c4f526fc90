"""The result files of the name basis (`namesae basis paint / pairs / axes`, the demo's basis.json and the world
score): one versioned format, `BasisFile`, with the fields each kind must hold."""

from __future__ import annotations

from typing import ClassVar

from namesae.io import KindedFile


class BasisFile(KindedFile):
    """A name-basis result file: kind paint (paint.json), pairs (pairs.json), axes (axes.json), world (the demo's
    basis.json: every full name of a synthetic world painted) or score (basis_score.json)."""

    FORMAT: ClassVar[str] = "basis"
    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "paint": ("target", "vocab", "k", "prompt", "terms"),
        "pairs": ("target", "vocab", "pairs"),
        "axes": ("store", "n_names", "explained", "coordinates"),
        "world": ("k", "names"),
        "score": ("world",),
    }
    COMMAND: ClassVar[str] = "namesae basis"
