"""The two networks of the paper, batched over ``R`` runs.

* :func:`cnn_logits` -- the two-layer CNN of eq. 3.2,
  ``f(W, x) = F_{+1}(W_{+1}, x) - F_{-1}(W_{-1}, x)``,
  ``F_j = (1/m) sum_r sum_p sigma(<w_{j,r}, x^(p)>)``, ``sigma(z) = max(0, z)^q``,
  with the second layer fixed.
* :func:`encode` -- the linear CNN encoder of pre-training,
  ``[F(W, x)]_r = <w_r, x^(1)> + <w_r, x^(2)>`` with ``2m`` filters.
"""
from __future__ import annotations

import torch

__all__ = ["activation", "activation_grad", "cnn_logits", "encode", "init_cnn", "init_encoder",
           "split_filters"]


def activation(z: torch.Tensor, q: float) -> torch.Tensor:
    """``sigma(z) = max(0, z)^q`` (q = 1 is ReLU)."""
    return torch.relu(z) if q == 1 else torch.relu(z) ** q


def activation_grad(z: torch.Tensor, q: float) -> torch.Tensor:
    """``sigma'(z) = q max(0, z)^(q-1)`` (the step function for ReLU)."""
    return (z > 0).to(z.dtype) if q == 1 else q * torch.relu(z) ** (q - 1)


def cnn_preactivations(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``<w_{j,r}, x_i^(p)>`` for W (R, 2, m, d) and patches x (R, n, P, d) -> (R, 2, m, n, P)."""
    R, _, m, d = W.shape
    _, n, P, _ = x.shape
    z = torch.bmm(W.reshape(R, 2 * m, d), x.reshape(R, n * P, d).transpose(1, 2))
    return z.reshape(R, 2, m, n, P)


def cnn_logits(W: torch.Tensor, x: torch.Tensor, q: float) -> torch.Tensor:
    """The CNN output ``f(W, x_i)`` of eq. 3.2: W (R, 2, m, d), x (R, n, P, d) -> (R, n)."""
    h = activation(cnn_preactivations(W, x), q).sum(-1).mean(2)   # (R, 2, n)
    return h[:, 0] - h[:, 1]


def encode(W: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The linear encoder ``F(W, x) = W (x1 + x2)``: W (R, 2m, d), z = x1 + x2 (R, n, d) -> (R, n, 2m)."""
    return torch.bmm(z, W.transpose(1, 2))


def _gaussian(gens: list[torch.Generator], shape: tuple, std: float, dtype, device) -> torch.Tensor:
    out = torch.stack([torch.randn(shape, generator=g, dtype=dtype) for g in gens])
    return out.mul_(std).to(device=device)


def init_cnn(gens: list[torch.Generator], m: int, d: int, sigma0: float,
             dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Gaussian start ``w_{j,r}^(0) ~ N(0, sigma0^2 I)``: (R, 2, m, d), one generator per run."""
    return _gaussian(gens, (2, m, d), sigma0, dtype, device)


def init_encoder(gens: list[torch.Generator], m: int, d: int, sigma0: float,
                 dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Gaussian start of the 2m encoder filters: (R, 2m, d)."""
    return _gaussian(gens, (2 * m, d), sigma0, dtype, device)


def split_filters(W: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """The random split of Section 3.3: (R, 2m, d) -> (R, 2, m, d).

    The 2m pre-trained filters are permuted uniformly at random; the first half
    initialises ``W_{+1}``, the second ``W_{-1}`` (Lemma 5.4).
    """
    R, two_m, d = W.shape
    perm = torch.stack([torch.randperm(two_m, generator=g) for g in gens]).to(W.device)
    return torch.gather(W, 1, perm[..., None].expand(R, two_m, d)).reshape(R, 2, two_m // 2, d)
