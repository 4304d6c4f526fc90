"""Zero-shot feature labels from a vocabulary of phrases, encoder space comparison, and batches of names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import NamesaeError, SpaceMismatchError
from namesae.features.accumulate import factorize_names
from namesae.features.stats import FeatureLabels

if TYPE_CHECKING:
    from namesae.sae import TrainedSAE
    from namesae.store import EmbeddingStore


def zero_shot_labels(directions: Any, phrases: Any, phrase_labels: Sequence[str], center: bool = False,
                     batch: int = 4096) -> FeatureLabels:
    """Label each decoder direction [d_sae, d] by the phrase label whose mean embedding is closest in cosine."""
    import torch

    dirs = torch.as_tensor(np.asarray(directions) if not isinstance(directions, torch.Tensor) else directions)
    emb = torch.as_tensor(np.asarray(phrases) if not isinstance(phrases, torch.Tensor) else phrases)
    dirs, emb = dirs.float(), emb.float()
    if emb.ndim != 2 or dirs.ndim != 2 or emb.shape[1] != dirs.shape[1]:
        raise SpaceMismatchError(f"phrase embeddings {tuple(emb.shape)} and decoder directions "
                                 f"{tuple(dirs.shape)} differ in dimension; embed the vocabulary in the SAE's space")
    ids, labels = factorize_names(phrase_labels)
    if len(labels) == 0:
        raise NamesaeError("the label vocabulary is empty")
    # One vector per label: the mean of its unit-normalised phrase rows.
    unit = torch.nn.functional.normalize(emb, dim=1)
    means = torch.zeros(len(labels), emb.shape[1]).index_add_(0, torch.as_tensor(ids), unit)
    if center:
        means = means / torch.bincount(torch.as_tensor(ids)).unsqueeze(1) - unit.mean(0, keepdim=True)
    means = torch.nn.functional.normalize(means, dim=1)
    k = min(2, len(labels))
    best_idx, best_cos = [], []
    for start in range(0, dirs.shape[0], batch):
        cos = torch.nn.functional.normalize(dirs[start:start + batch], dim=1) @ means.T
        values, index = cos.topk(k, dim=1)
        best_idx.append(index)
        best_cos.append(values)
    index = torch.cat(best_idx).numpy() if best_idx else np.zeros((0, k), np.int64)
    cos = torch.cat(best_cos).numpy() if best_cos else np.zeros((0, k), np.float32)
    names = np.asarray(labels, dtype=object)
    return FeatureLabels(
        label=names[index[:, 0]], cosine=cos[:, 0].astype(np.float32),
        runner_up=names[index[:, 1]] if k == 2 else np.full(index.shape[0], "", dtype=object),
        margin=(cos[:, 0] - cos[:, 1]).astype(np.float32) if k == 2 else np.full(index.shape[0], np.nan, np.float32),
    )


def labels_from_store(sae: TrainedSAE, vocab: EmbeddingStore, center: bool = False) -> FeatureLabels:
    """Zero-shot labels of an SAE's features from a vocabulary store (row name = the phrase's label)."""
    check_vocab_space(sae, vocab)
    directions = sae.decoder_directions()
    return zero_shot_labels(directions, vocab.read(), vocab.names, center=center)


def same_encoder(space_a: str, space_b: str) -> bool:
    """Whether two store spaces come from the same encoder (they may differ in the text/image modality suffix)."""
    def strip(space: str) -> str:
        parts = space.split(":")
        return ":".join(parts[:-1]) if parts[-1] in ("text", "image") and len(parts) > 1 else space
    return strip(space_a) == strip(space_b)


def check_vocab_space(sae: TrainedSAE, vocab: EmbeddingStore) -> None:
    """Refuse a vocabulary store embedded by another encoder than the SAE's store (modality may differ)."""
    sae_space = getattr(sae, "space", None)
    if vocab.dim != int(sae.d_in) or (sae_space and not same_encoder(sae_space, vocab.space)):
        raise SpaceMismatchError(f"{vocab.path}: vocabulary space {vocab.space!r} (dim {vocab.dim}) is not the "
                                 f"SAE's encoder {sae_space!r} (dim {sae.d_in}); embed the phrases with it")


def iter_name_batches(name_rows: dict[str, np.ndarray], max_rows: int) -> Iterable[list[str]]:
    """Names grouped into batches of at most max_rows rows (a name larger than max_rows gets its own batch)."""
    batch: list[str] = []
    size = 0
    for name, rows in name_rows.items():
        if batch and size + len(rows) > max_rows:
            yield batch
            batch, size = [], 0
        batch.append(name)
        size += len(rows)
    if batch:
        yield batch
