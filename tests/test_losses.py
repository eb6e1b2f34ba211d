"""The losses of simclr_lib.losses against slow references written straight from the formulas."""
from __future__ import annotations

import math

import pytest
import torch

from simclr_lib.losses import infonce, logistic, logistic_grad, nt_xent

R, N, K, TAU = 3, 6, 4, 0.7


def ref_infonce(h, ht, tau, mask=None):
    """``-(1/n0) sum_i log[exp(<h_i, h~_i>/tau) / sum_j exp(<h_i, h~_j>/tau)]``, by loops."""
    out = []
    for r in range(h.shape[0]):
        idx = [i for i in range(h.shape[1]) if mask is None or mask[r, i]]
        total = 0.0
        for i in idx:
            pos = math.exp(float(h[r, i] @ ht[r, i]) / tau)
            den = sum(math.exp(float(h[r, i] @ ht[r, j]) / tau) for j in idx)
            total += -math.log(pos / den)
        out.append(total / len(idx))
    return torch.tensor(out, dtype=torch.float64)


def ref_nt_xent(h, ht, tau, mask=None):
    """Symmetric NT-Xent (Chen et al. 2020): views a = 0..2n-1, positive of a is a +- n,
    ``l_a = -log[exp(cos(u_a, u_pos)/tau) / sum_{c != a} exp(cos(u_a, u_c)/tau)]``, mean over a."""
    out = []
    for r in range(h.shape[0]):
        n = h.shape[1]
        idx = [i for i in range(n) if mask is None or mask[r, i]]
        views = {}
        for i in idx:
            views[i] = h[r, i] / h[r, i].norm()
            views[i + n] = ht[r, i] / ht[r, i].norm()
        total = 0.0
        for a in views:
            b = a + n if a < n else a - n
            sim = lambda c: math.exp(float(views[a] @ views[c]) / tau)   # noqa: E731
            total += -math.log(sim(b) / sum(sim(c) for c in views if c != a))
        out.append(total / len(views))
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture
def views(rng):
    h = torch.randn(R, N, K, generator=rng, dtype=torch.float64)
    ht = h + 0.5 * torch.randn(R, N, K, generator=rng, dtype=torch.float64)   # correlated pairs
    return h, ht


@pytest.fixture
def mask():
    m = torch.ones(R, N, dtype=torch.bool)
    m[1, 4:] = False     # run 1 has 4 samples, run 2 has 5
    m[2, 5:] = False
    return m


@pytest.mark.parametrize("loss, ref", [(infonce, ref_infonce), (nt_xent, ref_nt_xent)])
def test_loss_matches_loop_reference(views, loss, ref):
    h, ht = views
    torch.testing.assert_close(loss(h, ht, TAU), ref(h, ht, TAU), rtol=1e-12, atol=0)


@pytest.mark.parametrize("loss, ref", [(infonce, ref_infonce), (nt_xent, ref_nt_xent)])
def test_loss_with_padding_mask_matches_reference(views, mask, loss, ref):
    h, ht = views
    torch.testing.assert_close(loss(h, ht, TAU, mask), ref(h, ht, TAU, mask), rtol=1e-12, atol=0)


@pytest.mark.parametrize("loss", [infonce, nt_xent])
def test_padding_content_is_ignored(views, mask, rng, loss):
    """Whatever sits in padded rows (here large garbage) cannot change any run's loss,
    and a padded run equals the same run alone without padding."""
    h, ht = views
    junk = 50 * torch.randn(R, N, K, generator=rng, dtype=torch.float64)
    h2 = torch.where(mask[..., None], h, junk)
    ht2 = torch.where(mask[..., None], ht, -junk)
    full = loss(h2, ht2, TAU, mask)
    torch.testing.assert_close(full, loss(h, ht, TAU, mask), rtol=1e-13, atol=0)
    alone = loss(h[1:2, :4], ht[1:2, :4], TAU)
    torch.testing.assert_close(full[1:2], alone, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n0", [2, 7, 50])
def test_infonce_all_equal_embeddings_gives_log_n0(n0):
    h = torch.full((2, n0, 3), 0.3, dtype=torch.float64)
    torch.testing.assert_close(infonce(h, h.clone(), 0.5), torch.full((2,), math.log(n0),
                                                                        dtype=torch.float64))


@pytest.mark.parametrize("n0", [2, 7, 50])
def test_nt_xent_all_equal_embeddings_gives_log_2n0_minus_1(n0):
    h = torch.full((2, n0, 3), -1.2, dtype=torch.float64)
    torch.testing.assert_close(nt_xent(h, h.clone(), 0.5),
                               torch.full((2,), math.log(2 * n0 - 1), dtype=torch.float64))


def test_nt_xent_is_symmetric_in_the_two_views(views, mask):
    h, ht = views
    torch.testing.assert_close(nt_xent(h, ht, TAU, mask), nt_xent(ht, h, TAU, mask),
                               rtol=1e-13, atol=0)
    # InfoNCE as the paper writes it is one-sided: swapping the views changes it
    assert not torch.allclose(infonce(h, ht, TAU), infonce(ht, h, TAU))


@pytest.mark.parametrize("loss", [infonce, nt_xent])
def test_losses_invariant_to_relabelling_the_samples(views, rng, loss):
    h, ht = views
    perm = torch.randperm(N, generator=rng)
    torch.testing.assert_close(loss(h[:, perm], ht[:, perm], TAU), loss(h, ht, TAU),
                               rtol=1e-13, atol=0)


def test_logistic_equals_formula_for_moderate_z():
    z = torch.linspace(-15, 15, 301, dtype=torch.float64)
    torch.testing.assert_close(logistic(z), torch.log1p(torch.exp(-z)), rtol=1e-13, atol=0)
    torch.testing.assert_close(logistic(torch.tensor(0.0)), torch.tensor(math.log(2.0)))


def test_logistic_is_finite_and_accurate_for_huge_z():
    z = torch.tensor([-1e4, -800.0, -40.0, 40.0, 300.0, 700.0, 1e4], dtype=torch.float64)
    out = logistic(z)
    assert torch.isfinite(out).all()
    # z -> -inf: l(z) = -z + log(1 + e^z) ~ -z;  z -> +inf: l(z) ~ e^-z (relative accuracy)
    expected = torch.where(z < 0, -z + torch.log1p(torch.exp(z)), torch.exp(-z))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)
    assert logistic(torch.tensor(1e4)).item() == 0.0
    f32 = logistic(torch.tensor([-1e4, 1e4], dtype=torch.float32))
    assert torch.isfinite(f32).all() and f32[0].item() == 1e4 and f32[1].item() == 0.0


def test_logistic_grad_matches_autograd():
    z = torch.tensor([-1e4, -30.0, -2.0, -0.1, 0.0, 0.3, 5.0, 30.0, 1e4], dtype=torch.float64,
                     requires_grad=True)
    (auto,) = torch.autograd.grad(logistic(z).sum(), z)
    torch.testing.assert_close(logistic_grad(z.detach()), auto, rtol=1e-13, atol=1e-300)
    assert logistic_grad(torch.tensor(0.0)).item() == -0.5
