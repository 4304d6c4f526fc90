"""Feature search, anti-patterns and contrast scored on a synthetic world: its planted trigger words, cancellers
and scene templates (`score_search_on_world`), through the world's planted dictionary or a trained SAE."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from namesae.errors import NamesaeError
from namesae.search import (
    Codes,
    FeatureTarget,
    as_numpy,
    contrast_codes,
    corpus_prompts,
    find_cancellers,
    improve_prompt,
    rank_prompts,
)
from namesae.synth import TEMPLATES
from namesae.synth.score.world import open_world, world_rows
from namesae.synth.toy_encoder import CANCELLERS, PLAIN_WORDS, TRIGGERS, ToyTextEncoder


@dataclass(frozen=True)
class PlantedDictionary:
    """The world's planted directions used as an oracle SAE: codes = ReLU(x D^T - threshold)."""

    directions: np.ndarray  # [n_directions, d] unit rows
    labels: tuple[str, ...]
    threshold: float

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Codes [n, n_directions] of embeddings x [n, d]."""
        return np.maximum(np.asarray(x, dtype=np.float32) @ self.directions.T - self.threshold, 0.0)


def planted_dictionary(world: Any, threshold: float = 0.05) -> PlantedDictionary:
    """The oracle dictionary of a synthetic world (its planted directions), to score the searches on their own."""
    return PlantedDictionary(world.truth.directions.astype(np.float32), tuple(world.truth.labels), threshold)


def feature_labels(directions: np.ndarray, world: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's nearest planted label [F] and that cosine [F], from decoder directions [F, d]."""
    d = np.asarray(directions, dtype=np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    cos = d @ world.truth.directions.T
    best = cos.argmax(1)
    return np.asarray(world.truth.labels, dtype=object)[best], cos[np.arange(len(d)), best]


def _feature_of(label: str, directions: np.ndarray, world: Any) -> tuple[int, float]:
    """The feature whose decoder direction is closest to a planted direction, and that cosine."""
    u = world.truth.directions[world.truth.index()[label]]
    d = np.asarray(directions, dtype=np.float64)
    cos = d @ u / np.maximum(np.linalg.norm(d, axis=1), 1e-12)
    j = int(cos.argmax())
    return j, float(cos[j])


def score_search_on_world(world: Any, codes: Codes | None = None, directions: np.ndarray | None = None,
                          n_names: int = 4, steps: int = 2, min_match: float = 0.5, n_boot: int = 200
                          ) -> dict[str, Any]:
    """Score feature search, anti-patterns and contrast against a synthetic world's planted tokens and templates.

    codes/directions: an SAE trained on the world (codes of embeddings; decoder directions [F, d]); by default
    the planted directions themselves (an oracle dictionary: this scores the searches alone). A planted label is
    searched through the feature closest to its direction (skipped, and counted as missed, below min_match).
    - triggers: from the corpus's best prompt (n_names full names x the world's templates), `improve_prompt`
      must put the label's planted trigger word into the prompt; `trigger_rank` is the trigger's rank among all
      search tokens appended to "a photo of a person".
    - cancellers: for "a photo of <name>, <plain word of the label>", the top addition of `find_cancellers` must
      be the planted canceller.
    - contrast: text rows of template "... at the beach" vs "... in an office": the feature of largest d must be
      nearest scene:beach, the one of most negative d scene:office.
    """
    world, root = open_world(world)
    encoder = ToyTextEncoder(world)
    if codes is None:
        oracle = planted_dictionary(world)
        codes, directions, source = oracle.codes, oracle.directions, "planted"
    elif directions is None:
        raise NamesaeError("score_search_on_world: pass the SAE's decoder directions with its codes")
    else:
        source = "sae"
    directions = as_numpy(directions)
    d_sae = len(directions)
    tokens = encoder.search_tokens()
    names = [r.name for r in world.names if r.kind == "full"][:n_names]
    templates = [t.replace("{}", "{name}") for t, _, _ in TEMPLATES[:world.config.n_templates]]
    corpus = corpus_prompts(names, templates)

    def target(label: str) -> tuple[FeatureTarget | None, dict[str, Any]]:
        j, c = _feature_of(label, directions, world)
        info = {"label": label, "feature": j, "match_cosine": c}
        if c < min_match:
            return None, info
        return FeatureTarget(codes, (j,), d_sae, directions[[j]], label), info

    trig = []
    for word, label in TRIGGERS.items():
        tgt, info = target(label)
        if tgt is not None:
            best = rank_prompts(corpus, encoder, tgt, top=1)[0]
            s = improve_prompt(best.prompt, tokens, encoder, tgt, steps=steps)
            ranked = rank_prompts([f"a photo of a person, {t}" for t in tokens], encoder, tgt)
            rank = 1 + [r.prompt for r in ranked].index(f"a photo of a person, {word}")
            info.update(found=word in s.best_prompt.split(), start=best.prompt, best=s.best_prompt,
                        gain=s.best_activation - s.start_activation, trigger_rank=rank)
        trig.append({"trigger": word, **info})
    canc = []
    plain = {next(iter(mix)): " ".join(phrase) for phrase, mix in reversed(list(PLAIN_WORDS.items()))}
    for word, label in CANCELLERS.items():
        tgt, info = target(label)
        if tgt is not None:
            prompt = f"a photo of {names[0]}, {plain[label]}"
            a = find_cancellers(prompt, tokens, encoder, tgt)
            top = a.ranked[0] if a.ranked else None
            info.update(prompt=prompt, found=top is not None and top.addition == word,
                        top_addition=top.addition if top else None, drop_fraction=top.drop_fraction if top else 0.0,
                        rest_cosine=top.rest_cosine if top else None)
        canc.append({"canceller": word, **info})
    x, _, prompts = world_rows(world, root, "text")
    a_rows = [i for i, p in enumerate(prompts) if str(p).endswith(" at the beach")]
    b_rows = [i for i, p in enumerate(prompts) if str(p).endswith(" in an office")]
    if not a_rows or not b_rows:
        raise NamesaeError("the world's text store lacks the beach or office template (n_templates >= 5 needed "
                           "for the contrast score)")
    con = contrast_codes(as_numpy(codes(x[a_rows])), as_numpy(codes(x[b_rows])), top=5, n_boot=n_boot)
    labels, _ = feature_labels(directions, world)
    pos = max(con.rows, key=lambda r: r.cohen_d)
    neg = min(con.rows, key=lambda r: r.cohen_d)
    contrast = {"a": "... at the beach", "b": "... in an office", "n_a": con.n_a, "n_b": con.n_b,
                "top_positive": {"feature": pos.feature, "label": labels[pos.feature], "cohen_d": pos.cohen_d,
                                 "ci": [pos.ci_low, pos.ci_high]},
                "top_negative": {"feature": neg.feature, "label": labels[neg.feature], "cohen_d": neg.cohen_d,
                                 "ci": [neg.ci_low, neg.ci_high]}}
    contrast["found"] = labels[pos.feature] == "scene:beach" and labels[neg.feature] == "scene:office"
    return {
        "dictionary": source,
        "triggers": {"found": sum(bool(t.get("found")) for t in trig), "of": len(trig),
                     "top1": sum(t.get("trigger_rank") == 1 for t in trig), "items": trig},
        "cancellers": {"found": sum(bool(c.get("found")) for c in canc), "of": len(canc), "items": canc},
        "contrast": contrast,
    }


def search_rates(score: dict[str, Any]) -> dict[str, float]:
    """The scorecard's rates of a `score_search_on_world` result: trigger_rank1 and triggers_found (shares of the
    planted triggers), anti_pattern_rate (cases whose best addition lowers the feature >= 80% at rest cosine
    >= 0.9), cancellers_found (the best addition is the planted canceller) and contrast_found (0 or 1)."""
    trig, canc = score["triggers"], score["cancellers"]
    strong = [c for c in canc["items"] if c.get("drop_fraction", 0.0) >= 0.8 and (c.get("rest_cosine") or 0.0) >= 0.9]
    return {"trigger_rank1": trig["top1"] / max(trig["of"], 1), "triggers_found": trig["found"] / max(trig["of"], 1),
            "anti_pattern_rate": len(strong) / max(canc["of"], 1),
            "cancellers_found": canc["found"] / max(canc["of"], 1),
            "contrast_found": float(score["contrast"]["found"])}


def run_search_score(world: Any, out: Path, sae: Path | None = None, steps: int = 2,
                     device: str = "cpu") -> tuple[dict[str, Any], Path]:
    """`namesae search score`: `score_search_on_world` through SAE `sae` (default: the planted directions),
    written as out/search_score.json."""
    from namesae.devices import resolve_device
    from namesae.search.result import SearchFile

    device = resolve_device(device)
    codes = directions = None
    if sae is not None:
        from namesae.sae import encode, load_sae

        model = load_sae(sae, device=device)
        codes, directions = (lambda x: encode(model, x)), model.decoder_directions()
    result = score_search_on_world(world, codes=codes, directions=directions, steps=steps)
    path = SearchFile("score", {"world": str(world), "sae": str(sae) if sae else None,
                                **result}).save(out / "search_score.json")
    return result, path
