"""The fused training step for JumpReLU: SAELens's JumpReLU maths, with the decoder and the backward sparse.

Same parameters, losses, straight-through gradients, optimizer and bookkeeping as SAELens's
`JumpReLUTrainingSAE.training_forward_pass` + `SAETrainer._train_step` (engine "saelens" stays the reference this
step is tested against). With pre = (x - b_dec) W_enc + b_enc and threshold t (clamped to >= 0 first):

* code:  f = pre * [pre > t]; the decoder, W_dec's gradient and W_enc's gradient touch active pairs only
  (JumpReLU's input gradient is [pre > t] * dL/df).
* threshold: JumpReLU's and Step's straight-through estimators are non-zero only inside the window
  |pre - t| < bandwidth / 2, active or not:
  dL/dt_j = -sum_rows rect((pre - t_j) / bw) * (t_j / bw * dL/df + 1 / bw * dL/dl0).
  When the window is sparse (a trained SAE) its pairs are listed and dL/df = <dL/dx_hat, W_dec[j]> computed per
  pair; when it is dense (at initialisation, where the bandwidth spans most pre-activations) the window sum is one
  [d_sae, batch] @ [batch, d_in] product, still far from SAELens's six dense products and autograd's buffers.
* sparsity losses: "step" (L0 through Step), "quadratic" (2 / target (L0 - target)^2) and "tanh"
  (sum tanh(scale f |W_dec|), which also pulls on the decoder norms), with `jumprelu_ste_to_input` either way.

Anthropic's pre-activation loss (`pre_act_loss_coefficient`) has no fused form here: `make_step` falls back to the
SAELens step for it.
"""

from __future__ import annotations

from typing import Any

import torch

from namesae.sae.fast import (
    Buffers,
    StepStats,
    _offsets,
    _pair_dots,
    _scatter_rows,
    _sparse_decode,
    encoder_product,
    optimizer_step,
    record_firing,
)

# Share of (row, feature) pairs in the union of the active set and the straight-through window above which the
# window is handled densely (one extra matmul) rather than pair by pair.
DENSE_WINDOW_SHARE = 0.08


