"""Science smoke tests: the paper's three regimes at d = 2000 with the library's defaults
(q = 3, m = 10, sigma_p = 1), means over 4 seeds. Seconds each.

Measured when written (float32, CPU): supervised n snr^3 = 5 -> mean test error 0.007,
n snr^3 = 0.054 -> 0.505; pre-training n0 snr^2 = 16 -> mean alignment 0.984,
n0 snr^2 = 0.25 -> 0.22; SimCLR + fine-tuning at snr = 0.2 (n0 = 400, n = 16) -> 0.000,
direct training on the same 16 labels -> 0.505.
"""
from __future__ import annotations

import pytest

import simclr_lib as sl

SEEDS = [0, 1, 2, 3]
D = 2000


def _supervised_error(snr: float, n: int) -> float:
    hist = sl.run_supervised(SEEDS, sl.DataConfig(d=D, snr=snr), sl.SupervisedConfig(n=n))
    assert (hist.last("train_error") == 0).all()          # both regimes fit the training set
    return float(hist.last("test_error").mean())


def test_benign_overfitting_when_n_snr_q_is_large():
    n, snr = 40, 0.5                                      # n snr^3 = 5
    assert _supervised_error(snr, n) <= 0.05


def test_harmful_overfitting_when_n_snr_q_is_small():
    n, snr = 16, 0.15                                     # n snr^3 = 0.054
    assert _supervised_error(snr, n) >= 0.35


@pytest.mark.parametrize("snr, n0, low, high", [
    (0.4, 100, 0.9, 1.0),                                 # n0 snr^2 = 16: aligned with mu
    (0.05, 100, 0.0, 0.5),                                # n0 snr^2 = 0.25: not aligned
])
def test_pretraining_alignment_follows_n0_snr2(snr, n0, low, high):
    res = sl.run_pretrain(SEEDS, sl.DataConfig(d=D, snr=snr), sl.PretrainConfig(n0=n0))
    assert (res.stop_step < sl.PretrainConfig().steps).all()     # stopped at the linear phase
    align = float(res.history.last("align_mean").mean())
    assert low <= align <= high, align


def test_simclr_finetuning_needs_few_labels_where_direct_training_fails():
    snr, n0, n = 0.2, 400, 16                             # n0 snr^2 = 16, n snr^3 = 0.13
    data = sl.DataConfig(d=D, snr=snr)
    res = sl.run_simclr_finetune(SEEDS, data, sl.PretrainConfig(n0=n0), sl.SupervisedConfig(n=n))
    direct = sl.run_supervised(SEEDS, data, sl.SupervisedConfig(n=n))
    assert float(res.finetune.last("test_error").mean()) <= 0.05
    assert float(direct.last("test_error").mean()) >= 0.35
