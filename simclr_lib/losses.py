"""Losses, computed stably and batched over runs.

* :func:`logistic` -- ``l(z) = log(1 + e^{-z})`` as ``softplus(-z)`` (eq. 3.2's training loss).
* :func:`infonce` -- the paper's SimCLR loss with inner-product similarity and temperature tau
  (Section 3.2): ``-(1/n0) sum_i log[exp(<h_i, h~_i>/tau) / sum_j exp(<h_i, h~_j>/tau)]``.
* :func:`nt_xent` -- the practical symmetric NT-Xent with cosine similarity (Chen et al. 2020).

Every loss takes an optional ``mask`` (R, n) so runs of different sizes share one batch,
and returns one value per run, shape (R,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["logistic", "logistic_grad", "infonce", "nt_xent", "infonce_logits"]


def logistic(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(-z))`` elementwise, stable for any z."""
    return F.softplus(-z)


def logistic_grad(z: torch.Tensor) -> torch.Tensor:
    """``l'(z) = -1 / (1 + e^z)``."""
    return -torch.sigmoid(-z)


def _mask(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones(h.shape[:2], dtype=torch.bool, device=h.device) if mask is None else mask


def infonce_logits(h: torch.Tensor, h_tilde: torch.Tensor, tau: float) -> torch.Tensor:
    """``s_ij = <h_i, h~_j> / tau``: (R, n, k) x (R, n, k) -> (R, n, n)."""
    return torch.bmm(h, h_tilde.transpose(1, 2)) / tau


def infonce(h: torch.Tensor, h_tilde: torch.Tensor, tau: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's InfoNCE loss per run, (R,); h, h_tilde (R, n, k) are the two views' embeddings."""
    mask = _mask(h, mask)
    s = infonce_logits(h, h_tilde, tau).masked_fill(~mask[:, None, :], float("-inf"))
    per = torch.logsumexp(s, dim=2) - torch.diagonal(s, dim1=1, dim2=2)
    per = torch.where(mask, per, torch.zeros_like(per))
    return per.sum(1) / mask.sum(1)


def nt_xent(h: torch.Tensor, h_tilde: torch.Tensor, tau: float,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric NT-Xent per run, (R,): cosine similarity over the 2n views, self excluded."""
    mask = _mask(h, mask)
    R, n, _ = h.shape
    u = F.normalize(torch.cat([h, h_tilde], dim=1), dim=2)            # (R, 2n, k)
    s = torch.bmm(u, u.transpose(1, 2)) / tau                         # (R, 2n, 2n)
    valid = torch.cat([mask, mask], dim=1)
    eye = torch.eye(2 * n, dtype=torch.bool, device=h.device)
    s = s.masked_fill(eye | ~valid[:, None, :], float("-inf"))
    idx = torch.arange(2 * n, device=h.device)
    pos = s[:, idx, (idx + n) % (2 * n)]                               # (R, 2n) the positive pair
    per = torch.logsumexp(s, dim=2) - pos
    per = torch.where(valid, per, torch.zeros_like(per))
    return per.sum(1) / valid.sum(1)