class FusedJumpReLUStep:
    """One SAELens-equivalent training step of a JumpReLU TrainingSAE, on the trainer's optimizer and state."""

    def __init__(self, trainer: Any, dense_window_share: float | None = None, autocast: bool = False) -> None:
        self.trainer = trainer
        self.autocast = bool(autocast)
        self.sae = trainer.sae
        cfg = self.sae.cfg
        if cfg.architecture() != "jumprelu":
            raise ValueError(f"no fused JumpReLU step for architecture {cfg.architecture()!r}")
        if not cfg.apply_b_dec_to_input or cfg.normalize_activations != "none":
            raise ValueError("the fused step needs apply_b_dec_to_input=True and normalize_activations='none'")
        if cfg.pre_act_loss_coefficient is not None:
            raise ValueError("the fused JumpReLU step has no pre-activation loss; use engine 'saelens'")
        self.mode = cfg.jumprelu_sparsity_loss_mode
        if self.mode not in ("step", "tanh", "quadratic"):
            raise ValueError(f"unknown jumprelu_sparsity_loss_mode {self.mode!r}")
        self.bw = float(cfg.jumprelu_bandwidth)
        self.ste = bool(cfg.jumprelu_ste_to_input)
        self.tanh_scale = float(cfg.jumprelu_tanh_scale)
        self.target_l0 = cfg.target_l0
        self.dense_window_share = DENSE_WINDOW_SHARE if dense_window_share is None else float(dense_window_share)
        self.buffers = Buffers()
        self.dist: Any = None  # a distributed.Distributed under torchrun: gradients and counts reduced over ranks
        self.paths: dict[str, int] = {"pairs": 0, "dense_window": 0}  # steps taken on each path

    def _l0_row_grad(self, l0: torch.Tensor, coef: float, B: int) -> torch.Tensor | float:
        """dLoss/dL0 per row ([B], or a scalar for "step"; "tanh" has no L0 term)."""
        if self.mode in ("step", "tanh"):
            return coef / B
        return (coef / B) * (4.0 / self.target_l0) * (l0 - self.target_l0)

    def _l0_loss(self, l0: torch.Tensor, tanh_sum: torch.Tensor | None, coef: float) -> torch.Tensor:
        if self.mode == "step":
            return (coef * l0).mean()
        if self.mode == "quadratic":
            return (coef * (2 / self.target_l0 * (l0 - self.target_l0) ** 2)).mean()
        return (coef * tanh_sum).mean()

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor, want_stats: bool = False) -> StepStats | None:
        """Train on one batch ([B, d_in], training units); stats only when asked (they cost a sync)."""
        tr, sae = self.trainer, self.sae
        sae.threshold.data.clamp_(min=0.0)  # as JumpReLUTrainingSAE.training_forward_pass
        W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
        x = batch.to(sae.device).to(W_enc.dtype)
        B = x.shape[0]
        S = sae.cfg.d_sae
        world = self.dist.world if self.dist is not None else 1
        tr.n_training_samples += B * world
        coef = float(tr.get_coefficients()["l0"])
        bw = self.bw
        t = sae.threshold.to(W_enc.dtype)  # [S]
        n = W_dec.norm(dim=1)  # [S]

        buf = self.buffers
        x_c = x - b_dec  # [B, d]
        h_buf = buf.get("h", (B, S), W_enc)
        h = encoder_product(b_enc, x_c, W_enc, h_buf, True) if self.autocast else (
            torch.mm(x_c, W_enc, out=h_buf).add_(b_enc))  # [B, S] pre-activations, rounded as SAELens's `x_c @ W_enc + b_enc`
        # Every pair that is active or inside the window lies above `lower` (with a margin against rounding);
        # the exact SAELens tests are then re-run on the listed pairs.
        lower = t - 0.5 * bw * (1 + 1e-3)
        union = torch.gt(h, lower, out=buf.get("mask", (B, S), torch.empty(0, dtype=torch.bool, device=h.device)))
        n_union = int(union.sum())
        dense_window = n_union > self.dense_window_share * B * S and not self.ste
        self.paths["dense_window" if dense_window else "pairs"] += 1
        if dense_window:
            flat = torch.gt(h, t, out=union).view(-1).nonzero().squeeze(1)
        else:
            flat = union.view(-1).nonzero().squeeze(1)
        rows = torch.div(flat, S, rounding_mode="floor")
        cols = flat - rows * S
        v = h.view(-1)[flat]  # pre at the listed pairs
        tc = t[cols]
        active = v > tc
        z = (v - tc) / bw
        rect = ((z > -0.5) & (z < 0.5)).to(v.dtype)
        if not dense_window:  # keep the active pairs for the decoder, the window pairs for the threshold
            win = rect.nonzero().squeeze(1)
            w_rows, w_cols, w_v, w_rect = rows[win], cols[win], v[win], rect[win]
            keep = active.nonzero().squeeze(1)
            rows, cols, v, rect = rows[keep], cols[keep], v[keep], rect[keep]
        f = v  # active pairs only from here: f = pre
        offsets = _offsets(rows, B)

        err = _sparse_decode(cols, offsets, f, W_dec, b_dec) - x  # [B, d]
        mse = err.pow(2).sum(-1).mean()
        G = err * (2.0 / B)  # dL/dx_hat
        df = _pair_dots(G, W_dec, cols, offsets, rows)  # dL/df at active pairs (reconstruction)
        l0 = torch.bincount(rows, minlength=B).to(x.dtype)  # [B]
        g_l0 = self._l0_row_grad(l0, coef, B)
        tanh_sum = None
        grad_n = None
        if self.mode == "tanh":
            s = self.tanh_scale
            th = torch.tanh(s * f * n[cols])
            tanh_sum = torch.zeros(B, dtype=x.dtype, device=x.device).index_add_(0, rows, th)
            sech2 = 1 - th * th
            df = df + (coef / B) * s * n[cols] * sech2
            grad_n = torch.zeros_like(n).index_add_(0, cols, (coef / B) * s * f * sech2)
        loss = mse + self._l0_loss(l0, tanh_sum, coef)
        g_pre = df  # JumpReLU's input gradient: [pre > t] * dL/df
        enc_rows, enc_cols = rows, cols

        # Threshold gradient: -sum over window pairs of (t / bw) dL/df + (1 / bw) dL/dl0.
        if dense_window:
            z = torch.sub(h, t, out=buf.get("z", (B, S), h)).div_(bw)
            inside = torch.gt(z, -0.5, out=union)
            inside &= torch.lt(z, 0.5, out=buf.get("mask2", (B, S), union))
            R = z.copy_(inside)  # [B, S] window, as h's dtype
            # dL/df over the window = <G[row], W_dec[j]> (+ the tanh term); summed over rows per feature j.
            win_recon = ((R.t() @ G) * W_dec).sum(-1)  # [S]
            count = R.sum(0)  # [S]
            if isinstance(g_l0, float):
                win_l0 = g_l0 * count
            else:
                win_l0 = R.t() @ g_l0
            if self.mode == "tanh":
                # inactive window pairs have f = 0, so their tanh term is (coef / B) s |W_dec|; active ones are
                # corrected by their actual (1 - tanh^2).
                s = self.tanh_scale
                win_act = torch.zeros_like(n).index_add_(0, cols, rect * (1 - sech2))
                win_recon = win_recon + (coef / B) * s * n * (count - win_act)
            del R
            grad_t = -(t / bw) * win_recon
            if self.mode != "tanh":
                grad_t = grad_t - win_l0 / bw
        else:
            w_tc = t[w_cols]
            w_offsets = _offsets(w_rows, B)
            w_df = _pair_dots(G, W_dec, w_cols, w_offsets, w_rows)
            w_active = w_v > w_tc
            if self.mode == "tanh":
                s = self.tanh_scale
                w_f = w_v * w_active
                w_th = torch.tanh(s * w_f * n[w_cols])
                w_df = w_df + (coef / B) * s * n[w_cols] * (1 - w_th * w_th)
            jump = (w_tc / bw) * w_rect * w_df  # JumpReLU's estimator
            contrib = jump
            if self.mode != "tanh":
                w_gl0 = g_l0 if isinstance(g_l0, float) else g_l0[w_rows]
                step_ste = (1.0 / bw) * w_rect * w_gl0  # Step's estimator
                contrib = contrib + step_ste
            grad_t = -torch.zeros_like(t).index_add_(0, w_cols, contrib)
            if self.ste:  # the estimators also reach the pre-activations (Anthropic's setup)
                enc_rows, enc_cols = torch.cat([rows, w_rows]), torch.cat([cols, w_cols])
                g_pre = torch.cat([g_pre, contrib])

        # Bookkeeping of SAETrainer._train_step (feature_acts != 0 <=> pre > t >= 0).
        record_firing(tr, torch.bincount(cols, minlength=S), self.dist)

        grad_b_enc = torch.zeros_like(b_enc).index_add_(0, enc_cols, g_pre)
        grad_W_dec = _scatter_rows(cols, rows, f, G, S, out=buf.get("g_dec", W_dec.shape, W_dec))
        if grad_n is not None:
            grad_W_dec = grad_W_dec + (grad_n / n).unsqueeze(1) * W_dec
        grads = {
            "W_enc": _scatter_rows(enc_cols, enc_rows, g_pre, x_c, S, out=buf.get("g_enc_t", W_dec.shape, W_dec)).t(),
            "b_enc": grad_b_enc,
            "W_dec": grad_W_dec,
            "b_dec": G.sum(0) - W_enc @ grad_b_enc,
            "threshold": grad_t.to(sae.threshold.dtype),
        }
        optimizer_step(tr, sae, grads, self.dist)
        if not want_stats:
            return None
        return StepStats.measure(x, err, loss, mse, l0)
