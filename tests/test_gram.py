"""The Gram method (``simclr_lib.gram``) against weight- and coefficient-space runs.

It is exact in distribution, not per seed, so the test is statistical: over ``SEEDS`` runs
of each method at two shapes, the mean and the spread (mean absolute deviation from the
median) of the final test error, training loss, gamma and rho summaries must agree within
``Z`` two-sample standard errors (300 and 800 seeds). ``Z = 4`` (two-sided false-alarm rate 6e-5 per statistic,
about 1e-3 over all of them; the seeds are fixed, so the outcome is reproducible). The
control draws the Gram method's noise 10% too large (everything else equal) and must fail.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import gram
from simclr_lib.config import replace

Z = 4.0
SEEDS = {"relu": list(range(300)), "q3": list(range(800))}   # q3 needs more for the control
STATS = ("test_error", "train_loss", "gamma_max", "rho_bar_max", "rho_under_min", "align_mean")
SHAPES = {   # (data, cfg, reference method): ReLU as in Kou et al.'s grid, and q = 3
    "relu": (sl.DataConfig(d=200, snr=2.5 / math.sqrt(200), p=0.1),
             sl.SupervisedConfig(n=20, m=10, q=1.0, sigma0=5 / math.sqrt(600), lr=2.5,
                                 steps=100, n_test=500, record_every=100), "weight"),
    "q3": (sl.DataConfig(d=400, snr=0.25),
           sl.SupervisedConfig(n=12, m=4, q=3.0, steps=300, n_test=500, record_every=300),
           "coefficient"),
}


def z_scores(a: dict, b: dict) -> dict[str, float]:
    """Two-sample z of the means and of the spreads (mean |x - median|) of each statistic."""
    out = {}
    for k in STATS:
        x, y = np.asarray(a[k], float), np.asarray(b[k], float)
        for name, fx, fy in (("mean", x, y),
                             ("spread", np.abs(x - np.median(x)), np.abs(y - np.median(y)))):
            se = math.sqrt(fx.var(ddof=1) / fx.size + fy.var(ddof=1) / fy.size)
            out[f"{k} {name}"] = abs(fx.mean() - fy.mean()) / se if se > 0 else 0.0
    return out


def finals(hist) -> dict:
    return {k: hist.last(k) for k in STATS}


_CACHE: dict = {}


def reference(shape: str) -> dict:
    if shape not in _CACHE:
        data, cfg, method = SHAPES[shape]
        _CACHE[shape] = finals(sl.run_supervised(SEEDS[shape], data,
                                                 replace(cfg, method=method)))
    return _CACHE[shape]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_gram_agrees_in_distribution(shape):
    data, cfg, _ = SHAPES[shape]
    z = z_scores(finals(sl.run_supervised(SEEDS[shape], data, replace(cfg, method="gram"))),
                 reference(shape))
    assert max(z.values()) < Z, {k: round(v, 2) for k, v in z.items() if v >= Z}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_control_noise_norm_off_by_ten_percent_is_detected(shape):
    """Noise 10% larger in the Gram draw only: same ||mu||, start and step size."""
    data, cfg, _ = SHAPES[shape]
    cfg = replace(cfg, method="gram", sigma0=cfg.init_std(data), lr=cfg.step_size(data))
    wrong = replace(data, sigma_p=1.1 * data.sigma_p, snr=data.snr / 1.1)
    assert math.isclose(wrong.mu_norm(), data.mu_norm())
    z = z_scores(finals(sl.run_supervised(SEEDS[shape], wrong, cfg)), reference(shape))
    assert max(z.values()) >= Z, z


def test_labels_are_the_weight_paths_labels():
    data, cfg, _ = SHAPES["relu"]
    g = gram.draw([5, 6], data, cfg, [1.0, 1.0], cfg.n, "cpu", torch.float64)
    tr = sl.make_dataset(data, cfg.n, [5, 6], "train", dtype=torch.float64)
    te = sl.make_dataset(data, cfg.n_test, [5, 6], "test", dtype=torch.float64)
    assert torch.equal(g.y, tr.y) and torch.equal(g.y_true, tr.y_true)
    assert torch.equal(g.y_test, te.y) and torch.equal(g.y_true_test, te.y_true)


def test_bartlett_moments():
    """E[L L^T] = df I and Var[(L L^T)_ii] = 2 df for a Wishart W_k(I, df)."""
    gen = torch.Generator().manual_seed(0)
    k, df, reps = 6, 30, 4000
    A = torch.stack([(lambda L: L @ L.T)(gram.bartlett(k, df, gen)) for _ in range(reps)])
    mean = A.mean(0)
    se_diag = math.sqrt(2 * df / reps)
    assert (mean.diagonal() - df).abs().max() < Z * se_diag
    off = mean - torch.diag(mean.diagonal())
    assert off.abs().max() < Z * math.sqrt(df / reps)
    assert abs(A[:, 0, 0].var().item() / (2 * df) - 1) < 0.15
    with pytest.raises(ValueError, match="d - 1 >= 2m \\+ n"):
        gram.bartlett(k, k - 1, gen)


def test_gram_validation():
    cfg = sl.SupervisedConfig(n=20, m=10, method="gram", steps=1, n_test=5)
    with pytest.raises(ValueError, match="needs d - 1 >= 2m \\+ n = 40"):
        sl.run_supervised([0], sl.DataConfig(d=40), cfg)
    with pytest.raises(ValueError, match="one n for all runs"):
        sl.run_supervised([0, 1], sl.DataConfig(d=100), cfg, n=[4, 8])
    with pytest.raises(ValueError, match="draws its own start"):
        sl.run_finetune(torch.zeros(1, 2, 10, 100), [0], sl.DataConfig(d=100), cfg)
    data = sl.DataConfig(d=100)
    train = sl.make_dataset(data, 4, [0])
    with pytest.raises(ValueError, match="cannot train on given samples"):
        sl.make_stepper("gram", torch.zeros(1, 2, 10, 100), train, train, 1.0, 0.1)


def test_cost_does_not_grow_with_d():
    """A gram run at d = 1e6 costs what one at d = 1e2 does (within 2x, best of 3)."""
    cfg = sl.SupervisedConfig(n=20, m=10, q=1.0, steps=50, n_test=1000, method="gram")

    def secs(d):
        data = sl.DataConfig(d=d, snr=3.0 / math.sqrt(d))
        best = math.inf
        for _ in range(3):
            t = time.perf_counter()
            sl.run_supervised([0, 1, 2, 3], data, cfg)
            best = min(best, time.perf_counter() - t)
        return best

    small, big = secs(100), secs(10 ** 6)
    assert big < 2 * small + 0.05, (small, big)
