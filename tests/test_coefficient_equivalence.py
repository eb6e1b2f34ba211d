"""The exact coefficient-space stepper (Definition 5.1) against weight-space gradient descent,
and the hand-written pre-training gradient against autograd.

Both steppers are exact, so in float64 their gamma, rho, training loss and test error must agree
to 1e-4 (relative to each quantity's scale) over 1000 steps, on any shape: padded runs of
different n, ReLU (q = 1), fractional q, label noise, and fine-tuning from a pre-trained start.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib.losses import infonce, nt_xent
from simclr_lib.pipelines import pretrain_views
from simclr_lib.pretraining import _infonce_grad, pretrain
from simclr_lib.training import choose_method

F64 = torch.float64
TOL = 1e-4


def assert_rel(a, b, what: str, tol: float = TOL) -> None:
    """``max |a - b| <= tol * max |b|`` (exact equality where ``b`` is all zero)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape, what
    err, scale = np.abs(a - b).max(), np.abs(b).max()
    assert err <= tol * scale if scale > 0 else err == 0, \
        f"{what}: max |diff| {err:.3g} vs scale {scale:.3g}"


def both(W0_fn, seeds, data, cfg, **kw):
    """The same runs through the weight-space and the coefficient-space stepper."""
    out = {}
    for method in ("weight", "coefficient"):
        c = sl.config.replace(cfg, method=method)
        W0 = W0_fn()
        h = sl.run_finetune(W0, seeds, data, c, device="cpu", dtype=F64, **kw)
        assert h.method == method          # the path taken is reported
        out[method] = h
    return out["weight"], out["coefficient"]


def check_equal(hw, hc) -> None:
    np.testing.assert_array_equal(hw.steps, hc.steps)
    for name in ("train_loss", "test_loss", "test_error", "train_error", "gamma_max", "gamma_mean",
                 "rho_bar_max", "rho_under_min"):
        assert_rel(hc[name], hw[name], name)
    assert_rel(hc.final["gamma"], hw.final["gamma"], "gamma")
    assert_rel(hc.final["rho"], hw.final["rho"], "rho")
    assert_rel(hc.final["W"], hw.final["W"], "W")
    # the dynamics did something: the comparison is not between two resting networks
    assert np.abs(hw.final["rho"].numpy()).max() > 1e-3
    assert hw["train_loss"][:, -1].max() < hw["train_loss"][:, 0].min()


def gaussian_start(seeds, m, d, sigma0):
    return lambda: sl.init_cnn([sl.stream(s, "init") for s in seeds], m, d, sigma0, F64)


