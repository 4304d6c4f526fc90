"""The playground's state as plain data: the stack of edits (push, undo), edits built from its controls, and the
export, which is the edit list `namesae steer --edit` reads (the format of namesae.steer.edits)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesae.errors import NamesaeError
from namesae.io import atomic_write_text
from namesae.playground.folder import FeatureGroup
from namesae.steer.edits import (
    SELF,
    CodeRef,
    Edit,
    ScaleFeature,
    ScaleGroup,
    Transfer,
    ZeroFeature,
    ZeroGroup,
    edits_to_json,
)

GROUP_OPS = ("zero", "scale", "transfer")


@dataclass(frozen=True)
class EditStack:
    """The edits applied so far, in order (stacked: each acts on the codes the previous ones left)."""

    edits: tuple[Edit, ...] = ()

    def __len__(self) -> int:
        return len(self.edits)

    def push(self, *edits: Edit) -> EditStack:
        """This stack with `edits` added on top."""
        return EditStack(self.edits + tuple(edits))

    def undo(self) -> EditStack:
        """This stack without its last edit (an empty stack stays empty)."""
        return EditStack(self.edits[:-1])

    def clear(self) -> EditStack:
        """An empty stack."""
        return EditStack()

    def to_json(self) -> list[dict[str, Any]]:
        """The edits as `namesae steer --edit` reads them."""
        return edits_to_json(self.edits)

    def lines(self) -> list[str]:
        """One line per edit for people: "1. zero identity (features 227)"."""
        return [f"{i + 1}. {describe_edit(e)}" for i, e in enumerate(self.edits)]


def describe_edit(edit: Edit) -> str:
    """A short text of one edit."""
    data = edit.to_json()
    ids = data.get("features", [data["feature"]] if "feature" in data else None)
    what = f"{data['label']} " if data.get("label") else ""
    target = f"{what}(feature{'s' if ids and len(ids) > 1 else ''} {', '.join(map(str, ids))})" if ids else \
        "all features"
    if data["op"] == "transfer":
        ref = data["to"]
        donor = ref.get("name", json.dumps(ref)) if isinstance(ref, dict) else ref
        return f"transfer {target} from {donor} (alpha {data['alpha']:g})"
    amount = {"scale": "factor", "add": "amount", "set": "value"}.get(data["op"])
    return f"{data['op']} {target}" + (f" by {data[amount]:g}" if amount else "")


def group_edit(op: str, group: FeatureGroup, factor: float = 1.0, donor: str | None = None,
               alpha: float = 1.0) -> Edit:
    """The edit of one group: zero it, scale it by `factor` (0 zeroes), or transfer it from the name `donor`:
    f' = f + alpha (f_donor - f) on its features."""
    if op not in GROUP_OPS:
        raise NamesaeError(f"group operation {op!r} is unknown; use one of {GROUP_OPS}")
    if op == "zero" or (op == "scale" and float(factor) == 0.0):
        return ZeroGroup(group.features, group.label)
    if op == "scale":
        return ScaleGroup(group.features, float(factor), group.label)
    if not donor:
        raise NamesaeError(f"transferring group {group.label!r} needs a name to take it from")
    return Transfer(float(alpha), CodeRef("name", donor), SELF, group.features, group.label)


def feature_edit(feature: int, factor: float) -> Edit:
    """Scale one feature by `factor` (0 switches it off)."""
    return ZeroFeature(int(feature)) if float(factor) == 0.0 else ScaleFeature(int(feature), float(factor))


def slider_edits(groups: Sequence[FeatureGroup], group_factors: Sequence[float], features: Sequence[int],
                 feature_factors: Sequence[float]) -> list[Edit]:
    """The edits the sliders ask for: one per group or feature whose factor is not 1, groups first."""
    edits = [group_edit("scale", g, f) for g, f in zip(groups, group_factors) if float(f) != 1.0]
    return edits + [feature_edit(j, f) for j, f in zip(features, feature_factors) if float(f) != 1.0]


def export_text(stack: EditStack) -> str:
    """The edit list as the JSON text `namesae steer --edit` takes, one edit a line."""
    edits = stack.to_json()
    return "[\n" + ",\n".join(f"  {json.dumps(e, ensure_ascii=False)}" for e in edits) + "\n]\n" if edits else "[]\n"


def write_export(stack: EditStack, path: str | Path) -> Path:
    """Write the edit list as JSON (what `namesae steer --edit FILE` reads), atomically; returns the path."""
    return atomic_write_text(path, export_text(stack))


def replay_command(sae: Path, store: Path, model: str | None, pipeline: str, kind: str, value: Any, seed: int,
                   edits: Path, out: Path, device: str = "cpu") -> str:
    """The `namesae steer` command line that redraws the playground's edited image from an exported edit list."""
    args = ["namesae", "steer", "--sae", str(sae), "--store", str(store), "--pipeline", pipeline]
    args += ["--model", model] if model else []
    args += [f"--{kind}", str(value), "--edit", str(edits), "--seed", str(int(seed)), "--out", str(out)]
    args += ["--device", device] if device != "cpu" else []
    return " ".join(shlex.quote(a) for a in args)
