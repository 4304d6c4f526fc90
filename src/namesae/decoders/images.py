"""Images on disk: PNGs with text metadata (written atomically) and grids of images."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from namesae.io import atomic_file


def write_png(path: str | Path, image: Any, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save a PIL image as PNG with text metadata (values JSON-encoded unless strings), atomically."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_itxt(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return path


def read_png_metadata(path: str | Path) -> dict[str, str]:
    """The text metadata of a PNG written by `write_png`."""
    from PIL import Image

    with Image.open(path) as im:
        return dict(getattr(im, "text", {}) or {})


def image_grid(rows: Sequence[Sequence[Any]], pad: int = 2) -> Any:
    """Images laid out in a grid (a list of rows of PIL images of one size), white padding between."""
    from PIL import Image

    w, h = rows[0][0].size
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * w + (cols - 1) * pad, len(rows) * h + (len(rows) - 1) * pad), "white")
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid.paste(im.convert("RGB"), (j * (w + pad), i * (h + pad)))
    return grid
