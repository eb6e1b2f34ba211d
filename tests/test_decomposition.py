"""The signal-noise decomposition (Definition 5.1) and the two exact GD implementations."""
from __future__ import annotations

import pytest
import torch

import simclr_lib as sl
from simclr_lib.diagnostics import decompose
from simclr_lib.losses import logistic
from simclr_lib.models import cnn_logits
from simclr_lib.training import CoefficientSpace, WeightSpace, fit, make_stepper

F64 = torch.float64
SEEDS = [11, 12]


def _problem(cfg: sl.DataConfig, n, m: int, sigma0: float, n_test: int = 50):
    train = sl.make_dataset(cfg, n, SEEDS, "train", dtype=F64)
    test = sl.make_dataset(cfg, n_test, SEEDS, "test", dtype=F64)
    W0 = sl.init_cnn([sl.stream(s, "init") for s in SEEDS], m, cfg.d, sigma0, dtype=F64)
    return train, test, W0


def _rebuild(W0, gamma, rho, data):
    """``w_{j,r} = w0 + j gamma mu/||mu||^2 + sum_i rho_i xi_i/||xi_i||^2``, term by term."""
    W = W0.clone()
    for r in range(W0.shape[0]):
        mu = data.mu[r]
        for j, sign in enumerate((1.0, -1.0)):
            for k in range(W0.shape[2]):
                W[r, j, k] += sign * gamma[r, j, k] * mu / (mu @ mu)
                for i in range(data.n):
                    if data.mask[r, i]:
                        xi = data.noise[r, i]
                        W[r, j, k] += rho[r, j, k, i] * xi / (xi @ xi)
    return W


def test_decomposition_reconstructs_weight_space_gd_iterates():
    cfg = sl.DataConfig(d=400, snr=0.8)
    train, test, W0 = _problem(cfg, [10, 7], m=3, sigma0=0.5 / cfg.d ** 0.5)   # run 1 is padded
    lr = 5 * 3 / cfg.d
    gd = WeightSpace(W0, train.patches(), train.y, train.weights(), test.patches(), 3.0, lr,
                     train=train)
    for t in range(1, 61):
        gd.step()
        if t in (1, 20, 60):
            gamma, rho = decompose(gd.W, W0, train)
            assert (rho[1, ..., 7:] == 0).all()                      # no coefficient on padding
            W = _rebuild(W0, gamma, rho, train)
            scale = float((gd.W - W0).norm())
            assert scale > 0
            assert float((W - gd.W).norm()) <= 1e-10 * scale, t
    assert float(gamma.abs().max()) > 0.1 and float(rho.abs().max()) > 0.1   # both moved


def test_decompose_recovers_known_coefficients(rng):
    cfg = sl.DataConfig(d=300, snr=0.4)
    data, _, W0 = _problem(cfg, [9, 6], m=4, sigma0=0.02)
    gamma = torch.randn(2, 2, 4, generator=rng, dtype=F64)
    rho = torch.randn(2, 2, 4, 9, generator=rng, dtype=F64) * data.mask[:, None, None, :]
    W = _rebuild(W0, gamma, rho, data)
    g_hat, r_hat = decompose(W, W0, data)
    torch.testing.assert_close(g_hat, gamma, rtol=0, atol=1e-10)
    torch.testing.assert_close(r_hat, rho, rtol=0, atol=1e-10)


@pytest.mark.parametrize("q", [3.0, 1.0, 2.5])
def test_weight_space_gradient_matches_autograd(q):
    cfg = sl.DataConfig(d=200, snr=0.7, p=0.2)                       # some flipped labels
    train, test, W0 = _problem(cfg, [8, 5], m=3, sigma0=0.3)
    x, wts = train.patches(), train.weights()
    W = W0.clone().requires_grad_(True)
    loss = (wts * logistic(train.y * cnn_logits(W, x, q))).sum()      # both runs' L_S(W)
    (auto,) = torch.autograd.grad(loss, W)
    lr = 0.1
    gd = WeightSpace(W0, x, train.y, wts, test.patches(), q, lr)
    gd.step()
    scale = float(auto.abs().max())
    assert scale > 1e-3
    torch.testing.assert_close((W0 - gd.W) / lr, auto, rtol=1e-9, atol=1e-9 * scale)


def test_coefficient_space_equals_weight_space_over_200_steps():
    cfg = sl.DataConfig(d=600, snr=0.6, p=0.1)
    train, test, W0 = _problem(cfg, [12, 9], m=4, sigma0=0.5 / cfg.d ** 0.5, n_test=200)
    lr = 5 * 4 / cfg.d
    hist = {}
    for method in ("weight", "coefficient"):
        stepper = make_stepper(method, W0, train, test, 3.0, lr)
        assert isinstance(stepper, WeightSpace if method == "weight" else CoefficientSpace)
        hist[method] = fit(stepper, test.y, train.weights(), steps=200, record_every=20)
    w, c = hist["weight"], hist["coefficient"]
    assert w.method == "weight" and c.method == "coefficient"
    assert (w["train_loss"][:, -1] < 0.5 * w["train_loss"][:, 0]).all()   # it really trained
    for name in ("train_loss", "test_loss", "gamma_max", "gamma_mean", "rho_bar_max",
                 "rho_under_min"):
        torch.testing.assert_close(torch.from_numpy(c[name]), torch.from_numpy(w[name]),
                                   rtol=1e-6, atol=1e-9, msg=name)
    for name in ("train_error", "test_error"):
        assert (c[name] == w[name]).all(), name
    for key in ("gamma", "rho", "W"):
        torch.testing.assert_close(c.final[key], w.final[key], rtol=1e-6, atol=1e-9, msg=key)


def test_recorded_alignment_is_the_filters_cosine_with_mu():
    """``align_mean``/``align_max`` of a supervised history are mean/max |cos(w_{j,r}, mu)| of
    the filters, computed the same way by both GD implementations."""
    data = sl.DataConfig(d=300, snr=0.8)
    cfg = sl.SupervisedConfig(n=8, m=3, steps=40, record_every=20, n_test=20)
    hists = [sl.run_supervised(SEEDS, data, sl.config.replace(cfg, method=meth), dtype=F64)
             for meth in ("weight", "coefficient")]
    W = hists[0].final["W"]
    mu = sl.make_dataset(data, cfg.n, SEEDS, "train", dtype=F64).mu
    cos = torch.stack([torch.stack([(W[r, j] @ mu[r]).abs() / (W[r, j].norm(dim=1) * mu[r].norm())
                                    for j in range(2)]) for r in range(len(SEEDS))])  # (R, 2, m)
    for h in hists:
        assert torch.allclose(torch.from_numpy(h.last("align_mean")), cos.mean((1, 2)), rtol=1e-9)
        assert torch.allclose(torch.from_numpy(h.last("align_max")), cos.amax((1, 2)), rtol=1e-9)
    assert hists[0].last("align_mean")[0] != hists[0]["align_mean"][0, 0]   # it moves with training