CASES = {   # name: (DataConfig, SupervisedConfig, per-run n, per-run snr)
    "q=3": (sl.DataConfig(d=64, snr=0.6), sl.SupervisedConfig(n=8, m=4, q=3.0), None, None),
    "padded n": (sl.DataConfig(d=64), sl.SupervisedConfig(m=3, q=3.0), [3, 7, 12], [0.4, 0.8, 1.2]),
    "q=1 ReLU, label noise": (sl.DataConfig(d=48, snr=0.5, p=0.2), sl.SupervisedConfig(n=10, m=5, q=1.0),
                              None, None),
    "q=2.5": (sl.DataConfig(d=40, snr=0.7, signal_patch="first"), sl.SupervisedConfig(n=6, m=2, q=2.5),
              [6, 4, 5], None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_coefficient_space_equals_weight_space(case):
    data, cfg, n, snr = CASES[case]
    cfg = sl.config.replace(cfg, steps=1000, record_every=100, n_test=200)
    seeds = [0, 1, 2]
    hw, hc = both(gaussian_start(seeds, cfg.m, data.d, cfg.init_std(data)), seeds, data, cfg, n=n, snr=snr)
    check_equal(hw, hc)


def test_fine_tuning_from_pretrained_start():
    """Theorem 5.5's start: pre-trained, randomly split filters (not Gaussian, mu-aligned)."""
    data = sl.DataConfig(d=50, snr=0.5)
    pre = sl.PretrainConfig(n0=30, m=3, steps=60)
    ft = sl.SupervisedConfig(n=5, m=3, steps=1000, record_every=250, n_test=200)
    seeds = [3, 4]
    res = sl.run_pretrain(seeds, data, pre, dtype=F64)
    W0 = sl.split_filters(res.W, [sl.stream(s, "split") for s in seeds])
    assert sl.alignment(W0, torch.ones(2, 1, dtype=F64) * torch.eye(1, 50, dtype=F64)).mean() > 0.5
    hw, hc = both(lambda: W0.clone(), seeds, data, ft)
    check_equal(hw, hc)


def test_auto_method_and_forcing():
    """"auto" takes the coefficient space while n <= 2 d (measured faster, bench/README.md);
    a user can force either path and History.method says which one ran."""
    assert choose_method("auto", 16, 2000) == "coefficient"
    assert choose_method("auto", 4000, 2000) == "coefficient"
    assert choose_method("auto", 4001, 2000) == "weight"
    assert choose_method("weight", 4, 2000) == "weight"
    assert choose_method("coefficient", 10 ** 5, 20) == "coefficient"
    data = sl.DataConfig(d=20, snr=1.0)
    for method, n, expect in [("auto", 8, "coefficient"), ("auto", 41, "weight"),
                              ("weight", 8, "weight"), ("coefficient", 41, "coefficient")]:
        cfg = sl.SupervisedConfig(n=n, m=2, steps=2, n_test=10, method=method)
        h = sl.run_supervised([0], data, cfg)
        assert h.method == expect


# ---------------------------------------------------------------------------------------------
# Pre-training: the hand-written chain rule through the linear encoder is autograd's gradient.

@pytest.mark.parametrize("block", [None, 2, 3])       # whole, and in blocks of rows
def test_infonce_hand_gradient_equals_autograd(block):
    g = torch.Generator().manual_seed(0)
    R, n, k, tau = 3, 7, 4, 0.7
    HH = torch.randn(R, 2 * n, k, generator=g, dtype=F64)
    mask = torch.ones(R, n, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 3:] = False
    HH = HH * torch.cat([mask, mask], 1)[..., None]           # padded rows are zero
    L, s_max, dHT = _infonce_grad(HH.transpose(1, 2).clone(), n, tau, mask, block)  # (R, k, 2n)
    dHH = dHT.transpose(1, 2)
    X = HH.clone().requires_grad_(True)
    L_ref = infonce(X[:, :n], X[:, n:], tau, mask)
    (g_ref,) = torch.autograd.grad(L_ref.sum(), X)
    torch.testing.assert_close(L, L_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dHH, g_ref, rtol=1e-12, atol=1e-12)
    logits = torch.bmm(HH[:, :n], HH[:, n:].transpose(1, 2)) / tau
    pair = mask[:, :, None] & mask[:, None, :]
    torch.testing.assert_close(s_max, logits.abs().masked_fill(~pair, 0).amax((1, 2)))


def _pretrain_reference(W0, data, view, tau, lr, steps, loss):
    """The obvious autograd loop: one run at a time, full encoder graph, no stopping rule."""
    fn = {"infonce": infonce, "ntxent": nt_xent}[loss]
    out = []
    for r in range(W0.shape[0]):
        keep = data.mask[r]
        Z, Zt = data.patch_sum()[r][keep], view.patch_sum()[r][keep]
        W = W0[r].clone()
        for _ in range(steps):
            W.requires_grad_(True)
            L = fn((Z @ W.T)[None], (Zt @ W.T)[None], tau)[0]
            (grad,) = torch.autograd.grad(L, W)
            W = (W - lr[r] * grad).detach()
        out.append(W)
    return torch.stack(out)


@pytest.mark.parametrize("loss", ["infonce", "ntxent"])
def test_pretrain_equals_autograd_reference(loss):
    data = sl.DataConfig(d=40, snr=0.8)
    pre = sl.PretrainConfig(m=3, steps=30, stop="steps", loss=loss, sigma0=0.05)
    seeds = [0, 1, 2]
    unl, view = pretrain_views(seeds, data, pre, None, [12, 7, 9], "cpu", F64)   # padded runs
    W0 = sl.init_encoder([sl.stream(s, "pretrain_init") for s in seeds], pre.m, data.d, pre.sigma0, F64)
    lr = torch.tensor([0.002, 0.004, 0.006], dtype=F64)       # lam = 2 lr ||mu||^2 / tau <= 0.3
    res = pretrain(W0, unl, view, pre.tau, lr, pre.steps, loss, "steps", record_every=5)
    ref = _pretrain_reference(W0, unl, view, pre.tau, lr, pre.steps, loss)
    assert (ref - W0).norm() > 0.1 * W0.norm()                # it moved
    torch.testing.assert_close(res.W, ref, rtol=1e-10, atol=1e-12)


def test_weight_space_blocks_of_samples(monkeypatch):
    """WeightSpace.step runs over blocks of samples (cache-sized); any block size gives the same GD."""
    from simclr_lib.training import WeightSpace
    data = sl.DataConfig(d=30, snr=0.8)
    cfg = sl.SupervisedConfig(n=40, m=2, steps=200, record_every=100, n_test=50, method="weight")
    seeds = [0, 1]
    one = sl.run_supervised(seeds, data, cfg, n=[40, 23], dtype=F64)      # a single block
    monkeypatch.setattr(WeightSpace, "_BLOCK", 1)                           # blocks of 16 samples
    blocks = sl.run_supervised(seeds, data, cfg, n=[40, 23], dtype=F64)
    torch.testing.assert_close(blocks.final["W"], one.final["W"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(blocks["train_loss"], one["train_loss"], rtol=1e-12)
