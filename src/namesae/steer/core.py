"""Steering maths: x' = x + decode(edit(f)) - decode(f), and the identity-ablation score against a prediction
(scored on a synthetic world in `namesae.synth.score.steer`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from namesae.steer.edits import CodeRef, Decode, Edit, Encode, Transfer, ZeroGroup, apply_edits

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE


# ---- resolving references --------------------------------------------------------------------------------------
def resolve_edits(edits: Sequence[Edit], encode: Encode, embeddings_of: Callable[[CodeRef], Tensor]) -> list[Edit]:
    """Edits with every transfer reference replaced by mean codes; `embeddings_of(ref)` gives its rows [m, d]."""
    out: list[Edit] = []
    for edit in edits:
        if isinstance(edit, Transfer):
            edit = replace(edit, target=_resolve(edit.target, encode, embeddings_of),
                           source=_resolve(edit.source, encode, embeddings_of))
        out.append(edit)
    return out


def _resolve(ref: CodeRef | Tensor, encode: Encode, embeddings_of: Callable[[CodeRef], Tensor]) -> CodeRef | Tensor:
    if not isinstance(ref, CodeRef) or ref.kind == "self":
        return ref
    if ref.kind == "codes":
        return ref  # spelled out: Transfer reads it against the SAE's width
    x = torch.as_tensor(embeddings_of(ref), dtype=torch.float32)
    return encode(x.reshape(-1, x.shape[-1])).mean(0)


# ---- steering --------------------------------------------------------------------------------------------------
@dataclass
class SteerResult:
    """Embeddings before and after an edit, with the codes and the kept reconstruction error."""

    embeddings: Tensor  # [n, d] x', what conditions the decoder
    original: Tensor  # [n, d] x
    codes: Tensor  # [n, d_sae] f = encode(x)
    edited_codes: Tensor  # [n, d_sae] f' = edit(f)
    error: Tensor  # [n, d] x - decode(f), kept in x'
    edits: list[Edit] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per-row numbers for printing / JSON: cosine and distance moved, norms, features changed."""
        x, y = self.original.float(), self.embeddings.float()
        changed = (self.edited_codes != self.codes).sum(1)
        return {
            "rows": int(x.shape[0]),
            "cosine_to_original": [round(float(c), 6) for c in torch.nn.functional.cosine_similarity(x, y, dim=1)],
            "distance": [round(float(v), 6) for v in (y - x).norm(dim=1)],
            "norm_original": [round(float(v), 6) for v in x.norm(dim=1)],
            "norm_edited": [round(float(v), 6) for v in y.norm(dim=1)],
            "error_norm": [round(float(v), 6) for v in self.error.float().norm(dim=1)],
            "features_changed": [int(v) for v in changed],
            "active_features": [int(v) for v in (self.codes > 0).sum(1)],
        }


def steer_embeddings(x: Tensor, edits: Sequence[Edit], encode: Encode, decode: Decode,
                     keep_norm: bool = False) -> SteerResult:
    """x' = x + decode(edit(f)) - decode(f) with f = encode(x); exactly x when the edits leave f unchanged."""
    x = torch.as_tensor(x)
    if x.ndim == 1:
        x = x[None]
    x32 = x.float()
    codes = encode(x32).float()
    edited = apply_edits(codes, edits)
    recon = decode(codes).float()
    error = x32 - recon
    if not edits or torch.equal(edited, codes):
        return SteerResult(x.clone(), x, codes, edited, error, list(edits))
    y = x32 + (decode(edited).float() - recon)
    if keep_norm:
        y = y * (x32.norm(dim=1, keepdim=True) / y.norm(dim=1, keepdim=True).clamp_min(1e-12))
    return SteerResult(y.to(x.dtype), x, codes, edited, error, list(edits))


def sae_functions(sae: TrainedSAE) -> tuple[Encode, Decode]:
    """encode / decode closures over an SAE in store units (a namesae `TrainedSAE`, or anything with the same
    `encode(x)` / `decode(f)` methods)."""
    if hasattr(sae, "encode") and hasattr(sae, "decode"):
        return sae.encode, sae.decode
    from namesae.sae import decode, encode

    return (lambda x: encode(sae, x)), (lambda f: decode(sae, f))


