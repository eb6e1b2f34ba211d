"""Seeds and random streams: determinism, independence, and the exact properties of the draws."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib.data import STREAMS

F64 = torch.float64


def _max_abs_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |cosine| between a row of ``a`` and a row of ``b`` (both (n, d))."""
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    return float((a @ b.T).abs().max())


def test_same_seed_is_bit_identical(small_data):
    a = sl.make_dataset(small_data, 9, [1, 2], "train")
    b = sl.make_dataset(small_data, 9, [1, 2], "train")
    for f in ("y", "y_true", "noise", "mu", "signal_first", "mask"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    cfg = sl.SupervisedConfig(n=6, m=2, steps=20, n_test=30, record_every=5)
    h1, h2 = (sl.run_supervised([1, 2], small_data, cfg) for _ in range(2))
    assert torch.equal(h1.final["W"], h2.final["W"])
    assert all(np.array_equal(h1[k], h2[k]) for k in h1.metrics)
    pre = sl.PretrainConfig(n0=12, m=2, steps=15, stop="steps")
    p1, p2 = (sl.run_pretrain([1, 2], small_data, pre) for _ in range(2))
    assert torch.equal(p1.W, p2.W)


def test_different_seeds_differ(small_data):
    a = sl.make_dataset(small_data, 9, [1, 2], "train")
    assert not torch.equal(a.noise[0], a.noise[1])
    assert _max_abs_corr(a.noise[0], a.noise[1]) < 0.3
    W = sl.run_pretrain([1, 2], small_data, sl.PretrainConfig(n0=12, m=2, steps=5, stop="steps")).W
    assert not torch.equal(W[0], W[1])


def test_train_and_test_share_no_draws():
    cfg = sl.DataConfig(d=500)
    for seed in (0, 1):
        train = sl.make_dataset(cfg, 30, seed, "train", dtype=F64).noise[0]
        test = sl.make_dataset(cfg, 200, seed, "test", dtype=F64).noise[0]
        shared = np.intersect1d(train[:, 1:].numpy(), test[:, 1:].numpy())
        assert shared.size == 0                           # not one value in common
        # no row of the test noise is (a multiple of) a row of the training noise:
        # independent rows have |cos| ~ N(0, 1/d), so 6000 pairs stay below 5/sqrt(d)
        assert _max_abs_corr(train, test) < 5 / cfg.d ** 0.5


def test_named_streams_are_reproducible_and_distinct():
    draws = {name: torch.randn(64, generator=sl.stream(5, name), dtype=F64) for name in STREAMS}
    again = torch.randn(64, generator=sl.stream(5, "train"), dtype=F64)
    assert torch.equal(draws["train"], again)
    for a, b in itertools.combinations(STREAMS, 2):
        assert not torch.equal(draws[a], draws[b]), (a, b)
        assert abs(float(draws[a] @ draws[b])) / 64 < 0.6      # nor correlated
    for name in ("train", "test", "unlabeled", "augment"):
        assert not torch.equal(draws[name], torch.randn(64, generator=sl.stream(6, name),
                                                         dtype=F64))


def test_unlabeled_samples_are_not_the_training_samples():
    cfg = sl.DataConfig(d=400)
    train = sl.make_dataset(cfg, 20, 3, "train", dtype=F64).noise[0]
    unl = sl.make_dataset(cfg, 20, 3, "unlabeled", dtype=F64).noise[0]
    assert np.intersect1d(train[:, 1:].numpy(), unl[:, 1:].numpy()).size == 0


def test_augmentation_rho_controls_dependence_on_the_original():
    cfg = sl.DataConfig(d=1000, sigma_p=2.0)
    data = sl.make_dataset(cfg, 40, [0, 1], "unlabeled", dtype=F64)
    same = sl.augment(data, [0, 1], cfg.sigma_p, rho=1.0)
    assert torch.equal(same.noise, data.noise)                     # rho = 1 copies the sample
    fresh = sl.augment(data, [0, 1], cfg.sigma_p, rho=0.0)
    for r in range(2):
        assert torch.equal(fresh.y_true, data.y_true) and torch.equal(fresh.mu, data.mu)
        assert torch.equal(fresh.signal_first, data.signal_first)  # the signal patch is kept
        # independent noise: the paired rows and all others are uncorrelated
        assert _max_abs_corr(fresh.noise[r], data.noise[r]) < 5 / cfg.d ** 0.5
        assert float(fresh.noise[r, :, 1:].std()) == pytest.approx(cfg.sigma_p, rel=0.02)
    half = sl.augment(data, [0, 1], cfg.sigma_p, rho=0.6)
    corr = (half.noise * data.noise).sum(2) / (half.noise.norm(dim=2) * data.noise.norm(dim=2))
    assert float(corr.mean()) == pytest.approx(0.6, abs=0.03)
    assert float(half.noise[..., 1:].std()) == pytest.approx(cfg.sigma_p, rel=0.02)


def test_noise_is_exactly_orthogonal_to_mu():
    cfg = sl.DataConfig(d=300, snr=0.7, sigma_p=1.5)
    data = sl.make_dataset(cfg, 25, [0, 1, 2], "train")
    view = sl.augment(data, [0, 1, 2], cfg.sigma_p)
    for noise in (data.noise, view.noise):
        assert (torch.einsum("rnd,rd->rn", noise, data.mu) == 0).all()
    assert torch.allclose(data.mu.norm(dim=1), torch.tensor(cfg.mu_norm()).float())
    assert cfg.mu_norm() == pytest.approx(0.7 * 1.5 * 300 ** 0.5)   # ||mu|| = snr sigma_p sqrt(d)


def test_label_flip_rate_is_p():
    n, seeds = 2000, [0, 1, 2, 3]
    noisy = sl.make_dataset(sl.DataConfig(d=4, p=0.2), n, seeds)
    flips, clean = noisy.y, noisy.y_true
    rate = float((flips != clean).double().mean())
    assert rate == pytest.approx(0.2, abs=0.02)                  # sd ~ 0.0045
    assert float(clean.mean()) == pytest.approx(0.0, abs=0.05)    # labels are balanced
    data = sl.make_dataset(sl.DataConfig(d=4, p=0.0), n, seeds)
    assert torch.equal(data.y, data.y_true)


def test_signal_patch_position():
    rand = sl.make_dataset(sl.DataConfig(d=4), 4000, [0])
    assert float(rand.signal_first.double().mean()) == pytest.approx(0.5, abs=0.03)
    data = sl.make_dataset(sl.DataConfig(d=50, signal_patch="first"), 30, [0, 1], dtype=F64)
    assert data.signal_first.all()
    x = data.patches()
    assert torch.equal(x[:, :, 0], data.y_true[..., None] * data.mu[:, None, :])
    assert torch.equal(x[:, :, 1], data.noise)
