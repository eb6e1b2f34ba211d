"""Lemma 5.1 (pre-training is a power method near a small start) and Lemma 5.2 (spectrum of A)."""
from __future__ import annotations

import pytest
import torch

import simclr_lib as sl
from simclr_lib.diagnostics import power_matrix, spectrum
from simclr_lib.pretraining import pretrain

F64 = torch.float64


def _pairs(cfg: sl.DataConfig, n0: int, seed: int):
    unl = sl.make_dataset(cfg, n0, [seed], "unlabeled", dtype=F64)
    return unl, sl.augment(unl, [seed], cfg.sigma_p)


def _one_step(how: str, W0, unl, view, tau, lr):
    """One full-batch GD step on the paper's InfoNCE: the library's pre-training loop, or
    autograd of :func:`simclr_lib.losses.infonce` on the linear encoder."""
    if how == "pretrain":
        return pretrain(W0, unl, view, tau, torch.tensor([lr], dtype=F64), steps=1,
                        stop="steps").W
    W = W0.clone().requires_grad_(True)
    loss = sl.infonce(sl.encode(W, unl.patch_sum()), sl.encode(W, view.patch_sum()), tau)
    (grad,) = torch.autograd.grad(loss.sum(), W)
    return W0 - lr * grad


@pytest.mark.parametrize("how", ["pretrain", "autograd"])
def test_lemma_5_1_one_step_is_W_times_I_plus_A(how):
    cfg, m, tau = sl.DataConfig(d=300, snr=0.5), 3, 0.5
    unl, view = _pairs(cfg, 20, seed=7)
    lr = sl.PretrainConfig(tau=tau).step_size(cfg.mu_norm())
    A = power_matrix(unl, view, tau, lr)                             # (d, d)
    eye = torch.eye(cfg.d, dtype=F64)
    errs = {}
    for sigma0 in (1e-3, 1e-5):
        W0 = sigma0 * torch.randn(1, 2 * m, cfg.d, generator=torch.Generator().manual_seed(0),
                                  dtype=F64)
        W1 = _one_step(how, W0, unl, view, tau, lr)
        predicted = W0[0] @ (eye + A)
        # error relative to the update itself, not to W (which would hide it)
        errs[sigma0] = float((W1[0] - predicted).norm() / (W1[0] - W0[0]).norm())
    assert errs[1e-3] < 1e-2, errs
    assert errs[1e-5] < 1e-6, errs
    # the deviation from the power method is second order in sigma0: 100x smaller sigma0,
    # ~1e4x smaller error (measured 2.4e-3 -> 2.4e-7); ask for at least 1e2
    assert errs[1e-5] < 1e-2 * errs[1e-3], errs


def test_spectrum_matches_dense_eigendecomposition():
    cfg, tau = sl.DataConfig(d=150, snr=0.3), 0.8
    unl, view = _pairs(cfg, 25, seed=3)
    lr = 0.01
    evals, top = spectrum(unl, view, tau, lr, k=5)
    dense, vecs = torch.linalg.eigh(power_matrix(unl, view, tau, lr))
    torch.testing.assert_close(evals, dense.flip(0)[:5], rtol=1e-9, atol=1e-12)
    assert abs(float(top @ vecs[:, -1])) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lemma_5_2_top_eigenpair_is_the_signal(seed):
    cfg = sl.DataConfig(d=2000, snr=0.4)
    n0 = 100                                                         # n0 snr^2 = 16
    unl, view = _pairs(cfg, n0, seed)
    tau = 1.0
    lr = sl.PretrainConfig(tau=tau).step_size(cfg.mu_norm())
    evals, top = spectrum(unl, view, tau, lr)
    predicted = 2 * lr * cfg.mu_norm() ** 2 / tau
    assert abs(float(evals[0]) / predicted - 1) <= 0.15, (float(evals[0]), predicted)
    cos = abs(float(top @ unl.mu[0])) / float(top.norm() * unl.mu[0].norm())
    assert cos >= 0.95
    assert float(evals[1]) <= 0.25 * float(evals[0])                  # the rest is o(lambda_1)


def test_lemma_5_2_fails_when_n0_snr2_is_small():
    """The contrast: at n0 snr^2 = 0.25 the noise part dominates (no gap, no alignment)."""
    cfg = sl.DataConfig(d=2000, snr=0.05)
    unl, view = _pairs(cfg, 100, seed=0)
    lr = sl.PretrainConfig().step_size(cfg.mu_norm())
    evals, top = spectrum(unl, view, 1.0, lr)
    predicted = 2 * lr * cfg.mu_norm() ** 2
    assert float(evals[0]) > 1.5 * predicted
    assert float(evals[1]) > 0.5 * float(evals[0])
    assert abs(float(top @ unl.mu[0])) / float(top.norm() * unl.mu[0].norm()) < 0.8