def steer(sae: TrainedSAE, x: Tensor | np.ndarray, edits: Sequence[Edit],
          keep_norm: bool = False) -> SteerResult:
    """Steer store-unit embeddings x [n, d] with a namesae SAE (see `steer_embeddings`)."""
    encode, decode = sae_functions(sae)
    return steer_embeddings(torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x), edits, encode,
                            decode, keep_norm)


# ---- does zeroing identity features make a name compositional? -----------------------------------------------
@dataclass
class AblationScore:
    """One name's rows before and after zeroing its identity features, against its parts and its own mean."""

    name: str
    rows: int
    features: list[int]
    cos_prediction_before: float  # mean cos(x, p): p = compositional prediction from the name's parts
    cos_prediction_after: float  # mean cos(x', p)
    cos_mean_before: float  # mean cos(x, m): m = the name's own mean embedding
    cos_mean_after: float  # mean cos(x', m)
    closer_to_prediction: float  # share of rows with cos(x', p) > cos(x', m)

    @property
    def moved_to_parts(self) -> bool:
        """The edited rows sit, on average, closer to the parts' prediction than to the name's own mean."""
        return self.cos_prediction_after > self.cos_mean_after


@dataclass
class AblationSummary:
    """Zeroing identity features over many names: the share that moved to their parts."""

    scores: list[AblationScore]
    share_moved: float  # share of names with moved_to_parts
    mean_closer_to_prediction: float  # mean over names of closer_to_prediction
    mean_gain_prediction: float  # mean of cos_prediction_after - cos_prediction_before

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"names": len(self.scores), "share_moved": self.share_moved,
                "mean_closer_to_prediction": self.mean_closer_to_prediction,
                "mean_gain_prediction": self.mean_gain_prediction,
                "per_name": [{**s.__dict__, "moved_to_parts": s.moved_to_parts} for s in self.scores]}


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def identity_ablation_score(x: Tensor | np.ndarray, features: Sequence[int], prediction: Tensor | np.ndarray,
                            encode: Encode, decode: Decode, name: str = "") -> AblationScore:
    """Zero a name's identity features in its rows x [m, d]; compare x' with its parts' prediction p [d] or [m, d]."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    p = _unit(torch.as_tensor(np.asarray(prediction) if not isinstance(prediction, Tensor) else prediction,
                              dtype=torch.float32)).expand_as(x)
    mean = _unit(x.mean(0, keepdim=True)).expand_as(x)
    edited = steer_embeddings(x, [ZeroGroup(tuple(int(j) for j in features))] if len(features) else [],
                              encode, decode).embeddings
    cos = torch.nn.functional.cosine_similarity
    after_p, after_m = cos(edited, p, dim=1), cos(edited, mean, dim=1)
    return AblationScore(name, int(x.shape[0]), [int(j) for j in features], float(cos(x, p, dim=1).mean()),
                         float(after_p.mean()), float(cos(x, mean, dim=1).mean()), float(after_m.mean()),
                         float((after_p > after_m).float().mean()))


def identity_ablation_scores(rows: Mapping[str, Tensor | np.ndarray], features: Mapping[str, Sequence[int]],
                             predictions: Mapping[str, Tensor | np.ndarray], encode: Encode, decode: Decode
                             ) -> AblationSummary:
    """`identity_ablation_score` for every name that has identity features; names without any are skipped."""
    scores = [identity_ablation_score(rows[n], features[n], predictions[n], encode, decode, n)
              for n in rows if len(features.get(n, ())) > 0]
    if not scores:
        return AblationSummary([], float("nan"), float("nan"), float("nan"))
    return AblationSummary(scores, float(np.mean([s.moved_to_parts for s in scores])),
                           float(np.mean([s.closer_to_prediction for s in scores])),
                           float(np.mean([s.cos_prediction_after - s.cos_prediction_before for s in scores])))
