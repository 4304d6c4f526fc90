"""The name basis scored on a synthetic world: compositional names paint from other names' parts, dedicated names
resist (`score_basis_on_world`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from namesae.basis import DEFAULT_PHRASES, DEFAULT_TEMPLATE, build_vocabulary, paint
from namesae.errors import NamesaeError
from namesae.names import render
from namesae.synth.score.world import open_world, world_rows
from namesae.synth.toy_encoder import ToyTextEncoder


def score_basis_on_world(world: Any, k: int = 4, template: str = DEFAULT_TEMPLATE,
                         phrases: Sequence[str] = DEFAULT_PHRASES, target: str = "text",
                         max_names: int | None = None) -> dict[str, Any]:
    """Paint every full name of a synthetic world from other names' parts and phrases; score by planted kind.

    world: a `World` (built in memory) or the folder `namesae synth` wrote. Each full name's target is its text row
    for `template` (target="text") or the mean of its image rows (target="image"); the vocabulary holds the
    world's first names, surnames and `phrases`, embedded by the world's toy text encoder, minus the name's own
    first name and surname (a painting may not spell the name). The re-encoded cosines come from encoding the
    rendered prompts. Planted truth: compositional names are their parts (high cosine), dedicated names own an
    identity direction no other name carries (lower). Returns means per kind, their gap, the AUC (probability
    that a compositional name scores above a dedicated one) and a one-sided Mann-Whitney p-value. Each name is also
    painted with its own parts allowed (only the full name withheld): `parts_recall_top3` is the share of its
    planted parts (first name, surname) among the 3 largest-weight terms.
    """
    from scipy.stats import mannwhitneyu

    if target not in ("text", "image"):
        raise NamesaeError(f"target must be 'text' or 'image', got {target!r}")
    world, root = open_world(world)
    encoder = ToyTextEncoder(world)
    records = [r for r in world.names if r.kind == "full"][:max_names]
    firsts = [r.name for r in world.names if r.kind == "first"]
    lasts = [r.name for r in world.names if r.kind == "last"]
    vocab = build_vocabulary(encoder, {"first": firsts, "last": lasts, "phrase": list(phrases)}, template)
    x, names, prompts = world_rows(world, root, target)
    per_name = []
    for rec in records:
        if target == "text":
            hit = np.flatnonzero(prompts == render(template, rec.name))
            if hit.size == 0:
                raise NamesaeError(f"the world's text store has no row {render(template, rec.name)!r}; use one of "
                                   f"its templates (truth.json 'templates', with {{name}} for the name)")
            t = x[hit[0]]
        else:
            t = x[names == rec.name].mean(0)
        p = paint(t, vocab, encoder, k=k, exclude=[rec.first, rec.last, rec.name])
        # With its own parts allowed (only the full name itself withheld): are they the painting's top 3 terms?
        own = paint(t, vocab, encoder, k=max(k, 3), exclude=[rec.name], choose="full")
        top3 = [term.term for term in sorted(own.terms, key=lambda term: -term.weight)[:3]]
        planted = [part for part in (rec.first, rec.last) if part]
        per_name.append({"name": rec.name, "dedicated": rec.dedicated, "phase": rec.phase, "prompt": p.prompt,
                         "cosine": p.cosine, "centered_cosine": p.centered_cosine,
                         "reencoded_cosine": p.reencoded_cosine,
                         "reencoded_centered_cosine": p.reencoded_centered_cosine,
                         "own_parts_top3": top3,
                         "parts_recall_top3": sum(part in top3 for part in planted) / max(len(planted), 1)})
    out: dict[str, Any] = {"k": k, "template": template, "target": target, "n_phrases": len(phrases)}
    for kind, flag in (("compositional", False), ("dedicated", True)):
        sel = [r for r in per_name if r["dedicated"] == flag]
        out[f"n_{kind}"] = len(sel)
        out[kind] = {m: float(np.mean([r[m] for r in sel])) if sel else None
                     for m in ("cosine", "centered_cosine", "reencoded_cosine", "reencoded_centered_cosine",
                               "parts_recall_top3")}
        out[kind]["reencoded_cosines"] = [r["reencoded_cosine"] for r in sel]  # the distribution, for plots
    comp = [r["reencoded_centered_cosine"] for r in per_name if not r["dedicated"]]
    ded = [r["reencoded_centered_cosine"] for r in per_name if r["dedicated"]]
    if comp and ded:
        out["gap"] = out["compositional"]["reencoded_cosine"] - out["dedicated"]["reencoded_cosine"]
        out["centered_gap"] = float(np.mean(comp) - np.mean(ded))
        test = mannwhitneyu(comp, ded, alternative="greater")
        out["auc"] = float(test.statistic / (len(comp) * len(ded)))
        out["mannwhitney_p"] = float(test.pvalue)
    else:
        out.update(gap=None, centered_gap=None, auc=None, mannwhitney_p=None)
    out["names"] = per_name
    return out


def run_basis_score(world: Any, out: Path, k: int = 4, target: str = "text",
                    device: str = "cpu") -> tuple[dict[str, Any], Path]:
    """`namesae basis score`: `score_basis_on_world`, written as out/basis_score.json; `device` is checked and
    accepted so one --device fits every command (the toy encoder and the fits run on the CPU)."""
    from namesae.basis.result import BasisFile
    from namesae.devices import resolve_device

    resolve_device(device)
    result = score_basis_on_world(world, k=k, target=target)
    return result, BasisFile("score", {"world": str(world), **result}).save(out / "basis_score.json")
