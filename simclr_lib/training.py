"""Full-batch gradient descent, batched over runs.

* Supervised training of eq. 3.2's CNN (direct, Theorem 4.3; fine-tuning, Theorem 5.5)
  goes through one small interface, :class:`Stepper`, with two exact implementations:
  :class:`WeightSpace` (filters in R^d) and :class:`CoefficientSpace` (the coefficients
  gamma, rho of Definition 5.1, ``O(m n^2)`` per step instead of ``O(m n d)``).

SimCLR pre-training of the linear encoder (Section 3.2) is :mod:`simclr_lib.pretraining`; it
records a :class:`History` like :func:`fit` does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .data import Dataset
from .diagnostics import alignment, coefficient_summary, decompose
from .losses import logistic, logistic_grad
from .models import activation, activation_grad, cnn_logits, cnn_preactivations
from .progress import steps as _steps

__all__ = ["Stepper", "WeightSpace", "CoefficientSpace", "make_stepper", "choose_method", "fit",
           "History", "DivergenceError"]


class DivergenceError(RuntimeError):
    """Gradient descent produced a non-finite value."""


def _diverged(step: int, lr) -> DivergenceError:
    return DivergenceError(f"gradient descent diverged at step {step} (non-finite loss or weights); "
                           f"try a smaller step size lr (now {lr})")


class Stepper(Protocol):
    """One GD step of the CNN of eq. 3.2 on the logistic loss, for ``R`` runs at once."""

    method: str

    def step(self) -> torch.Tensor:
        """Take one GD step; return the training margins ``y_i f(W, x_i)`` (R, n) before it."""

    def margins(self) -> torch.Tensor:
        """Training margins ``y_i f(W, x_i)`` (R, n) at the current weights."""

    def test_logits(self) -> torch.Tensor:
        """``f(W, x)`` on the test set (R, n_test)."""

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma (R, 2, m) and rho (R, 2, m, n) of Definition 5.1."""

    def weights(self) -> torch.Tensor:
        """The filters (R, 2, m, d)."""


_LANES = 64   # a multiple of the step of every CPU vector loop (2 x 16 float32 lanes, AVX-512)


