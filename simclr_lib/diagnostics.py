"""Diagnostics: the signal-noise decomposition (Definition 5.1), alignment with mu
(Theorem 5.3) and the power-method matrix ``A`` of pre-training (Lemmas 5.1 and 5.2).
"""
from __future__ import annotations

import torch

from .data import Dataset

__all__ = ["decompose", "coefficient_summary", "alignment", "power_matrix", "spectrum"]


def decompose(W: torch.Tensor, W0: torch.Tensor, data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal-noise coefficients of Definition 5.1 from weights.

    Solves ``w_{j,r} = w_{j,r}^(0) + j gamma_{j,r} mu/||mu||^2 + sum_i rho_{j,r,i} xi_i/||xi_i||^2``
    for ``gamma`` (R, 2, m) and ``rho`` (R, 2, m, n), using ``xi_i`` orthogonal to ``mu``.
    Exact (up to float error) for gradient-descent iterates of eq. 3.2's CNN.
    """
    delta = W - W0                                                     # (R, 2, m, d)
    sign = torch.tensor([1.0, -1.0], dtype=W.dtype, device=W.device)[None, :, None]
    gamma = sign * torch.einsum("rjmd,rd->rjm", delta, data.mu)
    xi = data.noise                                                    # (R, n, d)
    gram = torch.bmm(xi, xi.transpose(1, 2))                          # (R, n, n)
    eye = torch.eye(data.n, dtype=W.dtype, device=W.device)
    pad = ~data.mask
    gram = torch.where(pad[:, :, None] | pad[:, None, :], eye.expand_as(gram), gram)
    b = torch.einsum("rjmd,rnd->rnjm", delta, xi).reshape(W.shape[0], data.n, -1)
    coef = torch.linalg.solve(gram, b)                                 # (R, n, 2m)
    norms = torch.diagonal(gram, dim1=1, dim2=2)                       # ||xi_i||^2
    rho = (coef * norms[..., None]).reshape(W.shape[0], data.n, 2, -1).permute(0, 2, 3, 1)
    return gamma, rho * data.mask[:, None, None, :]


def coefficient_summary(gamma: torch.Tensor, rho: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-run summaries, each (R,): max and mean over filters of gamma, of
    ``rho_bar = max(rho, 0)`` (its max over samples per filter) and the min of ``rho_under = min(rho, 0)``."""
    R = gamma.shape[0]
    g = gamma.reshape(R, -1)
    rbar = rho.clamp(min=0).amax(-1).reshape(R, -1)                    # per filter: max_i rho_bar
    return {"gamma_max": g.amax(1), "gamma_mean": g.mean(1),
            "rho_bar_max": rbar.amax(1), "rho_bar_mean": rbar.mean(1),
            "rho_under_min": rho.clamp(max=0).reshape(R, -1).amin(1)}


def alignment(W: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """``|cos(w_r, mu)|`` for every filter: W (R, ..., d), mu (R, d) -> (R, ...)."""
    Wf = W.reshape(W.shape[0], -1, W.shape[-1])
    norms = Wf.norm(dim=-1) * mu.norm(dim=-1, keepdim=True)
    cos = torch.einsum("rkd,rd->rk", Wf, mu) / norms.clamp_min(torch.finfo(Wf.dtype).tiny)
    return cos.abs().reshape(W.shape[:-1])


def _low_rank(data: Dataset, view: Dataset, tau: float, lr: float, run: int):
    """``A = U^T K U`` with U = [Z; Z~] (2n0, d) and K (2n0, 2n0) symmetric, for one run."""
    keep = data.mask[run]
    Z, Zt = data.patch_sum()[run][keep], view.patch_sum()[run][keep]
    n0 = Z.shape[0]
    one = torch.full((n0, n0), 1.0 / n0 ** 2, dtype=Z.dtype, device=Z.device)
    eye = torch.eye(n0, dtype=Z.dtype, device=Z.device) / n0
    B = (eye - one) * (lr / tau)                        # M = sum_ij B_ij (z~_j z_i^T + z_i z~_j^T)
    K = torch.zeros(2 * n0, 2 * n0, dtype=Z.dtype, device=Z.device)
    K[:n0, n0:] = B
    K[n0:, :n0] = B.T
    return torch.cat([Z, Zt]), K


def power_matrix(data: Dataset, view: Dataset, tau: float, lr: float, run: int = 0) -> torch.Tensor:
    """The matrix ``A = eta M`` of Lemma 5.1 (d, d) for one run:

    ``M = (1/(tau n0)) sum_i (z~_i z_i^T + z_i z~_i^T) - (1/(tau n0^2)) sum_ij (z~_j z_i^T + z_i z~_j^T)``,
    ``z = x1 + x2``, so that near a small start one GD step is ``W <- W (I + A)``.
    """
    U, K = _low_rank(data, view, tau, lr, run)
    return U.T @ K @ U


def spectrum(data: Dataset, view: Dataset, tau: float, lr: float, run: int = 0,
             k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenvalues (descending) of ``A`` and its top eigenvector (Lemma 5.2).

    Uses ``A = U^T K U = Q (R K R^T) Q^T`` with ``U^T = Q R``: cost ``O(d n0^2)``, not ``O(d^3)``.
    """
    U, K = _low_rank(data, view, tau, lr, run)
    Q, Rm = torch.linalg.qr(U.T.to(torch.float64))
    evals, evecs = torch.linalg.eigh(Rm @ K.to(torch.float64) @ Rm.T)
    order = torch.argsort(evals, descending=True)
    top = Q @ evecs[:, order[0]]
    return evals[order[:k]].to(U.dtype), top.to(U.dtype)
