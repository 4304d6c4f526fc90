"""What a search drives: a set of SAE features and a way to compute codes; prompts encoded in batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.encoders import TextEncoder
from namesae.errors import NamesaeError

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE

Codes = Callable[[np.ndarray], Any]  # embeddings [n, d] -> codes [n, d_sae] (numpy or torch)


def as_numpy(x: Any, dtype: type = np.float32) -> np.ndarray:
    """A numpy array of `dtype` from numpy, lists or torch tensors (any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


@dataclass(frozen=True)
class FeatureTarget:
    """SAE features whose summed code a search drives up or down."""

    codes: Codes
    features: tuple[int, ...]
    d_sae: int
    directions: np.ndarray | None = None  # [k, d] decoder directions of the features (for rest_cosine)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.features:
            raise NamesaeError("a feature target needs at least one feature id")
        bad = [f for f in self.features if not 0 <= f < self.d_sae]
        if bad:
            raise NamesaeError(f"feature id(s) {bad[:5]} out of range; the SAE has {self.d_sae} features "
                               f"(0..{self.d_sae - 1})")

    def activation(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Summed code of the target's features on embeddings x [n, d] -> [n]."""
        x = np.asarray(x, dtype=np.float32)
        out = np.empty(len(x), dtype=np.float64)
        idx = list(self.features)
        for start in range(0, len(x), batch):
            out[start:start + batch] = as_numpy(self.codes(x[start:start + batch]))[:, idx].sum(1)
        return out


def sae_target(sae: TrainedSAE, features: Sequence[int], label: str = "") -> FeatureTarget:
    """A FeatureTarget over a trained SAE (`namesae.sae.load_sae`): codes via `encode`, decoder directions."""
    from namesae.sae import encode

    directions = as_numpy(sae.decoder_directions())  # [d_sae, d]
    feats = tuple(int(f) for f in features)
    bad = [f for f in feats if not 0 <= f < sae.d_sae]
    if bad:
        raise NamesaeError(f"feature id(s) {bad[:5]} out of range; the SAE has {sae.d_sae} features "
                           f"(0..{sae.d_sae - 1})")
    return FeatureTarget(lambda x: encode(sae, x), feats, int(sae.d_sae), directions[list(feats)],
                         label or ",".join(map(str, feats)))


def parse_features(spec: str) -> list[int]:
    """Feature ids from "12", "3,4,9" or "3 4 9" (a group is a list of feature ids)."""
    parts = [p for p in spec.replace(",", " ").split() if p]
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise NamesaeError(f"features {spec!r}: expected feature ids such as '12' or '3,4,9'") from None
    if not ids:
        raise NamesaeError("no feature ids given; pass e.g. --features 12 or --features 3,4,9")
    return ids


def encode_prompts(encoder: TextEncoder, prompts: Sequence[str], batch: int) -> np.ndarray:
    """Embeddings [n, d] float32 of prompts, encoded by `encoder` in batches of `batch`."""
    return np.concatenate([np.asarray(encoder.encode_text(list(prompts[i:i + batch])), dtype=np.float32)
                           for i in range(0, len(prompts), batch)]) if prompts else np.zeros((0, 0), np.float32)


def search_tokens(tokens: Sequence[str], prompt: str, what: str = "prompt") -> list[str]:
    """The vocabulary of a token search without blank entries, refusing an empty one or an empty `what` prompt."""
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise NamesaeError("the token vocabulary is empty")
    if not prompt.strip():
        raise NamesaeError(f"the {what} is empty")
    return tokens
