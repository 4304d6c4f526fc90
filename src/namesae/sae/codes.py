"""Reading a store through a trained SAE: the space check, and batches of codes, dense (`iter_codes`) or as
non-zero entries (`iter_sparse_codes`), which for a plain TopK SAE are read off its top-k (`SparseEncoder`).

Every stage that encodes store rows goes through these: the analyses (features, identity, groups, emergence)
never read a store through an SAE themselves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesae.errors import SpaceMismatchError
from namesae.sae.model import encode

if TYPE_CHECKING:
    import torch

    from namesae.sae.model import TrainedSAE
    from namesae.store import EmbeddingStore

log = logging.getLogger(__name__)

_WARNED_ATTR = "_warned_unchecked_space"


def check_space(sae: TrainedSAE, store: EmbeddingStore) -> None:
    """Refuse a store whose dimension or space differs from the SAE's (SpaceMismatchError naming the store,
    both dimensions or spaces and the fix). An SAE that records no space (a plain SAELens folder) has only its
    dimension checked, and says so once per SAE."""
    space, where = getattr(sae, "space", None), getattr(sae, "path", None)
    if not space and not getattr(sae, _WARNED_ATTR, False):
        setattr(sae, _WARNED_ATTR, True)
        log.warning("%s: the SAE records no embedding space (no namesae.json); only the dimension of %s was "
                    "checked", where, store.path)
    if int(getattr(sae, "d_in", store.dim)) != store.dim:
        raise SpaceMismatchError(f"{store.path}: store dim {store.dim} differs from the SAE's d_in {sae.d_in} "
                                 f"(SAE {where}, space {space!r}); use the store the SAE was trained on")
    if space and space != store.space:
        raise SpaceMismatchError(f"{store.path}: store space {store.space!r} differs from the SAE's space "
                                 f"{space!r} (SAE {where}); use a store embedded with the SAE's encoder")


def _store_batches(store: EmbeddingStore, rows: np.ndarray, batch_rows: int
                   ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(offset into rows, store rows of the batch, their embeddings [b, d_in]) in batches of batch_rows; a
    batch of consecutive rows is read as one slice."""
    for start in range(0, rows.size, batch_rows):
        chunk = rows[start:start + batch_rows]
        # store.read/read_rows refuse non-finite rows, so the encoder's own finiteness check is not repeated.
        contiguous = int(chunk[-1]) - int(chunk[0]) + 1 == chunk.size and bool(np.all(np.diff(chunk) == 1))
        x = store.read(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else store.read_rows(chunk)
        yield start, chunk, x


def iter_codes(sae: TrainedSAE, store: EmbeddingStore, rows: np.ndarray, batch_rows: int,
               progress: bool = False, desc: str = "encode"
               ) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
    """Yield (offset into rows, store rows of the batch, codes [b, d_sae]) over the given store rows."""
    import torch
    from tqdm.auto import tqdm

    with tqdm(total=int(rows.size), desc=desc, unit="row", disable=not progress) as bar:
        for start, chunk, x in _store_batches(store, rows, batch_rows):
            with torch.no_grad():
                codes = encode(sae, x)
            yield start, chunk, codes
            bar.update(chunk.size)


@dataclass
class CodeBlock:
    """Codes of a run of rows: `rows[i]` is the store row of `codes[i]`; `start` is the offset in the request."""

    start: int
    rows: np.ndarray  # [b] store rows
    codes: Any  # torch float32 [b, d_sae]


def encode_store(sae: TrainedSAE, store: EmbeddingStore, rows: np.ndarray | None = None,
                 batch_size: int = 4096) -> Iterator[CodeBlock]:
    """Encode a store's rows (all, or the given ones in their order) batch by batch, after `check_space`."""
    check_space(sae, store)
    rows = np.arange(len(store), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    for start, chunk, codes in iter_codes(sae, store, rows, batch_size):
        yield CodeBlock(start, chunk, codes)


def topk_sparse_k(sae: TrainedSAE) -> int | None:
    """k when `sae` wraps a plain SAELens TopK SAE (no hooks, stock encode), whose codes can be read off its
    top-k directly (`sparse_encode`); None otherwise (codes then come from the dense `encode`)."""
    try:
        from sae_lens.saes.topk_sae import TopK, TopKSAE
    except ImportError:  # pragma: no cover - sae_lens is a dependency
        return None
    model = getattr(sae, "model", None)
    if not isinstance(model, TopKSAE) or type(model).encode is not TopKSAE.encode:
        return None
    act = getattr(model, "activation_fn", None)
    if type(act) is not TopK or act.use_sparse_activations:
        return None
    for hook in (model.hook_sae_input, model.hook_sae_acts_pre, model.hook_sae_acts_post):
        if hook._forward_hooks or hook._forward_pre_hooks:
            return None
    return int(act.k)


class SparseEncoder:
    """Non-zero SAE codes of row batches through one SAE, as (row, feature, value) arrays.

    With k (a plain TopK SAE, `topk_sparse_k`) the codes are taken from the top-k of the pre-activations as
    SAELens computes them, never scattered into a dense [b, d_sae] matrix; otherwise from `namesae.sae.encode`.
    The decoder norms (TopK's rescaling) are computed once, and the pre-activation buffer is reused from batch
    to batch: a fresh [b, d_sae] tensor per batch is a new mapping the kernel faults in page by page."""

    def __init__(self, sae: TrainedSAE, k: int | None) -> None:
        self.sae, self.k = sae, k
        self._norm: torch.Tensor | None = None
        self._pre: torch.Tensor | None = None
        if k is not None and sae.model.cfg.rescale_acts_by_decoder_norm:
            import torch

            with torch.no_grad():
                self._norm = sae.model.W_dec.norm(dim=-1)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero codes of finite rows x [b, d_in], row-major with features ascending within a row."""
        import torch

        with torch.no_grad():
            if self.k is None:
                codes = encode(self.sae, x)
                rows, feats = torch.nonzero(codes, as_tuple=True)
                return rows.numpy(), feats.numpy(), codes[rows, feats].float().numpy()
            model = self.sae.model
            t = model.process_sae_in(torch.as_tensor(np.asarray(x)).to(model.device, model.dtype))
            shape = (t.shape[0], model.W_enc.shape[1])
            if self._pre is None or self._pre.shape[0] < shape[0]:
                self._pre = torch.empty(shape, dtype=t.dtype, device=t.device)
            pre = torch.mm(t, model.W_enc, out=self._pre[:shape[0]])
            pre = model.hook_sae_acts_pre(pre.add_(model.b_enc))
            if self._norm is not None:
                pre.mul_(self._norm)
            values, index = torch.topk(pre, k=self.k, dim=-1, sorted=False)
            index, order = index.sort(dim=-1)
            values = values.relu().gather(-1, order).float().cpu()
            keep = values != 0
            rows = torch.arange(values.shape[0]).unsqueeze(1).expand_as(values)[keep]
            return rows.numpy(), index.cpu()[keep].numpy(), values[keep].numpy()


def sparse_encode(sae: TrainedSAE, x: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero SAE codes of finite rows x [b, d_in] as (row, feature, value) arrays, row-major with features
    ascending within a row (the order of `torch.nonzero` on the dense codes, with the same values)."""
    return SparseEncoder(sae, k)(x)


def _sparse_path_agrees(encoder: SparseEncoder, x: np.ndarray, n: int = 64) -> bool:
    """Whether the top-k sparse path gives the dense encoder's non-zero codes on the first n rows of x."""
    dense = sparse_encode(encoder.sae, x[:n], None)
    fast = encoder(x[:n])
    return all(a.shape == b.shape for a, b in zip(dense, fast)) and bool(
        np.array_equal(dense[0], fast[0]) and np.array_equal(dense[1], fast[1])
        and np.allclose(dense[2], fast[2], rtol=1e-6, atol=1e-7))


def iter_sparse_codes(sae: TrainedSAE, store: EmbeddingStore, rows: np.ndarray, batch_rows: int,
                      progress: bool = False, desc: str = "encode"
                      ) -> Iterator[tuple[int, np.ndarray, tuple[np.ndarray, ...]]]:
    """Yield (offset into rows, store rows of the batch, (local row, feature, value) non-zero codes) over the
    given store rows; for a TopK SAE no dense code matrix is built (`sparse_encode`)."""
    from tqdm.auto import tqdm

    encoder = SparseEncoder(sae, topk_sparse_k(sae))
    with tqdm(total=int(rows.size), desc=desc, unit="row", disable=not progress) as bar:
        for start, chunk, x in _store_batches(store, rows, batch_rows):
            if encoder.k is not None and start == 0 and not _sparse_path_agrees(encoder, x):
                log.warning("top-k sparse encoding disagrees with the SAE's encode; using the dense encoder")
                encoder = SparseEncoder(sae, None)
            yield start, chunk, encoder(x)
            bar.update(chunk.size)
