"""Bad input: one test per validation rule, each asserting that the message names the parameter
and its allowed range; and divergence, which must raise rather than return NaN."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib.pretraining import pretrain

TINY = sl.DataConfig(d=20)


def _unlabeled(runs: int = 1) -> sl.Dataset:
    return sl.make_dataset(TINY, 4, list(range(runs)), "unlabeled")


def raises(pattern: str):
    return pytest.raises(ValueError, match=re.escape(pattern))


def test_d_must_be_at_least_2():
    with raises("d must be an integer >= 2, got 1"):
        sl.DataConfig(d=1)


@pytest.mark.parametrize("make", [
    lambda: sl.DataConfig(snr=-0.1),
    lambda: sl.make_dataset(TINY, 4, [0], snr=-1.0),
    lambda: sl.run_supervised([0, 1], TINY, snr=[0.5, -0.1]),
])
def test_snr_must_be_non_negative(make):
    with raises("snr must be in [0.0, inf)"):
        make()


def test_pretraining_needs_a_signal():
    """snr = 0 (no signal) is a valid data model, but pre-training's default step size
    lam tau / (2 ||mu||^2) needs ||mu|| > 0."""
    with raises("pre-training needs ||mu|| > 0"):
        sl.run_pretrain([0], sl.DataConfig(d=20, snr=0.0), sl.PretrainConfig(n0=4, steps=1))


@pytest.mark.parametrize("make, name, low", [
    (lambda: sl.SupervisedConfig(n=0), "n", 1),
    (lambda: sl.SupervisedConfig(n=4.0), "n", 1),                # not an integer
    (lambda: sl.SupervisedConfig(n_test=-3), "n_test", 1),
    (lambda: sl.PretrainConfig(n0=1), "n0", 2),                  # InfoNCE needs negatives
    (lambda: sl.make_dataset(TINY, 0, [0]), "n", 1),
    (lambda: sl.run_supervised([0, 1], TINY, n=[4, 0]), "n", 1),
    (lambda: sl.run_pretrain([0, 1], TINY, n0=[5, 1]), "n0", 2),
])
def test_sample_sizes_must_be_positive_integers(make, name, low):
    with raises(f"{name} must be an integer >= {low}"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: sl.SupervisedConfig(m=0), "m"),
    (lambda: sl.SupervisedConfig(steps=0), "steps"),
    (lambda: sl.SupervisedConfig(record_every=0), "record_every"),
    (lambda: sl.PretrainConfig(m=0), "m"),
    (lambda: sl.PretrainConfig(steps=-1), "steps"),
])
def test_counts_must_be_positive_integers(make, name):
    with raises(f"{name} must be an integer >= 1"):
        make()


def test_q_must_be_at_least_1():
    with raises("q must be in [1.0, inf), got 0.5"):
        sl.SupervisedConfig(q=0.5)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_tau_must_be_positive(tau):
    with raises(f"tau must be in (0.0, inf), got {tau}"):
        sl.PretrainConfig(tau=tau)


@pytest.mark.parametrize("make", [lambda: sl.SupervisedConfig(lr=0.0),
                                  lambda: sl.PretrainConfig(lr=-1e-3)])
def test_lr_must_be_positive(make):
    with raises("lr must be in (0.0, inf)"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: sl.SupervisedConfig(sigma0=0.0), "sigma0"),
    (lambda: sl.PretrainConfig(sigma0=-1.0), "sigma0"),
    (lambda: sl.DataConfig(sigma_p=0.0), "sigma_p"),
    (lambda: sl.PretrainConfig(lam=0.0), "lam"),
    (lambda: sl.PretrainConfig(logit_stop=-1.0), "logit_stop"),
    (lambda: sl.augment(_unlabeled(), [0], sigma_p=-1.0), "sigma_p"),
])
def test_scales_must_be_positive(make, name):
    with raises(f"{name} must be in (0.0, inf)"):
        make()


@pytest.mark.parametrize("p", [0.5, 0.7, -0.1])
def test_p_must_be_in_0_to_half(p):
    with raises(f"p must be in [0.0, 0.5), got {p}"):
        sl.DataConfig(p=p)


@pytest.mark.parametrize("make, name", [
    (lambda: sl.augment(_unlabeled(), [0], 1.0, rho=1.5), "rho"),
    (lambda: sl.augment(_unlabeled(), [0], 1.0, rho=-0.2), "rho"),
    (lambda: sl.PretrainConfig(aug_rho=-0.1), "aug_rho"),
    (lambda: sl.PretrainConfig(aug_rho=1.01), "aug_rho"),
])
def test_rho_must_be_in_0_1(make, name):
    with raises(f"{name} must be in [0.0, 1.0]"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: sl.DataConfig(snr=math.nan), "snr"),
    (lambda: sl.DataConfig(snr=math.inf), "snr"),
    (lambda: sl.SupervisedConfig(lr=math.inf), "lr"),
    (lambda: sl.PretrainConfig(lr=math.nan), "lr"),
    (lambda: sl.DataConfig(sigma_p=math.nan), "sigma_p"),
    (lambda: sl.DataConfig(sigma_p=-math.inf), "sigma_p"),
    (lambda: sl.make_dataset(TINY, 4, [0], snr=math.nan), "snr"),
])
def test_values_must_be_finite(make, name):
    low = "[0.0" if name == "snr" else "(0.0"        # snr = 0 is the no-signal model
    with raises(f"{name} must be a finite number in {low}, inf)"):
        make()


@pytest.mark.parametrize("make, name", [
    (lambda: sl.SupervisedConfig(method="adam"), "method"),
    (lambda: sl.PretrainConfig(loss="triplet"), "loss"),
    (lambda: sl.PretrainConfig(stop="never"), "stop"),
    (lambda: sl.DataConfig(signal_patch="second"), "signal_patch"),
    (lambda: sl.make_dataset(TINY, 3, [0], split="val"), "split"),
    (lambda: sl.stream(0, "valid"), "stream name"),
    (lambda: pretrain(torch.zeros(1, 2, 20), _unlabeled(), _unlabeled(), 1.0,
                      torch.ones(1), 1, loss="simclr"), "loss"),
    (lambda: pretrain(torch.zeros(1, 2, 20), _unlabeled(), _unlabeled(), 1.0,
                      torch.ones(1), 1, stop="step"), "stop"),
])
def test_unknown_option_names(make, name):
    with pytest.raises(ValueError, match=rf"^{name} must be one of \(.*\), got '"):
        make()


def test_ntxent_cannot_stop_at_the_linear_phase():
    with raises("stop='linear_phase' needs loss='infonce'"):
        sl.PretrainConfig(loss="ntxent")
    sl.PretrainConfig(loss="ntxent", stop="steps")                 # the valid combination


@pytest.mark.parametrize("make, message", [
    (lambda: sl.run_supervised([0, 1], TINY, snr=[0.1, 0.2, 0.3]),
     "snr has 3 entries but there are 2 runs (seeds)"),
    (lambda: sl.run_supervised([0, 1, 2], TINY, n=[4, 5]),
     "n has 2 entries but there are 3 runs (seeds)"),
    (lambda: sl.run_pretrain([0, 1], TINY, n0=[4, 5, 6]),
     "n0 has 3 entries but there are 2 runs (seeds)"),
    (lambda: sl.augment(_unlabeled(2), [0], 1.0),
     "seeds has 1 entries but the data set has 2 runs"),
    (lambda: sl.run_finetune(torch.zeros(2, 2, 10, 21), [0, 1], TINY),       # wrong d
     "W0 must have shape (runs=2, 2, m=10, d=20), got (2, 2, 10, 21)"),
    (lambda: sl.run_finetune(torch.zeros(3, 2, 10, 20), [0, 1], TINY),       # wrong runs
     "W0 must have shape (runs=2, 2, m=10, d=20), got (3, 2, 10, 20)"),
    (lambda: sl.run_finetune(torch.zeros(2, 2, 4, 20), [0, 1], TINY),        # m != cfg.m
     "W0 must have shape (runs=2, 2, m=10, d=20), got (2, 2, 4, 20)"),
    (lambda: sl.run_finetune(torch.zeros(2, 20, 20), [0, 1], TINY),          # unsplit encoder
     "W0 must have shape (runs=2, 2, m=10, d=20), got (2, 20, 20)"),
    (lambda: sl.run_simclr_finetune([0], TINY, sl.PretrainConfig(m=3)),
     "ft.m (10) must equal pre.m (3)"),
])
def test_mismatched_shapes(make, message):
    with raises(message):
        make()


@pytest.mark.parametrize("make", [
    lambda: sl.make_dataset(TINY, 3, [0], dtype=torch.float16),
    lambda: sl.run_supervised([0], TINY, dtype=torch.int64),
    lambda: sl.run_pretrain([0], TINY, dtype="float32"),
])
def test_dtype_must_be_float32_or_float64(make):
    with raises("dtype must be torch.float32 or torch.float64"):
        make()


@pytest.mark.parametrize("device, message", [
    ("notadevice", "device must be 'cpu', 'cuda' or 'cuda:N', got 'notadevice'"),
    ("meta", "device must be 'cpu' or 'cuda', got 'meta'"),
])
def test_device_must_be_cpu_or_cuda(device, message):
    with raises(message):
        sl.make_dataset(TINY, 3, [0], device=device)
    with raises(message):
        sl.run_supervised([0], TINY, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda():
    with raises("device 'cuda' requested but CUDA is not available; use device='cpu'"):
        sl.run_pretrain([0], TINY, device="cuda")


@pytest.mark.parametrize("seeds", [[], ()])
def test_seeds_must_be_non_empty(seeds):
    with raises("seeds must be a non-empty sequence of integers >= 0"):
        sl.run_supervised(seeds, TINY)


@pytest.mark.parametrize("make", [lambda: sl.run_supervised([0, -1], TINY),
                                  lambda: sl.make_dataset(TINY, 3, -5),
                                  lambda: sl.stream(-1, "train")])
def test_seed_must_be_non_negative(make):
    with raises("seed must be an integer >= 0, got -"):
        make()


@pytest.mark.parametrize("method", ["weight", "coefficient"])
def test_huge_lr_raises_divergence_error_naming_the_step(method):
    """lr = 1e15 overflows float32 in the first step: after it the largest preactivation is
    about 6 lr (measured), and its cube passes float32's 3.4e38 once it exceeds 7.0e12.
    (This test used lr = 1e12, which lands at 6.0e12, just below the overflow, with the current
    random streams: the network then fits the training set in one step, the loss underflows to
    0 and GD stops at a finite point, which test_large_lr_never_returns_nan accepts.)"""
    cfg = sl.SupervisedConfig(n=8, lr=1e15, steps=50, n_test=50, method=method)
    message = r"diverged at step \d+ .*try a smaller step size lr \(now 1000000000000000.0\)"
    with pytest.raises(sl.DivergenceError, match=message):
        sl.run_supervised([0, 1], sl.DataConfig(d=200, snr=0.5), cfg)


def test_huge_pretraining_lr_raises_divergence_error():
    pre = sl.PretrainConfig(n0=10, m=2, lr=1e6, steps=50, stop="steps")
    with pytest.raises(sl.DivergenceError, match=r"diverged at step \d+ .*smaller step size lr"):
        sl.run_pretrain([0], sl.DataConfig(d=200, snr=0.5), pre)


@pytest.mark.parametrize("lr", [1e2, 1e4, 1e6, 1e9, 1e15, 1e30])
def test_large_lr_never_returns_nan(lr):
    """A large step either raises DivergenceError or leaves every recorded value finite."""
    cfg = sl.SupervisedConfig(n=8, lr=lr, steps=30, n_test=50, record_every=3)
    try:
        hist = sl.run_supervised([0, 1], sl.DataConfig(d=200, snr=0.5), cfg)
    except sl.DivergenceError as err:
        assert "smaller step size" in str(err)
        return
    assert all(np.isfinite(v).all() for v in hist.metrics.values())
    assert torch.isfinite(hist.final["W"]).all()
