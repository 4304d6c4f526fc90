"""Batched feature grouping on Gram matrices: every embedding, k and restart of `reference.py` at once, in torch.

Everything k-means needs is inner products. With G = U U^T over an embedding's active directions and a grouping
a, the unnormalised cosine of feature i to group c is T[c, i] = sum_{j in c} w_j G[j, i], the centroid length is
|s_c| = sqrt(sum_{i in c} w_i T[c, i]), and the cosine is T[c, i] / |s_c|. So one iteration costs k * n, not
k * n * d, and T is updated only for the features that moved (n per move). k-means++ runs once per (embedding,
restart): the draws are shared, so the centres of k are the first k centres of k_max, and the start of k is the
start of k - 1 plus the features the new centre wins. Problems (embedding, restart, k) run in a few batches, k
bucketed by slot width (BUCKET), and each problem leaves its batch as soon as no feature moves (early exit per
problem). Works on any device the inputs live on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from namesae.groups.config import RESTART_TIE, SHARE_SLACK, GroupConfig, init_uniforms
from namesae.groups.reference import ZERO_NORM, gaps

# Moves applied to T per index_add (bounds the gathered source rows: MOVE_CHUNK * n floats).
MOVE_CHUNK = 1 << 15


@dataclass
class GramPath:
    """The best k-means run for every k = 1..k_max of each embedding in a batch."""

    labels: Tensor  # int64 [B, k_max, n]; -1 for padding features and where k is infeasible
    objective: Tensor  # float64 [B, k_max]; weighted mean cosine to centroid, nan where infeasible
    min_share: Tensor  # float64 [B, k_max]; smallest group's share of the mass, 0 where infeasible
    feasible: Tensor  # bool [B, k_max]; k <= number of distinct directions
    iterations: Tensor  # int64 [B, k_max]; Lloyd iterations of the kept run

    def mass_valid(self, m_min: float) -> Tensor:
        """Which k satisfy the mass rule [B, k_max]: every group holds >= m_min of the mass."""
        return self.feasible & (self.min_share >= m_min * (1 - SHARE_SLACK))


def kmeanspp_batched(flat_gram: Tensor, weights: Tensor, uniforms: Tensor, n_centers: int) -> tuple[Tensor, Tensor]:
    """Greedy weighted k-means++ for every (embedding, restart): centres [B, R, n_centers] and the number of
    distinct centres found [B, R] (k beyond it is infeasible)."""
    B, n = weights.shape
    R = uniforms.shape[0]
    dev = weights.device
    w = weights.double()
    row0 = (torch.arange(B, device=dev) * n).view(B, 1, 1)
    target = uniforms[:, 0, 0].view(1, R, 1) * w.sum(1).view(B, 1, 1)
    cumulative = w.cumsum(1)[:, None, :].expand(B, R, n).contiguous()
    first = torch.searchsorted(cumulative, target, right=True).clamp_max(n - 1)  # [B, R, 1]
    centers = torch.zeros(B, R, n_centers, dtype=torch.int64, device=dev)
    centers[:, :, :1] = first
    closest = flat_gram[(row0 + first).squeeze(-1)]  # [B, R, n]
    distinct = torch.full((B, R), n_centers, dtype=torch.int64, device=dev)
    for step in range(1, n_centers):
        cumulative = (w[:, None, :] * gaps(closest)).cumsum(-1)
        total = cumulative[..., -1:]
        distinct = torch.where((total.squeeze(-1) <= 0) & (distinct == n_centers), step, distinct)
        candidates = torch.searchsorted(cumulative, uniforms[:, step, :][None] * total, right=True)
        candidates = candidates.clamp_max(n - 1)  # [B, R, L]
        trial = torch.maximum(closest[:, :, None, :], flat_gram[row0 + candidates])  # [B, R, L, n]
        pick = (w[:, None, None, :] * gaps(trial)).sum(-1).argmin(-1, keepdim=True)  # [B, R, 1]
        centers[:, :, step:step + 1] = candidates.gather(2, pick)
        closest = trial.gather(2, pick[..., None].expand(B, R, 1, n)).squeeze(2)
    return centers, distinct


def _apply_moves(T: Tensor, flat_gram: Tensor, rows: Tensor, weight: Tensor, problem: Tensor, old: Tensor,
                 new: Tensor) -> None:
    """Move features between groups in T [P, K, n] in place: for each move, w_j G[j] (row `rows` of flat_gram
    times `weight`) leaves slot `old` and joins slot `new` of its problem."""
    K, n = T.shape[1], T.shape[2]
    flat = T.view(-1, n)
    for lo in range(0, problem.numel(), MOVE_CHUNK):
        part = slice(lo, lo + MOVE_CHUNK)
        src = flat_gram.index_select(0, rows[part]).mul_(weight[part, None])
        flat.index_add_(0, problem[part] * K + new[part], src)
        flat.index_add_(0, problem[part] * K + old[part], src, alpha=-1)


def gram_matrices(units: Tensor, out: Tensor | None = None) -> Tensor:
    """Cosines between the rows of each set of unit directions [B, n, d] -> [B, n, n]; by symmetry only 3/4 of
    the products are computed (the upper-right block is the transpose of the lower-left one)."""
    B, n, _ = units.shape
    out = torch.empty(B, n, n, dtype=units.dtype, device=units.device) if out is None else out
    h = n // 2
    if n < 64:
        return torch.bmm(units, units.transpose(1, 2), out=out)
    torch.bmm(units, units[:, :h].transpose(1, 2), out=out[:, :, :h])
    torch.bmm(units[:, h:], units[:, h:].transpose(1, 2), out=out[:, h:, h:])
    out[:, :h, h:] = out[:, h:, :h].transpose(1, 2)
    return out


class _StartBuilder:
    """Start assignments and their T for k = 2, 3, ...: the nearest of the first k k-means++ centres (first on
    ties). Going from k-1 to k centres only moves the features the new centre wins, so T of k is T of k-1 plus
    those moves (n per move) rather than a fresh [k, n] x [n, n] product."""

    def __init__(self, cos_c: Tensor, gw: Tensor, w: Tensor, valid: Tensor, flat_gram: Tensor) -> None:
        B, R, k_top, n = cos_c.shape
        self.cos_c, self.valid, self.flat_gram = cos_c, valid, flat_gram
        self.T = torch.zeros(B * R, k_top, n, dtype=cos_c.dtype, device=cos_c.device)
        self.T[:, 0] = gw.repeat_interleave(R, 0)
        self.best = cos_c[:, :, 0].clone()
        self.idx = torch.zeros(B, R, n, dtype=torch.int64, device=cos_c.device)
        self.wflat = w.repeat_interleave(R, 0).reshape(-1)  # [(B*R) * n]
        self.row = (torch.arange(B * R, device=cos_c.device) // R) * n
        self.k = 1

    def next(self) -> tuple[Tensor, Tensor]:
        """Advance to k + 1 centres: (assignment [B, R, n], T [B * R, k_top, n]); both are live views."""
        c = self.k
        better = self.cos_c[:, :, c] > self.best
        moved = (better & self.valid[:, None, :]).reshape(-1).nonzero().squeeze(1)  # as (b * R + r) * n + j
        n = self.idx.shape[2]
        p = moved // n
        _apply_moves(self.T, self.flat_gram, self.row.index_select(0, p) + moved % n,
                     self.wflat.index_select(0, moved), p, self.idx.view(-1).index_select(0, moved),
                     torch.full_like(moved, c))
        self.best = torch.where(better, self.cos_c[:, :, c], self.best)
        self.idx.masked_fill_(better, c)
        self.k += 1
        return self.idx, self.T


def _first_argmax(sims: Tensor) -> Tensor:
    """Index of the largest value along dim 1 of [P, K, n], the first one on ties (as argmax)."""
    K = sims.shape[1]
    if K > 255:
        return sims.max(1).indices
    # amax and a uint8 vote run several times faster on CPU than max(dim) with indices, with the same answer.
    top = sims.amax(1, keepdim=True)
    rank = torch.arange(K, 0, -1, dtype=torch.uint8, device=sims.device).view(1, K, 1)
    return K - ((sims == top) * rank).amax(1).long()


@dataclass
class _Runs:
    """Converged k-means runs of one bucket of problems."""

    labels: Tensor  # int64 [P, n]
    norms: Tensor  # float64 [P]: sum over groups of |sum_j w_j u_j|
    iterations: Tensor  # int64 [P]


def lloyd_gram(T: Tensor, a: Tensor, k_of: Tensor, b_of: Tensor, runnable: Tensor, w: Tensor, valid: Tensor,
               flat_gram: Tensor, max_iter: int) -> _Runs:
    """Weighted spherical k-means on Gram matrices for a batch of problems, each leaving once converged.

    T: [P, K, n] with T[p, c, i] = sum_{j in c} w_j G[j, i] for the start assignment a [P, n] (slots >= k_of
    unused); b_of [P]: embedding of each problem (rows of w, valid [B, n] and flat_gram [B * n, n]).
    """
    P, K, n = T.shape
    dev = T.device
    labels = torch.full((P, n), -1, dtype=torch.int64, device=dev)
    norms = torch.zeros(P, dtype=torch.float64, device=dev)
    iters = torch.full((P,), max_iter, dtype=torch.int64, device=dev)
    ids = runnable.nonzero().squeeze(1)
    if ids.numel() < P:
        T, a = T.index_select(0, ids), a.index_select(0, ids)
    slot = torch.arange(K, device=dev)
    compacted = True  # the per-problem rows below need (re)building
    for it in range(max_iter + 1):
        if compacted:
            pb = b_of.index_select(0, ids)
            pw, pvalid = w.index_select(0, pb), valid.index_select(0, pb)  # [Pa, n]
            in_k = slot[None, :] < k_of.index_select(0, ids)[:, None]  # [Pa, K]
            compacted = False
        own = T.gather(1, a[:, None, :]).squeeze(1)
        norm2 = torch.zeros(ids.numel(), K, dtype=T.dtype, device=dev).scatter_add_(1, a, own * pw)
        if it == max_iter:  # out of iterations: keep the last assignment as it is
            done = torch.ones(ids.numel(), dtype=torch.bool, device=dev)
        else:
            count = torch.zeros_like(norm2).scatter_add_(1, a, pvalid.to(T.dtype))
            # Slots beyond k, and groups that lost every member, attract nobody.
            bias = torch.where(in_k & (count > 0), 0.0, -torch.inf).to(T.dtype)
            inv = torch.where(norm2 > ZERO_NORM**2, norm2.clamp_min(ZERO_NORM**2).rsqrt(), 0.0)
            new = _first_argmax(torch.addcmul(bias[:, :, None], T, inv[:, :, None]))  # [Pa, n]
            moved = (new != a) & pvalid
            done = ~moved.any(1)
        if bool(done.any()):
            fin = ids[done]
            labels[fin] = a[done]
            norms[fin] = norm2[done].double().clamp_min(0).sqrt().sum(1)
            iters[fin] = iters[fin].clamp_max(it)
            if bool(done.all()):
                break
        flat = moved.view(-1).nonzero().squeeze(1)  # moves as p * n + j
        p = flat // n
        _apply_moves(T, flat_gram, pb.index_select(0, p) * n + flat % n, pw.view(-1).index_select(0, flat), p,
                     a.view(-1).index_select(0, flat), new.view(-1).index_select(0, flat))
        a = torch.where(moved, new, a)
        # Early exit per problem: converged runs leave the batch (compacted once enough of them have).
        if int(done.sum()) * 8 >= ids.numel():
            keep = (~done).nonzero().squeeze(1)
            ids, T, a = ids.index_select(0, keep), T.index_select(0, keep), a.index_select(0, keep)
            compacted = True
    return _Runs(labels, norms, iters)


# Problems are bucketed by k into slot widths BUCKET, 2*BUCKET, ...: k in (width - BUCKET, width] share one
# padded T, so little padding is scanned and there are only k_max / BUCKET batches, not one per k.
BUCKET = 4


def gram_path(gram: Tensor, weights: Tensor, config: GroupConfig) -> GramPath:
    """The best of `restarts` weighted spherical k-means runs for every k = 1..k_max of each embedding.

    gram: [B, n, n] cosines between the active unit directions of each embedding (padded).
    weights: [B, n] activation mass of each active feature, 0 for padding.
    """
    B, n = weights.shape
    dev = gram.device
    K, R = config.k_max, config.restarts
    valid = weights > 0
    w = torch.where(valid, weights, 0).to(gram.dtype)
    total = weights.double().clamp_min(0).sum(1)  # [B]
    labels = torch.full((B, K, n), -1, dtype=torch.int64, device=dev)
    objective = torch.full((B, K), torch.nan, dtype=torch.float64, device=dev)
    min_share = torch.zeros(B, K, dtype=torch.float64, device=dev)
    feasible = torch.zeros(B, K, dtype=torch.bool, device=dev)
    iterations = torch.zeros(B, K, dtype=torch.int64, device=dev)
    has = valid.any(1)
    gw = torch.bmm(gram, w[:, :, None]).squeeze(-1)  # [B, n]
    labels[:, 0] = torch.where(valid, 0, -1)
    objective[has, 0] = ((gw * w).sum(1).double().clamp_min(0).sqrt() / total)[has]
    min_share[has, 0], feasible[has, 0] = 1.0, True
    k_top = min(K, n)
    if k_top < 2 or not bool(has.any()):
        return GramPath(labels, objective, min_share, feasible, iterations)

    flat_gram = gram.reshape(B * n, n)
    centers, distinct = kmeanspp_batched(flat_gram, torch.where(valid, weights, 0), init_uniforms(config).to(dev),
                                         k_top)
    cos_c = flat_gram[(torch.arange(B, device=dev) * n).view(B, 1, 1) + centers]  # [B, R, k_top, n]
    starts = _StartBuilder(cos_c, gw, w, valid, flat_gram)
    Kk = k_top - 1
    run_labels = torch.full((B, Kk, R, n), -1, dtype=torch.int64, device=dev)
    run_norms = torch.zeros(B, Kk, R, dtype=torch.float64, device=dev)
    run_iters = torch.zeros(B, Kk, R, dtype=torch.int64, device=dev)
    runnable = torch.arange(2, k_top + 1, device=dev).view(1, Kk, 1) <= distinct[:, None, :]  # [B, Kk, R]
    for lo in range(2, k_top + 1, BUCKET):
        hi = min(lo + BUCKET - 1, k_top)
        nk = hi - lo + 1
        a0 = torch.empty(B, nk, R, n, dtype=torch.int64, device=dev)
        T = torch.empty(B, nk, R, hi, n, dtype=gram.dtype, device=dev)
        for q in range(nk):
            idx, T_k = starts.next()
            a0[:, q] = idx
            T[:, q] = T_k.view(B, R, k_top, n)[:, :, :hi]
        T = T.view(B * nk * R, hi, n)
        k_of = torch.arange(lo, hi + 1, device=dev).repeat_interleave(R).repeat(B)
        b_of = torch.arange(B, device=dev).repeat_interleave(nk * R)
        runs = lloyd_gram(T, a0.reshape(-1, n), k_of, b_of, runnable[:, lo - 2:hi - 1].reshape(-1), w, valid,
                          flat_gram, config.max_iter)
        run_labels[:, lo - 2:hi - 1] = runs.labels.view(B, nk, R, n)
        run_norms[:, lo - 2:hi - 1] = runs.norms.view(B, nk, R)
        run_iters[:, lo - 2:hi - 1] = runs.iterations.view(B, nk, R)

    # Keep the best restart of each (embedding, k): the first whose objective ties the highest.
    obj = torch.where(runnable, run_norms, -torch.inf) / total.clamp_min(1e-300).view(B, 1, 1)
    best_r = (obj >= obj.max(2, keepdim=True).values - RESTART_TIE).to(torch.int8).argmax(2, keepdim=True)
    kept = run_labels.gather(2, best_r[..., None].expand(B, Kk, 1, n)).squeeze(2)  # [B, Kk, n]
    ok = runnable.any(2)  # [B, Kk]
    kept = torch.where(ok[..., None] & valid[:, None, :], kept, -1)
    shares = torch.zeros(B, Kk, k_top + 1, dtype=torch.float64, device=dev)
    shares.scatter_add_(2, kept % (k_top + 1), weights.double()[:, None, :].expand(B, Kk, n))
    shares = shares[:, :, :k_top] / total.clamp_min(1e-300).view(B, 1, 1)
    in_k = torch.arange(k_top, device=dev)[None, :] < torch.arange(2, k_top + 1, device=dev)[:, None]
    smallest = torch.where(in_k[None], shares, torch.inf).min(2).values
    labels[:, 1:k_top] = kept
    objective[:, 1:k_top] = torch.where(ok, obj.gather(2, best_r).squeeze(2), torch.nan)
    min_share[:, 1:k_top] = torch.where(ok, smallest, 0.0)
    feasible[:, 1:k_top] = ok
    iterations[:, 1:k_top] = run_iters.gather(2, best_r).squeeze(2)
    return GramPath(labels, objective, min_share, feasible, iterations)
