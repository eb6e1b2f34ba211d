"""Supervised GD of eq. 3.2's CNN at a cost that does not grow with ``d`` (method ``"gram"``).

Direct training from a Gaussian start (Theorem 4.3) only ever sees inner products of the
``2m`` start filters ``w0``, the signal ``mu = ||mu|| e_1`` and the ``n`` training noise
patches ``xi_i`` (Definition 5.1: the filters stay in ``w0 + span(mu, xi)``). Split off the
first coordinate: ``<w0, mu> = ||mu|| w0[0]`` with ``w0[0] ~ N(0, sigma0^2)``, and the other
``d - 1`` coordinates of the ``k = 2m + n`` vectors ``V = D Z`` (``D`` = diag of ``sigma0``
and ``sigma_p``, ``Z`` a ``k x (d-1)`` standard Gaussian matrix). Their Gram matrix
``Z Z^T`` is Wishart ``W_k(I, d - 1)``, drawn exactly by the Bartlett decomposition
``Z Z^T = L L^T`` (``L`` lower triangular, ``L_ii^2 ~ chi^2_{d-i}`` for ``i = 1..k``,
``L_ij ~ N(0, 1)`` below the diagonal) in ``O(k^2)`` draws and ``O(k^3)`` flops. With
``Z = L Q`` (``Q`` orthonormal rows, independent of ``L``), a test patch ``xi' ~ N(0,
sigma_p^2 I)`` independent of ``Z`` has ``Q xi' ~ N(0, sigma_p^2 I_k)`` exactly, so its
products with the ``k`` vectors are ``D L u``, ``u ~ N(0, sigma_p^2 I_k)``. Everything the
coefficient-space stepper needs is therefore drawn exactly *in distribution*, not per seed
equal to the weight-space runs (``tests/test_gram.py`` compares the two over many seeds).
Labels, flips and signal positions come from the same streams as ``make_dataset``'s, so
they are per-seed equal; the Bartlett factor and ``w0[0]`` come from stream ``"init"``, the
test projections after the test labels from stream ``"test"``. Cost per run:
``O(k^3 + k^2 n_test)`` set-up and ``O(m n^2)`` per step, at any ``d >= k + 1``.

Pre-training (not implemented here). SimCLR's encoder gradient is ``dL/dW = (dL/dH)^T U``
with ``U = [z; z~]``, ``z_i = y_i mu + xi_i``, ``z~_i = y_i mu + xi~_i``, so the encoder
stays in ``W0 + span(mu, xi, xi~)`` and the whole pipeline (pre-training, the split,
fine-tuning, test) is a function of the Gram matrix of ``k = 2m + 1 + 2 n0 + n`` vectors and
the test projections on them: the same construction is exact there too, with ``k = 841`` at
``n0 = 400, n = 20``. It pays only for ``d >> k`` and needs a second stepper written on
``(2m, k)`` coefficients; it is left for later work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ._validate import check_device, check_dtype, check_float, check_int, check_seeds, per_run
from .config import DataConfig, SupervisedConfig
from .data import stream
from .training import CoefficientSpace, History, fit

__all__ = ["GramData", "bartlett", "draw", "GramSpace", "run_supervised"]


def bartlett(k: int, df: int, gen: torch.Generator) -> torch.Tensor:
    """The lower-triangular Bartlett factor ``L`` (k, k) of a Wishart ``W_k(I, df)`` matrix
    ``L L^T`` (float64): ``L_ii = sqrt(chi^2_{df - i})``, ``i = 0..k-1``, ``N(0, 1)`` below."""
    if df < k:
        raise ValueError(f"the Gram method needs d - 1 >= 2m + n = {k}, got d - 1 = {df}")
    dfs = torch.arange(df, df - k, -1, dtype=torch.float64)
    diag = (2 * torch._standard_gamma(dfs / 2, generator=gen)).sqrt()
    L = torch.randn(k, k, generator=gen, dtype=torch.float64).tril_(-1)
    return L + torch.diag(diag)


@dataclass
class GramData:
    """Everything the coefficient-space GD of ``R`` runs needs, drawn without any d-vector.

    Shapes: labels (R, n) and (R, n_test); ``p_mu`` (R, 2, m) ``<w0, mu>``; ``w0_sq`` (R, 2, m)
    ``||w0||^2``; ``p_xi`` (R, 2, m, n) ``<w0, xi_k>``; ``K`` (R, n, n) ``<xi_i, xi_k>``;
    ``p_xi_test`` (R, 2, m, n_test) ``<w0, xi'_l>``; ``K_test`` (R, n, n_test) ``<xi_i, xi'_l>``.
    """

    y: torch.Tensor
    y_true: torch.Tensor
    y_test: torch.Tensor
    y_true_test: torch.Tensor
    mu_norm: torch.Tensor
    p_mu: torch.Tensor
    w0_sq: torch.Tensor
    p_xi: torch.Tensor
    K: torch.Tensor
    p_xi_test: torch.Tensor
    K_test: torch.Tensor

    @property
    def n(self) -> int:
        return self.y.shape[1]

    @property
    def mask(self) -> torch.Tensor:
        return torch.ones_like(self.y, dtype=torch.bool)

    def weights(self) -> torch.Tensor:
        return torch.full_like(self.y, 1.0 / self.n)


def _labels(gen: torch.Generator, k: int, p: float):
    """The label draws of ``make_dataset`` in its order: clean label, flip, signal position."""
    yt = torch.randint(0, 2, (k,), generator=gen).to(torch.float64) * 2 - 1
    flip = torch.rand(k, generator=gen, dtype=torch.float64) < p
    torch.randint(0, 2, (k,), generator=gen)     # the signal position: the CNN sums patches
    return torch.where(flip, -yt, yt), yt


def draw(seeds: Sequence[int], data: DataConfig, cfg: SupervisedConfig, mu_norms: Sequence[float],
         n: int, device, dtype) -> GramData:
    """Draw the :class:`GramData` of one run per seed (``mu_norms`` per run, may be 0)."""
    m, nt, d = cfg.m, cfg.n_test, data.d
    s0, sp = cfg.init_std(data), data.sigma_p
    k = 2 * m + n
    Dg = torch.tensor([s0] * (2 * m) + [sp] * n, dtype=torch.float64)
    out: dict[str, torch.Tensor] = {}
    for r, (seed, a) in enumerate(zip(seeds, mu_norms)):
        y, yt = _labels(stream(seed, "train"), n, data.p)
        gi = stream(seed, "init")
        e1 = torch.randn(2 * m, generator=gi, dtype=torch.float64) * s0    # w0[0]
        L = Dg[:, None] * bartlett(k, d - 1, gi)                           # V = L Q
        Kall = L @ L.T                                                     # (k, k) Gram of V
        gt = stream(seed, "test")
        y2, yt2 = _labels(gt, nt, data.p)
        proj = L @ (torch.randn(k, nt, generator=gt, dtype=torch.float64) * sp)   # (k, nt)
        vals = {"y": y, "y_true": yt, "y_test": y2, "y_true_test": yt2,
                "mu_norm": torch.tensor(float(a), dtype=torch.float64),
                "p_mu": (a * e1).view(2, m), "w0_sq": (e1 ** 2 + Kall.diagonal()[:2 * m]).view(2, m),
                "p_xi": Kall[:2 * m, 2 * m:].reshape(2, m, n), "K": Kall[2 * m:, 2 * m:],
                "p_xi_test": proj[:2 * m].reshape(2, m, nt), "K_test": proj[2 * m:]}
        for key, v in vals.items():             # written per run: no float64 copy of the batch
            if key not in out:
                out[key] = torch.empty((len(seeds), *v.shape), dtype=dtype, device=device)
            out[key][r] = v
    return GramData(**out)


class GramSpace(CoefficientSpace):
    """The coefficient-space stepper (Definition 5.1) on a :class:`GramData` draw."""

    method = "gram"

    def __init__(self, g: GramData, q: float, lr: float):   # noqa: D107 - no super().__init__
        self.train, self.q, self.lr, self.g = g, q, lr, g
        self.y, self.wts, self.yt, self.yt_test = g.y, g.weights(), g.y_true, g.y_true_test
        self.mu2 = g.mu_norm ** 2
        self.xi2 = g.K.diagonal(dim1=1, dim2=2).clone()
        self.p_mu, self.p_mu_test, self.p_xi, self.p_xi_test = g.p_mu, g.p_mu, g.p_xi, g.p_xi_test
        self.G = g.K / self.xi2[..., None]
        self.G_test = g.K_test / self.xi2[..., None]
        R, _, m, n = g.p_xi.shape
        self.W0 = g.p_mu                         # only its dtype and device are read
        self.gamma = torch.zeros(R, 2, m, dtype=g.y.dtype, device=g.y.device)
        self.rho = torch.zeros(R, 2, m, n, dtype=g.y.dtype, device=g.y.device)
        self.sgn = torch.tensor([1.0, -1.0], dtype=g.y.dtype, device=g.y.device)[:, None]
        self.pn = torch.stack([self.yt > 0, self.yt < 0], 1).to(g.y.dtype)
        self.wy = self.wts * self.y
        self.rho_scale = (-lr / m) * self.sgn[None, :, :, None]
        self.gamma_scale = (-lr / m) * self.mu2[:, None, None]

    def weights(self) -> torch.Tensor:
        raise ValueError("method='gram' never forms the d-dimensional filters; use 'coefficient'")

    def alignment(self) -> torch.Tensor:
        """``|cos(w_{j,r}, mu)|`` (R, 2, m) from the Gram matrix: with ``c_i = rho_i/||xi_i||^2``,
        ``||w||^2 = ||w0||^2 + (gamma^2 + 2 j gamma <w0, mu>)/||mu||^2 + 2 <c, <w0, xi>> + c K c``."""
        g, mu2 = self.g, self.mu2[:, None, None]
        c = self.rho / self.xi2[:, None, None, :]
        jg = self.sgn * self.gamma
        w_sq = (g.w0_sq + (self.gamma ** 2 + 2 * jg * g.p_mu) / mu2 + 2 * (c * g.p_xi).sum(-1)
                + torch.einsum("rjmi,rik,rjmk->rjm", c, g.K, c))
        return ((g.p_mu + jg) / (w_sq.clamp(min=0).sqrt() * g.mu_norm[:, None, None])).abs()


def run_supervised(seeds: int | Sequence[int], data: DataConfig = DataConfig(),
                   cfg: SupervisedConfig = SupervisedConfig(), snr=None, n=None,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                   record: bool = True) -> History:
    """Direct supervised training (Theorem 4.3) by the Gram method: the same History as
    :func:`~simclr_lib.pipelines.run_supervised` (no filters: ``final["W"]`` is None,
    ``train``/``test``/``W0`` are None; the draw is ``hist.gram``), equal in distribution."""
    seeds = check_seeds(seeds)
    device, dtype = check_device(device), check_dtype(dtype)
    n = cfg.n if n is None else n
    if isinstance(n, (list, tuple)) and len(set(n)) > 1:
        raise ValueError("method='gram' needs one n for all runs")
    n = check_int("n", n[0] if isinstance(n, (list, tuple)) else n)
    snrs = [check_float("snr", s, low=0.0, low_open=True)
            for s in per_run("snr", data.snr if snr is None else snr, len(seeds))]
    if data.d - 1 < 2 * cfg.m + n:
        raise ValueError(f"method='gram' needs d - 1 >= 2m + n = {2 * cfg.m + n}, got d = {data.d}")
    g = draw(seeds, data, cfg, [data.mu_norm(s) for s in snrs], n, device, dtype)
    stepper = GramSpace(g, cfg.q, cfg.step_size(data))
    hist = fit(stepper, g.y_test, g.weights(), cfg.steps, cfg.record_every, coefficients=record)
    hist.lr, hist.gram = stepper.lr, g
    return hist
