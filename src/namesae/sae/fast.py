"""The fused training step for the TopK family (TopK, BatchTopK, Matryoshka BatchTopK).

Same maths, parameters, optimizer and bookkeeping as SAELens's `SAETrainer._train_step` on the same
`TrainingSAE` (the plain step stays available as engine "saelens" and is the reference this one is tested
against); it differs only in how the work is done. SAELens decodes the dense [batch, d_sae] code matrix and lets
autograd run dense matmuls backwards: six batch x d_in x d_sae products per step. Here only the encoder forward
is dense; everything after the top-k selection touches the k active (row, feature) pairs only:

* decode:            x_hat = b_dec + embedding_bag(active features, W_dec, weights = codes)
* grad of codes:     <dL/dx_hat[row], W_dec[feature]> per pair (embedding_bag's per-sample-weight backward)
* grad of W_dec:     sparse [d_sae, batch] (codes) @ dL/dx_hat
* grad of W_enc:     sparse [d_sae, batch] (dL/dpre) @ (x - b_dec), then transposed
* grad of b_enc, b_dec: index sums and one W_enc @ vector.

The decoder-norm rescaling of SAELens's TopK (`rescale_acts_by_decoder_norm`) selects on pre * |W_dec| and decodes
with (code / |W_dec|) W_dec; the norms cancel in the decode weights and in the gradients, so the decode weight of
a pair is relu(pre) and only the selection sees the norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

FAST_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")


@dataclass
class StepStats:
    """Numbers of one training step (on the training batch, in training units)."""

    loss: float
    mse: float
    l0: float
    explained_variance: float

    @classmethod
    def measure(cls, x: torch.Tensor, err: torch.Tensor, loss: torch.Tensor, mse: torch.Tensor,
                active: torch.Tensor) -> StepStats:
        """The stats of a step on batch x [B, d] with reconstruction error err [B, d]; `active` counts each row's
        (or each entry's) active features, so its sum over the batch / B is the mean L0."""
        total = (x - x.mean(0)).pow(2).sum()
        return cls(loss=float(loss), mse=float(mse), l0=float(active.sum()) / x.shape[0],
                   explained_variance=float(1 - err.pow(2).sum() / total))


def _pair_dots(grad: torch.Tensor, weight: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor,
               rows: torch.Tensor) -> torch.Tensor:
    """<grad[rows[i]], weight[cols[i]]> for every pair i ([pairs]), without materialising [pairs, d]."""
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(grad, weight, cols, offsets, rows, 0, -1)


def _scatter_rows(cols: torch.Tensor, rows: torch.Tensor, values: torch.Tensor, dense: torch.Tensor,
                  n_out: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """out[j] = sum over pairs i with cols[i] = j of values[i] * dense[rows[i]]  ([n_out, d])."""
    sparse = torch.sparse_coo_tensor(torch.stack([cols, rows]), values, (n_out, dense.shape[0]),
                                     check_invariants=False)
    if out is None:
        return torch.sparse.mm(sparse, dense)
    return torch.addmm(out, sparse, dense, beta=0, out=out)


class Buffers:
    """Step tensors kept from one step to the next. On CPU a fresh [batch, d_sae] tensor is a new mmap that
    the kernel faults in page by page on every step (glibc hands large blocks back to the OS on free), which
    cost as much as the top-k; reusing the memory removes that."""

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of this shape with `like`'s dtype and device, the same one on every call."""
        buf = self._tensors.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._tensors[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


def apply_grads(training_sae: Any, grads: dict[str, torch.Tensor]) -> None:
    """Put computed gradients into the persistent .grad of each parameter of a SAELens TrainingSAE (allocated
    once, reused every step)."""
    for name, param in training_sae.named_parameters():
        g = grads[name]
        if param.grad is None or param.grad.shape != param.shape:
            param.grad = g if g.is_contiguous() else g.contiguous()
        elif g.data_ptr() != param.grad.data_ptr():
            param.grad.copy_(g)


def record_firing(trainer: Any, fired: torch.Tensor, dist: Any = None) -> None:
    """SAETrainer._train_step's bookkeeping from per-feature firing counts [d_sae] of one batch (summed over ranks
    when data-parallel): steps since each feature fired, firing frequency, samples seen."""
    if dist is not None:
        fired = dist.reduce_sum(fired)
    trainer.n_forward_passes_since_fired += 1
    trainer.n_forward_passes_since_fired[fired > 0] = 0
    trainer.act_freq_scores += fired.to(trainer.act_freq_scores.dtype)
    trainer.n_frac_active_samples += trainer.cfg.train_batch_size_samples


def optimizer_step(trainer: Any, training_sae: Any, grads: dict[str, torch.Tensor],
                   dist: Any = None) -> None:
    """Average gradients over ranks (when data-parallel), set them, clip to norm 1 and step the optimizer and the
    schedules, as SAELens's trainer does after its backward pass."""
    if dist is not None:
        grads = dist.reduce_grads(grads)
    apply_grads(training_sae, grads)
    torch.nn.utils.clip_grad_norm_(list(training_sae.parameters()), 1.0)
    trainer.optimizer.step()  # the .grad tensors stay allocated: the next step overwrites them
    trainer.lr_scheduler.step()
    for scheduler in trainer.coefficient_schedulers.values():
        scheduler.step()


def _sparse_decode(cols: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor, W_dec: torch.Tensor,
                   b_dec: torch.Tensor | None) -> torch.Tensor:
    out = F.embedding_bag(cols, W_dec, offsets, mode="sum", per_sample_weights=weights)
    return out + b_dec if b_dec is not None else out


def encoder_product(bias: torch.Tensor, x: torch.Tensor, W: torch.Tensor, out: torch.Tensor,
                    autocast: bool) -> torch.Tensor:
    """bias + x @ W into `out` ([B, S], the parameters' dtype); under `autocast` the product runs in bfloat16
    (rounded as torch.autocast would) and only its result is widened."""
    if not autocast:
        return torch.addmm(bias, x, W, out=out)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
        prod = torch.mm(x, W)  # [B, S] bfloat16
    return torch.add(prod, bias, out=out)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _offsets(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """Start of each row's run in a row-sorted pair list ([batch])."""
    counts = torch.bincount(rows, minlength=batch)
    return torch.cumsum(counts, 0) - counts


class FusedTopKStep:
    """One SAELens-equivalent training step of a TopK-family TrainingSAE, on the trainer's optimizer and state."""

    def __init__(self, trainer: Any, autocast: bool = False) -> None:
        self.trainer = trainer
        self.autocast = bool(autocast)
        self.sae = trainer.sae
        cfg = self.sae.cfg
        self.arch = cfg.architecture()
        if self.arch not in FAST_ARCHITECTURES:
            raise ValueError(f"no fused step for architecture {self.arch!r}")
        if not cfg.apply_b_dec_to_input or cfg.normalize_activations != "none":
            raise ValueError("the fused step needs apply_b_dec_to_input=True and normalize_activations='none'")
        self.levels = list(cfg.matryoshka_widths[:-1]) if self.arch == "matryoshka_batchtopk" else []
        self.buffers = Buffers()
        self.dist: Any = None  # a distributed.Distributed under torchrun: gradients and counts reduced over ranks

    def _select(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Active pairs as row-sorted (rows, cols, h values, offsets)."""
        B, S = h.shape
        k = self.sae.cfg.k
        if self.arch == "topk":
            vals, idx = torch.topk(h, int(k), dim=-1, sorted=False)
            rows = torch.arange(B, device=h.device).repeat_interleave(int(k))
            return rows, idx.reshape(-1), vals.reshape(-1), torch.arange(0, B * int(k), int(k), device=h.device)
        flat = h.relu().reshape(-1)
        top = torch.topk(flat, int(k * B), sorted=False)
        order = torch.argsort(top.indices)
        flat_idx = top.indices[order]
        rows = torch.div(flat_idx, S, rounding_mode="floor")
        return rows, flat_idx - rows * S, top.values[order], _offsets(rows, B)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor, want_stats: bool = False) -> StepStats | None:
        """Train on one batch ([B, d_in], training units); stats only when asked (they cost a sync)."""
        tr, sae = self.trainer, self.sae
        W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
        x = batch.to(sae.device).to(W_enc.dtype)
        B, d = x.shape
        S = sae.cfg.d_sae
        world = self.dist.world if self.dist is not None else 1
        tr.n_training_samples += B * world
        dead = tr.dead_neurons  # before this step's bookkeeping, as in SAELens

        buf = self.buffers
        n = W_dec.norm(dim=-1)  # [S]
        x_c = x - b_dec  # [B, d]
        W_n = torch.mul(W_enc, n, out=buf.get("W_n", W_enc.shape, W_enc))
        h = encoder_product(b_enc * n, x_c, W_n, buf.get("h", (B, S), W_enc), self.autocast)  # [B, S] = (x_c W_enc + b_enc) |W_dec|
        rows, cols, hv, offsets = self._select(h)
        active = hv > 0
        a = torch.where(active, hv / n[cols], torch.zeros_like(hv))  # decode weight relu(pre)

        err = _sparse_decode(cols, offsets, a, W_dec, b_dec) - x  # [B, d]
        mse = err.pow(2).sum(-1).mean()
        loss = mse
        G = err * (2.0 / B)
        da = _pair_dots(G, W_dec, cols, offsets, rows)
        g_dec = [(cols, rows, a)]  # W_dec gradient pairs against stacked output gradients
        out_grads = [G]
        grad_b_dec = G.sum(0)
        for level, width in enumerate(self.levels, start=1):
            inside = (cols < width).to(a.dtype)
            err_w = _sparse_decode(cols, offsets, a * inside, W_dec, b_dec) - x
            loss = loss + err_w.pow(2).sum(-1).mean()
            G_w = err_w * (2.0 / B)
            da = da + _pair_dots(G_w, W_dec, cols, offsets, rows) * inside
            g_dec.append((cols, rows + level * B, a * inside))
            out_grads.append(G_w)
            grad_b_dec += G_w.sum(0)
        g_pre = [da * active]
        enc_cols, enc_rows = [cols], [rows]

        num_dead = int(dead.sum())
        if num_dead and sae.cfg.aux_loss_coefficient:
            k_aux = min(d // 2, num_dead)
            scale = min(num_dead / (d // 2), 1.0)
            dead_idx = dead.nonzero().squeeze(1)
            tv, ti = torch.topk(h[:, dead_idx], k_aux, dim=-1, sorted=False)
            acols = dead_idx[ti].reshape(-1)
            arows = torch.arange(B, device=x.device).repeat_interleave(k_aux)
            c = tv.reshape(-1) / n[acols]  # = pre, no relu (as SAELens)
            aoffsets = torch.arange(0, B * k_aux, k_aux, device=x.device)
            diff = _sparse_decode(acols, aoffsets, c, W_dec, None) + err  # recons - (x - x_hat)
            coef = sae.cfg.aux_loss_coefficient * scale
            loss = loss + coef * diff.pow(2).sum(-1).mean()
            A = diff * (2.0 * coef / B)
            g_pre.append(_pair_dots(A, W_dec, acols, aoffsets, arows))
            enc_cols.append(acols)
            enc_rows.append(arows)
            g_dec.append((acols, arows + len(out_grads) * B, c))
            out_grads.append(A)

        if self.arch != "topk" and bool(active.any()):  # BatchTopK threshold: EMA of the smallest positive code
            lr = sae.cfg.topk_threshold_lr
            smallest = hv[active].min().to(sae.topk_threshold.dtype)
            sae.topk_threshold = (1 - lr) * sae.topk_threshold + lr * smallest

        record_firing(tr, torch.bincount(cols[active], minlength=S), self.dist)  # from the active pairs

        ecols, erows, egrad = _cat(enc_cols), _cat(enc_rows), _cat(g_pre)
        grad_b_enc = torch.zeros_like(b_enc).index_add_(0, ecols, egrad)
        grads = {
            "W_enc": _scatter_rows(ecols, erows, egrad, x_c, S, out=buf.get("g_enc_t", W_dec.shape, W_dec)).t(),
            "b_enc": grad_b_enc,
            "W_dec": _scatter_rows(_cat([p[0] for p in g_dec]), _cat([p[1] for p in g_dec]),
                                   _cat([p[2] for p in g_dec]), _cat(out_grads), S,
                                   out=W_dec.grad if W_dec.grad is not None else None),
            "b_dec": grad_b_dec - W_enc @ grad_b_enc,
        }
        optimizer_step(tr, sae, grads, self.dist)
        if not want_stats:
            return None
        return StepStats.measure(x, err, loss, mse, active)
