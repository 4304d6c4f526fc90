"""The playground without its web page: a run folder's SAE and decoder kept loaded (a `Steerer`), what a selected
name, row or image is made of (feature groups, top features), decoding an edit stack, exporting it.

Images are drawn by `Steerer.steer`, the function `namesae steer` draws with, so an exported edit list replayed
with `namesae steer --edit FILE --seed S` (the command `Export.command` spells out) gives the same pixels, on the
same machine and torch thread count (threads change float rounding, and a pixel by a level).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from namesae.errors import NamesaeError
from namesae.playground.folder import (
    FeatureGroup,
    Icons,
    RunFolder,
    feature_labels,
    find_run,
    identity_features,
    name_groups_of,
    read_icons,
)
from namesae.playground.state import EditStack, replay_command, write_export
from namesae.steer.run import Steerer, SteerRequest

log = logging.getLogger(__name__)

SOURCE_KINDS = ("name", "row", "image")


@dataclass(frozen=True)
class FeatureView:
    """One active feature of the selected embedding."""

    feature: int
    activation: float
    label: str | None = None
    icon: Path | None = None


@dataclass
class Selection:
    """The embedding being steered and what it is made of."""

    kind: str  # name | row | image
    value: Any  # the name, the row index or the image path
    title: str  # what to call it on the page (plain text; escape it in HTML)
    request: SteerRequest  # the request that steers it (edits and seed are filled in at decode time)
    codes: Tensor  # [d_sae] its SAE codes
    groups: list[FeatureGroup]  # identity group first (when it has one), then its feature groups
    top: list[FeatureView]  # its most active features
    group_note: str  # where the groups come from


@dataclass
class DecodedPair:
    """The original and the edited image of one selection at one seed."""

    original: Any  # PIL image
    edited: Any  # PIL image
    seed: int
    summary: dict[str, Any]  # SteerResult.summary()


@dataclass
class Export:
    """An exported edit list and the command that replays it."""

    path: Path
    text: str
    command: str


class Playground:
    """A run folder opened for steering: select, stack edits, decode, export."""

    def __init__(self, run: RunFolder, steerer: Steerer, export_dir: Path, top_k: int = 8) -> None:
        self.run, self.steerer, self.export_dir, self.top_k = run, steerer, Path(export_dir), int(top_k)
        self.identity = identity_features(run.identity)
        self.labels = feature_labels(run.features)
        self.name_groups, group_config = name_groups_of(run.groups)
        self.icons: Icons = read_icons(run.icons)
        from namesae.config import config_from_dict
        from namesae.groups import GroupConfig

        self.group_config = config_from_dict(GroupConfig, group_config or {}, f"{run.groups}: field 'config'")
        store = steerer.store
        self.names: list[str] = list(store.name_index())
        self._known = set(self.names)
        self._lock = threading.Lock()  # the web page's handlers run in threads; the store and the decoder are shared
        self.n_rows = len(store)
        self.directions = steerer.sae.decoder_directions()  # [d_sae, d]
        self.norms = self.directions.norm(dim=1)  # [d_sae]

    @classmethod
    def open(cls, run_dir: str | Path, pipeline: str = "kandinsky22", model: str | None = None,
             device: str = "cpu", export_dir: str | Path | None = None, top_k: int = 8) -> Playground:
        """Open a run folder: find its files, load its SAE, store and decoder (clear errors when absent)."""
        run = find_run(run_dir, model)
        if run.model is None:
            raise NamesaeError(f"{run.root}: no decoder found (the demo's is {run.root / 'steer' / 'tiny_kandinsky22'}"
                               f"); pass --model, a decoder hub id or folder with its weights, or tiny:DIR")
        from namesae.store import EmbeddingStore

        with EmbeddingStore.open(run.store) as store:
            if len(store) == 0:
                raise NamesaeError(f"{run.store}: the store has no rows to steer")
            first = str(store.names[0])
        request = SteerRequest(sae=run.sae, store=run.store, pipeline=pipeline, model=run.model, name=first,
                               device=device)
        steerer = Steerer.open(request)
        try:
            return cls(run, steerer, Path(export_dir) if export_dir else run.root / "playground", top_k)
        except BaseException:
            steerer.close()
            raise

    def close(self) -> None:
        """Close the store."""
        self.steerer.close()

    # ---- what can be steered ------------------------------------------------------------------------------------
    def dedicated_names(self) -> list[str]:
        """Names with identity features in identity.json, in store order."""
        return [n for n in self.names if self.identity.get(n)]

    def image_note(self) -> str | None:
        """Why an uploaded image cannot be embedded in this run's space (None when it can)."""
        from namesae.decoders import encoder_for_space

        space = self.steerer.sae.space or self.steerer.decoder.space
        if encoder_for_space(space) is None:
            return (f"This run's embedding space is {space!r}, which has no image encoder: an uploaded image cannot "
                    f"be embedded. Pick a name or a row instead.")
        return None

    def select(self, kind: str, value: Any) -> Selection:
        """Select a name, a row index or an image file to steer; its groups and top features."""
        if kind not in SOURCE_KINDS:
            raise NamesaeError(f"source kind {kind!r} is unknown; use one of {SOURCE_KINDS}")
        with self._lock:
            store = self.steerer.store
            if kind == "name":
                if value not in self._known:
                    raise NamesaeError(f"{self.run.store}: no rows for name {value!r}")
                name, title = str(value), str(value)
            elif kind == "row":
                value = int(value)
                if not 0 <= value < self.n_rows:
                    raise NamesaeError(f"{self.run.store}: row {value} out of range; the store has {self.n_rows} "
                                       f"rows")
                name, title = str(store.names[value]), f"row {value}: {store.prompts[value]}"
            else:
                note = self.image_note()
                if note is not None:
                    raise NamesaeError(note)
                value = self._keep_upload(Path(value))
                name, title = None, f"image {value.name}"
            request = self.steerer.request.with_source(kind, value)
            codes = self.steerer.source_codes(request)
        groups, note = self._groups(kind, name, codes)
        return Selection(kind, value, title, request, codes, groups, self._top(codes), note)

    def _keep_upload(self, path: Path) -> Path:
        """A copy of an uploaded image under the export folder (the upload's temporary file goes away), named by
        its content, so the replay command can point at it."""
        if not path.is_file():
            raise NamesaeError(f"{path}: image not found")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        kept = self.export_dir / "uploads" / f"{digest}{path.suffix.lower() or '.png'}"
        if not kept.is_file():
            from namesae.io import atomic_file

            with atomic_file(kept) as tmp:
                shutil.copyfile(path, tmp)
        return kept

    def _mass(self, codes: Tensor) -> Tensor:
        return codes.clamp_min(0) * self.norms  # [d_sae] w_j = f_j |d_j|

    def _groups(self, kind: str, name: str | None, codes: Tensor) -> tuple[list[FeatureGroup], str]:
        mass = self._mass(codes)
        total = float(mass.sum()) or 1.0

        def share(features: tuple[int, ...]) -> float:
            return float(mass[list(features)].sum()) / total

        groups = []
        identity = self.identity.get(name or "", ())
        if identity:
            groups.append(FeatureGroup("identity", identity, share(identity), "identity.json"))
        if kind == "name" and name in self.name_groups:
            found, note = self.name_groups[name], "groups of the name's rows, from groups.json"
        else:
            from namesae.groups import group_codes

            grouping = group_codes(codes[None], self.directions, self.group_config).grouping(0)
            found = [FeatureGroup(g.label or f"group {i + 1}", tuple(int(j) for j in g.features), None, "live")
                     for i, g in enumerate(grouping.groups)]
            note = "groups of this embedding, computed now (spherical k-means on its active features)"
        groups += [replace(g, mass_share=share(g.features)) for g in found]
        return groups, note

    def _top(self, codes: Tensor) -> list[FeatureView]:
        active = int((codes > 0).sum())
        values, ids = torch.topk(codes, min(self.top_k, active)) if active else (codes[:0], codes[:0].long())
        return [FeatureView(int(j), float(v), self.labels.get(int(j)), self.icons.features.get(int(j)))
                for v, j in zip(values, ids)]

    # ---- decode and export ---------------------------------------------------------------------------------------
    def decode(self, selection: Selection, stack: EditStack, seed: int) -> DecodedPair:
        """The original and the edited image at `seed`, drawn by `Steerer.steer` as `namesae steer` draws them."""
        request = replace(selection.request, edits=stack.edits, seeds=(int(seed),))
        with self._lock:
            outcome = self.steerer.steer(request)
        steered = outcome.steered
        return DecodedPair(steered.original[0], steered.edited[0], int(seed), steered.result.summary())

    def export(self, selection: Selection, stack: EditStack, seed: int) -> Export:
        """Write the edit list to the export folder and spell out the `namesae steer` command that replays it."""
        path = write_export(stack, self.export_dir / "edits.json")
        request = self.steerer.request
        command = replay_command(self.run.sae, self.run.store, self.run.model, request.pipeline, selection.kind,
                                 selection.value, seed, path, self.export_dir / "replay", request.device)
        log.info("playground: exported %d edit(s) to %s", len(stack), path)
        return Export(path, path.read_text(encoding="utf-8"), command)