def _per_run(f, x: torch.Tensor) -> torch.Tensor:
    """``f(x)`` for an elementwise ``f`` (any chain of torch ops), run by run: x (R, ...).

    torch's CPU kernels of sigmoid, softplus and pow (exponents other than 1, 2, 3) run a
    vectorised body and a scalar tail that can differ in the last bit, and on a contiguous
    tensor the tail is the end of the whole batch, so a run's values would depend on its
    batch-mates. Padding each run to a multiple of ``_LANES`` values leaves no tail at all
    (bit for bit with one torch thread; tests/test_reliability.py).
    """
    R, L = x.shape[0], x[0].numel()
    buf = x.new_zeros(R, -(-L // _LANES) * _LANES)
    buf[:, :L] = x.reshape(R, L)
    return f(buf)[:, :L].reshape(x.shape)


def _exact_pow(q: float) -> bool:
    """``max(0, z)^q`` and ``q max(0, z)^(q-1)`` use exact multiplications (no pow kernel)."""
    return q in (1, 2, 3)


_SIGN = (1.0, -1.0)   # j = +1 for W_{+1} (index 0), j = -1 for W_{-1} (index 1)


def _sign(ref: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_SIGN, dtype=ref.dtype, device=ref.device)


class WeightSpace:
    """Weight-space GD on patches ``x`` (R, n, P, d); works for any patch data (also real images)."""

    method = "weight"

    def __init__(self, W0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, wts: torch.Tensor,
                 x_test: torch.Tensor, q: float, lr: float, train: Dataset | None = None):
        self.W0, self.W = W0, W0.clone(memory_format=torch.contiguous_format)
        self.x, self.y, self.wts, self.x_test = x, y, wts, x_test
        self.q, self.lr, self.train = q, lr, train

    _BLOCK = 2 ** 21   # patch numbers per block of samples (8 MB in float32): stays in cache

    def step(self) -> torch.Tensor:
        R, _, m, d = self.W.shape
        n, P = self.x.shape[1:3]
        scale = _sign(self.W)[None, :, None, None, None] * (-self.lr / m)
        W = self.W.view(R, 2 * m, d)
        delta = torch.zeros_like(W)                                        # -lr * grad
        margin = torch.empty_like(self.y)
        # A sample's share of the gradient needs only its own margin, so the step runs over
        # blocks of samples: each block's patches are read twice (W x^T, then coef x) while
        # they are still in cache (measured up to 1.4x at n = 4096).
        block = max(16, self._BLOCK // (P * d))      # not R: a run's result is its batch's
        act = activation if _exact_pow(self.q) else lambda t, q: _per_run(lambda u: activation(u, q), t)
        act_grad = (activation_grad if _exact_pow(self.q)
                    else lambda t, q: _per_run(lambda u: activation_grad(u, q), t))
        for a in range(0, n, block):
            b = min(a + block, n)
            x = self.x[:, a:b].reshape(R, (b - a) * P, d)
            z = torch.bmm(W, x.transpose(1, 2)).view(R, 2, m, b - a, P)    # (R, 2, m, B, P)
            h = act(z, self.q).sum(-1).mean(2)                             # (R, 2, B)
            margin[:, a:b] = self.y[:, a:b] * (h[:, 0] - h[:, 1])
            lg = _per_run(logistic_grad, margin[:, a:b])
            g = self.wts[:, a:b] * lg * self.y[:, a:b]                     # dL/df_i
            coef = act_grad(z, self.q) * g[:, None, None, :, None] * scale
            delta.baddbmm_(coef.reshape(R, 2 * m, (b - a) * P), x)
        W.add_(delta)
        return margin

    def _cnn_logits(self, x: torch.Tensor) -> torch.Tensor:
        if _exact_pow(self.q):
            return cnn_logits(self.W, x, self.q)
        z = _per_run(lambda u: activation(u, self.q), cnn_preactivations(self.W, x))
        h = z.sum(-1).mean(2)
        return h[:, 0] - h[:, 1]

    def margins(self) -> torch.Tensor:
        return self.y * self._cnn_logits(self.x)

    def test_logits(self) -> torch.Tensor:
        return self._cnn_logits(self.x_test)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.train is None:
            raise ValueError("coefficients need the two-patch training Dataset (train=...)")
        return decompose(self.W, self.W0, self.train)

    def weights(self) -> torch.Tensor:
        return self.W


class CoefficientSpace:
    """Exact GD on the coefficients of Definition 5.1.

    ``w_{j,r} = w_{j,r}^(0) + j gamma_{j,r} mu/||mu||^2 + sum_i rho_{j,r,i} xi_i/||xi_i||^2``.
    With xi orthogonal to mu, every inner product the CNN needs is
    ``<w, mu> = <w0, mu> + j gamma`` and ``<w, xi_k> = <w0, xi_k> + sum_i rho_i <xi_i, xi_k>/||xi_i||^2``,
    so a step costs ``O(R m n^2)``; test inner products are computed once.
    """

    method = "coefficient"

    def __init__(self, W0: torch.Tensor, train: Dataset, test: Dataset, q: float, lr: float):
        self.W0, self.train, self.q, self.lr = W0, train, q, lr
        self.y, self.wts = train.y, train.weights()
        self.yt, self.yt_test = train.y_true, test.y_true
        xi = train.noise
        self.mu2 = (train.mu ** 2).sum(1)                                  # (R,) ||mu||^2
        norms = (xi ** 2).sum(2)
        self.xi2 = torch.where(train.mask, norms, torch.ones_like(norms))  # (R, n) ||xi_i||^2
        self.p_mu = torch.einsum("rjmd,rd->rjm", W0, train.mu)             # <w0, mu>
        self.p_xi = torch.einsum("rjmd,rnd->rjmn", W0, xi)                 # <w0, xi_k>
        self.p_mu_test = torch.einsum("rjmd,rd->rjm", W0, test.mu)
        self.p_xi_test = torch.einsum("rjmd,rnd->rjmn", W0, test.noise)
        self.G = torch.bmm(xi, xi.transpose(1, 2)) / self.xi2[..., None]   # (R, n, n) rows scaled
        self.G_test = torch.bmm(xi, test.noise.transpose(1, 2)) / self.xi2[..., None]
        R, _, m, _ = W0.shape
        self.gamma = torch.zeros(R, 2, m, dtype=W0.dtype, device=W0.device)
        self.rho = torch.zeros(R, 2, m, train.n, dtype=W0.dtype, device=W0.device)
        # constants of the step: j = (+1, -1) (2, 1), the masks of yt = +1 and yt = -1 (R, 2, n),
        # w_i y_i (dL/df_i = l'(y_i f_i) w_i y_i), -lr/m * j and -lr/m * ||mu||^2
        self.sgn = _sign(W0)[:, None]
        self.pn = torch.stack([self.yt > 0, self.yt < 0], 1).to(W0.dtype)
        self.wy = self.wts * self.y
        self.rho_scale = (-lr / m) * self.sgn[None, :, :, None]
        self.gamma_scale = (-lr / m) * self.mu2[:, None, None]

    def _pre(self, p_mu, p_xi, G, yt):
        R, _, m, n = p_xi.shape
        w_mu = p_mu + self.sgn * self.gamma                                # <w_{j,r}, mu>
        z_sig = w_mu[..., None] * yt[:, None, None, :]                     # (R, 2, m, n)
        z_noise = torch.baddbmm(p_xi.reshape(R, 2 * m, n), self.rho.view(R, 2 * m, -1), G)
        return z_sig, z_noise.view(R, 2, m, n)

    def _logits(self, z_sig, z_noise) -> torch.Tensor:
        """``F_+1 - F_-1`` from ``_pre``'s two fresh (R, 2, m, n) tensors, activated in place
        (the same values as out of place, two of the five buffers: the test set's peak)."""
        if _exact_pow(self.q):
            for z in (z_sig, z_noise):
                torch.relu_(z)
                if self.q != 1:
                    z.pow_(self.q)
            h = z_sig.add_(z_noise).mean(2)
        else:
            act = lambda t: _per_run(lambda u: activation(u, self.q), t)   # noqa: E731
            h = (act(z_sig) + act(z_noise)).mean(2)
        return h[:, 0] - h[:, 1]

    def _act(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sigma(z)`` and ``sigma'(z)`` together (one power instead of two)."""
        if self.q == 1:
            return torch.relu(z), (z > 0).to(z.dtype)
        r = torch.relu(z)
        rq1 = r if self.q == 2 else r.pow(self.q - 1) if _exact_pow(self.q) else _per_run(
            lambda u: u.pow(self.q - 1), r)
        return rq1 * r, self.q * rq1

    def step(self) -> torch.Tensor:
        R, _, m, n = self.rho.shape
        w_mu = torch.addcmul(self.p_mu, self.sgn, self.gamma)             # (R, 2, m) <w_{j,r}, mu>
        # The signal patch of sample i is yt_i mu, so sigma(<w, yt_i mu>) takes only the two
        # values sigma(+-<w, mu>) (and 0 on padding): O(R m) instead of O(R m n).
        a_sig, d_sig = self._act(torch.stack([w_mu, -w_mu], 2))            # (R, 2, 2 (+-), m)
        z_noise = torch.baddbmm(self.p_xi.reshape(R, 2 * m, n), self.rho.view(R, 2 * m, n), self.G)
        a_noise, d_noise = self._act(z_noise.view(R, 2, m, n))             # (R, 2, m, n)
        h = torch.baddbmm(a_noise.mean(2), a_sig.mean(3), self.pn)         # (R, 2, n) F_j(x_i)
        margin = self.y * (h[:, 0] - h[:, 1])
        g = _per_run(logistic_grad, margin) * self.wy                      # dL/df_i, (R, n)
        # (R, 2, 1) sum_i g_i yt_i; not a bmm: a batched matrix-vector product depends on R
        g_pm = (self.pn * g[:, None, :]).sum(2, keepdim=True) * self.sgn
        dg = (d_sig * g_pm[:, None]).sum(2)                                # sum_i sigma'(.) g_i yt_i
        self.gamma.addcmul_(dg, self.gamma_scale)
        self.rho.addcmul_(d_noise.mul_((g * self.xi2)[:, None, None, :]), self.rho_scale)
        return margin

    def margins(self) -> torch.Tensor:
        return self.y * self._logits(*self._pre(self.p_mu, self.p_xi, self.G, self.yt))

    def test_logits(self) -> torch.Tensor:
        return self._logits(*self._pre(self.p_mu_test, self.p_xi_test, self.G_test, self.yt_test))

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gamma, self.rho

    def weights(self) -> torch.Tensor:
        t = self.train
        sign = self.sgn[None]
        mu2 = self.mu2.clamp_min(torch.finfo(self.mu2.dtype).tiny)       # mu = 0: gamma stays 0
        w_mu = (sign * self.gamma / mu2[:, None, None])[..., None] * t.mu[:, None, None, :]
        w_xi = torch.einsum("rjmi,rid->rjmd", self.rho / self.xi2[:, None, None, :], t.noise)
        return self.W0 + w_mu + w_xi


def choose_method(method: str, n: int, d: int) -> str:
    """``"auto"`` picks the coefficient space when it is cheaper: ``n <= 2 d``.

    A coefficient step costs ``4 m n^2`` flops against ``16 m n d`` for a weight step, plus a
    one-off ``2 n d (n + n_test)`` for the Gram matrices. Measured (bench/README.md, d = 2000,
    m = 10, 8 runs, one thread): a coefficient step is 21x faster at n = 64, 6.7x at n = 1000,
    5.1x at n = 2000 and 2.5x at n = 4000, where its set-up costs about 20 weight steps.
    ``"gram"`` (equal in distribution, not per seed) is never chosen automatically.
    """
    if method != "auto":
        return method
    return "coefficient" if n <= 2 * d else "weight"


def make_stepper(method: str, W0: torch.Tensor, train: Dataset, test: Dataset,
                 q: float, lr: float) -> Stepper:
    """The GD stepper for ``method`` in {"auto", "weight", "coefficient", "gram"}; "gram"
    takes a :class:`~simclr_lib.gram.GramData` draw as ``train`` (``W0``, ``test`` unused)."""
    if method == "gram":
        from .gram import GramData, GramSpace
        if not isinstance(train, GramData):
            raise ValueError("method='gram' draws its own Gram matrix (run_supervised); it "
                             "cannot train on given samples: use 'weight' or 'coefficient'")
        return GramSpace(train, q, lr)
    method = choose_method(method, train.n, train.d)
    if method == "coefficient":
        return CoefficientSpace(W0, train, test, q, lr)
    if method == "weight":
        return WeightSpace(W0, train.patches(), train.y, train.weights(), test.patches(), q, lr,
                           train=train)
    raise ValueError(f"method must be one of ('auto', 'weight', 'coefficient', 'gram'), "
                     f"got {method!r}")


@dataclass
class History:
    """Diagnostics recorded every ``record_every`` steps: ``metrics[name]`` is (R, T)."""

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    method: str
    final: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    # the run's inputs, set by the pipelines (simclr_lib.pipelines): chapters and sweeps read
    # them here instead of re-drawing them from the random streams
    train: Dataset | None = field(default=None, repr=False)   # labeled training set
    test: Dataset | None = field(default=None, repr=False)    # test set
    W0: torch.Tensor | None = field(default=None, repr=False)  # start (R, 2, m, d)
    lr: float | None = None                                    # GD step size

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]

    def last(self, name: str) -> np.ndarray:
        """The metric at the last recorded step, (R,)."""
        return self.metrics[name][:, -1]


def _error(margin: torch.Tensor) -> torch.Tensor:
    """0-1 error with ties counted as one half (a dead network is at chance, not perfect)."""
    return (margin < 0).to(margin.dtype) + 0.5 * (margin == 0).to(margin.dtype)


def fit(stepper: Stepper, y_test: torch.Tensor, wts: torch.Tensor, steps: int,
        record_every: int, coefficients: bool = True) -> History:
    """Run ``steps`` GD steps, recording every ``record_every`` steps (and at the last one) the
    training and test loss and error and, with ``coefficients``, Definition 5.1's summaries
    (:func:`~simclr_lib.diagnostics.coefficient_summary`) and the filters' mean and max
    ``|cos(w_{j,r}, mu)|`` (``align_mean``, ``align_max``).

    Raises :class:`DivergenceError` naming the step if a loss or weight becomes non-finite.
    """
    rows: dict[str, list] = {}
    rec_steps = []

    def record(t: int, margin: torch.Tensor) -> None:
        test_margin = y_test * stepper.test_logits()
        vals = {"train_loss": (wts * _per_run(logistic, margin)).sum(1),
                # weights summing to 1 + rounding made this 1.0000001 (tests/test_properties.py)
                "train_error": (wts * _error(margin)).sum(1).clamp(0.0, 1.0),
                "test_loss": _per_run(logistic, test_margin).mean(1),
                "test_error": _error(test_margin).mean(1)}
        if coefficients:
            vals.update(coefficient_summary(*stepper.coefficients()))
            al = (stepper.alignment() if hasattr(stepper, "alignment")     # the Gram method
                  else alignment(stepper.weights(), stepper.train.mu))         # (R, 2, m)
            vals["align_mean"], vals["align_max"] = al.mean((1, 2)), al.amax((1, 2))
        for k, v in vals.items():
            if not torch.isfinite(v).all():
                raise _diverged(t, stepper.lr)
            rows.setdefault(k, []).append(v.detach().cpu().numpy())
        rec_steps.append(t)

    for t in _steps(steps + 1, "GD"):
        if t % record_every == 0 or t == steps:
            record(t, stepper.margins())
        if t == steps:
            break
        if not torch.isfinite(stepper.step()).all():
            raise _diverged(t, stepper.lr)
    gamma, rho = stepper.coefficients() if coefficients else (None, None)
    final = {"W": None if stepper.method == "gram" else stepper.weights(),
             "gamma": gamma, "rho": rho}
    return History(np.array(rec_steps), {k: np.stack(v, 1) for k, v in rows.items()},
                   stepper.method, final)
