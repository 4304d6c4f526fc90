"""What the playground page shows, as plain values: escaped HTML, table rows, dropdown choices, gallery items.

Names are user input: every piece of text that goes into HTML passes through `html.escape`, so a name such as
`<script>` is shown as text. Tables, dropdowns and captions are handed to the page as text, never as HTML.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from namesae.playground.folder import FeatureGroup, Icons
from namesae.playground.session import FeatureView, Playground, Selection
from namesae.playground.state import EditStack

GROUP_COLUMNS = ["group", "features", "mass share", "from"]
FEATURE_COLUMNS = ["feature", "activation", "label"]


def name_choices(playground: Playground) -> list[tuple[str, str]]:
    """(label, name) pairs for the name dropdown: dedicated names first, marked."""
    dedicated = playground.dedicated_names()
    rest = [n for n in playground.names if n not in set(dedicated)]
    return [(f"{n} (dedicated)", n) for n in dedicated] + [(n, n) for n in rest]


def header_html(playground: Playground) -> str:
    """The page's heading: the run folder, the SAE, the decoder, and the image-upload note."""
    sae, decoder = playground.steerer.sae, playground.steerer.decoder
    note = playground.image_note()
    parts = [(f"<h2>namesae playground</h2><p>Run <code>{html.escape(str(playground.run.root))}</code>: SAE "
              f"{sae.d_sae} features over {sae.d_in}-d <code>{html.escape(str(sae.space))}</code>, "
              f"{len(playground.names)} names in {playground.n_rows} rows; decoder "
              f"<code>{html.escape(decoder.info.kind)}</code> <code>{html.escape(decoder.info.model)}</code>.</p>")]
    if note:
        parts.append(f'<p id="pg-image-note"><strong>Image upload:</strong> {html.escape(note)}</p>')
    return "".join(parts)


def selection_html(selection: Selection | None) -> str:
    """What is selected, its group source and its number of active features."""
    if selection is None:
        return "<p>Nothing selected yet.</p>"
    active = int((selection.codes > 0).sum())
    return (f'<p><strong id="pg-title">{html.escape(selection.title)}</strong>: {active} active features, '
            f"{len(selection.groups)} groups ({html.escape(selection.group_note)}).</p>")


def group_rows(groups: Sequence[FeatureGroup]) -> list[list[Any]]:
    """One table row per group: label, feature ids, mass share, where it comes from."""
    return [[g.label, ", ".join(map(str, g.features)), None if g.mass_share is None else round(g.mass_share, 3),
             g.origin] for g in groups]


def feature_rows(top: Sequence[FeatureView]) -> list[list[Any]]:
    """One table row per top feature: id, activation, label."""
    return [[f.feature, round(f.activation, 4), f.label or ""] for f in top]


def gallery_items(selection: Selection | None, icons: Icons) -> list[tuple[str, str]]:
    """(icon file, caption) of the selection's groups and top features that have icons."""
    if selection is None:
        return []
    items: list[tuple[Path, str]] = [(icons.groups[g.label], f"group {g.label}") for g in selection.groups
                                     if g.label in icons.groups]
    items += [(f.icon, f"feature {f.feature}" + (f" ({f.label})" if f.label else "")) for f in selection.top
              if f.icon is not None]
    return [(str(path), caption) for path, caption in items]


def stack_text(stack: EditStack) -> str:
    """The edit stack, one edit a line."""
    return "\n".join(stack.lines()) if len(stack) else "(no edits: the edited image equals the original)"


def summary_html(summary: dict[str, Any], seed: int) -> str:
    """How far the edit moved the embedding, for the decoded pair."""
    return (f'<p id="pg-summary">seed {int(seed)}: cosine to the original '
            f"{summary['cosine_to_original'][0]:.4f}, distance {summary['distance'][0]:.4f}, "
            f"{summary['features_changed'][0]} feature(s) changed.</p>")
