"""Rigidity of a name's depictions: how little its image embeddings vary, measured on their Gram matrices.

For a name with image rows X (m x d) and sample covariance Σ = Xcᵀ Xc / (m - 1) (Xc: rows minus their mean):
- trace      tr(Σ), the total variance;
- logdet     log det(Σ + εI), the generalized variance (ε keeps it finite when m <= d);
- cos_mean / cos_min / cos_max   over the m(m-1)/2 pairs of distinct rows, of cos(x_a, x_b);
- dse        diffusion spectral entropy: K_ab = exp(-|x_a - x_b|² / (2σ²)), diffusion operator P = D⁻¹K
             (D = diag of K's row sums); with λ_i its eigenvalues (real, in [0, 1], since P is similar to the
             PSD matrix D^-½ K D^-½), p_i = λ_i^t / Σ_k λ_k^t and dse = -Σ p_i ln p_i (nats). Identical rows
             give 0; rows much farther apart than σ give ln m.
Every measure is a function of the Gram matrix G = X Xᵀ (m x m), so names are processed in batches of equal m
with batched matrix products and eigendecompositions of m x m matrices, never of d x d covariances:
the non-zero eigenvalues of Σ are those of Gc / (m - 1), Gc = H G H, H = I - 11ᵀ/m, so
log det(Σ + εI) = Σ_i log(μ_i + ε) + (d - m) log ε over the m eigenvalues μ_i of Gc / (m - 1) (m <= d).
Names with fewer than 2 rows have no covariance or pairs: every measure is NaN ("unavailable").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

MEASURES = ("trace", "logdet", "cos_mean", "cos_min", "cos_max", "dse")


@dataclass(frozen=True)
class RigidityBatch:
    """Rigidity measures of a batch of names (NaN where unavailable), each float64 [B]."""

    trace: np.ndarray
    logdet: np.ndarray
    cos_mean: np.ndarray
    cos_min: np.ndarray
    cos_max: np.ndarray
    dse: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The measures by name."""
        return {m: getattr(self, m) for m in MEASURES}


def gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrices of a batch of row sets: x [B, m, d] -> [B, m, m] (float64)."""
    # numpy's stacked matmul runs one BLAS dgemm per set, several times faster on CPU than torch's float64 bmm.
    xd = x.detach().cpu().numpy().astype(np.float64, copy=False)
    return torch.from_numpy(xd @ xd.transpose(0, 2, 1))


def centered(g: torch.Tensor) -> torch.Tensor:
    """Gram matrices of the mean-centred rows: H G H with H = I - 11ᵀ/m, [B, m, m]."""
    row = g.mean(dim=2, keepdim=True)
    col = g.mean(dim=1, keepdim=True)
    return g - row - col + g.mean(dim=(1, 2), keepdim=True)


def covariance_measures(g: torch.Tensor, d: int, epsilon: float, x: torch.Tensor | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """tr(Σ) and log det(Σ + εI) of each row set from its Gram matrix [B, m, m]; x [B, m, d] needed if m > d."""
    b, m, _ = g.shape
    if m < 2:
        nan = np.full(b, np.nan)
        return nan, nan.copy()
    gc = centered(g) / (m - 1)
    trace = torch.diagonal(gc, dim1=1, dim2=2).sum(-1)
    if m <= d:
        mu = torch.linalg.eigvalsh(gc).clamp(min=0.0)
        logdet = torch.log(mu + epsilon).sum(-1) + (d - m) * math.log(epsilon)
    else:
        if x is None:
            raise ValueError("rows are needed for log det when a name has more rows than dimensions")
        xc = x.double() - x.double().mean(dim=1, keepdim=True)
        cov = xc.transpose(1, 2) @ xc / (m - 1)
        lam = torch.linalg.eigvalsh(cov).clamp(min=0.0)
        logdet = torch.log(lam + epsilon).sum(-1)
    return trace.numpy(), logdet.numpy()


def cosine_measures(g: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max cosine over the distinct pairs of each row set, from its Gram matrix [B, m, m]."""
    b, m, _ = g.shape
    if m < 2:
        nan = np.full(b, np.nan)
        return nan, nan.copy(), nan.copy()
    norms = torch.sqrt(torch.diagonal(g, dim1=1, dim2=2).clamp(min=1e-300))
    cos = g / (norms.unsqueeze(2) * norms.unsqueeze(1))
    iu = torch.triu_indices(m, m, offset=1)
    pairs = cos[:, iu[0], iu[1]]  # [B, m(m-1)/2]
    return pairs.mean(1).numpy(), pairs.min(1).values.numpy(), pairs.max(1).values.numpy()


def squared_distances(g: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances [B, m, m] from Gram matrices."""
    diag = torch.diagonal(g, dim1=1, dim2=2)
    return (diag.unsqueeze(2) + diag.unsqueeze(1) - 2 * g).clamp(min=0.0)


def diffusion_spectral_entropy(g: torch.Tensor, sigma: float, t: float = 1.0) -> np.ndarray:
    """Diffusion spectral entropy (nats) of each row set from its Gram matrix [B, m, m]; see the module doc."""
    b, m, _ = g.shape
    if m < 2:
        return np.full(b, np.nan)
    if sigma <= 0:
        raise ValueError(f"dse sigma must be > 0, got {sigma}")
    k = torch.exp(-squared_distances(g) / (2.0 * sigma**2))
    inv_sqrt = k.sum(-1).rsqrt()
    sym = k * inv_sqrt.unsqueeze(2) * inv_sqrt.unsqueeze(1)  # D^-1/2 K D^-1/2, same spectrum as P = D^-1 K
    lam = torch.linalg.eigvalsh(sym).clamp(min=0.0) ** t
    p = lam / lam.sum(-1, keepdim=True)
    h = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return h.clamp(min=0.0).numpy()


def rigidity_batch(x: torch.Tensor, epsilon: float, sigma: float, t: float = 1.0) -> RigidityBatch:
    """All rigidity measures of a batch of row sets of equal size, x [B, m, d]."""
    g = gram(x)
    trace, logdet = covariance_measures(g, x.shape[2], epsilon, x)
    cmean, cmin, cmax = cosine_measures(g)
    return RigidityBatch(trace, logdet, cmean, cmin, cmax, diffusion_spectral_entropy(g, sigma, t))


def pairwise_distance_sample(x: torch.Tensor, per_set: int = 64) -> np.ndarray:
    """Up to per_set pairwise distances of each row set in x [B, m, d] (a deterministic subset), flattened."""
    m = x.shape[1]
    if m < 2:
        return np.zeros(0)
    iu = torch.triu_indices(m, m, offset=1)
    step = max(1, iu.shape[1] // per_set)
    iu = iu[:, ::step][:, :per_set]
    d2 = squared_distances(gram(x))[:, iu[0], iu[1]]
    return torch.sqrt(d2).reshape(-1).numpy()
