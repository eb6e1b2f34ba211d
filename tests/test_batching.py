"""Every batched path against its one-at-a-time twin: a run's result does not depend on the
other runs of its batch (padding, masks and per-run parameters included)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import simclr_lib as sl

F64 = torch.float64
SEEDS = [3, 4, 5]


def _close(a, b, rtol=1e-9, atol=1e-12):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=rtol, atol=atol)


def _same_history(batched, singles):
    for r, one in enumerate(singles):
        assert list(batched.metrics) == list(one.metrics)
        np.testing.assert_array_equal(batched.steps, one.steps)
        for name in batched.metrics:
            _close(batched[name][r], one[name][0])
        for key in ("W", "gamma"):
            _close(batched.final[key][r], one.final[key][0])


def test_make_dataset_batch_equals_one_at_a_time():
    cfg = sl.DataConfig(d=101, snr=0.5, p=0.2)
    ns, snrs = [5, 12, 8], [0.2, 0.5, 1.0]
    batch = sl.make_dataset(cfg, ns, SEEDS, "train", snr=snrs, dtype=F64)
    assert batch.noise.shape == (3, 12, 101)
    for r, (seed, n, snr) in enumerate(zip(SEEDS, ns, snrs)):
        one = sl.make_dataset(cfg, n, seed, "train", snr=snr, dtype=F64)
        for f in ("y", "y_true", "noise", "signal_first", "mask"):
            assert torch.equal(getattr(batch, f)[r, :n], getattr(one, f)[0]), f
        assert torch.equal(batch.mu[r], one.mu[0])
        assert not batch.mask[r, n:].any()
        assert (batch.noise[r, n:] == 0).all() and (batch.y[r, n:] == 0).all()


def test_augment_batch_equals_one_at_a_time():
    # d - 1 = 100 noise coordinates: n (d - 1) is not a multiple of 16, where torch's CPU randn
    # redraws its last values, so a padded draw and a short draw differ unless each run
    # draws exactly its own n rows
    cfg = sl.DataConfig(d=101)
    ns = [5, 12, 8]
    batch = sl.augment(sl.make_dataset(cfg, ns, SEEDS, "unlabeled", dtype=F64), SEEDS, 1.0, 0.3)
    for r, (seed, n) in enumerate(zip(SEEDS, ns)):
        one = sl.augment(sl.make_dataset(cfg, n, seed, "unlabeled", dtype=F64), seed, 1.0, 0.3)
        assert torch.equal(batch.noise[r, :n], one.noise[0])
        assert (batch.noise[r, n:] == 0).all()


@pytest.mark.parametrize("method", ["weight", "coefficient"])
def test_run_supervised_batch_equals_one_at_a_time(small_data, method):
    cfg = sl.SupervisedConfig(m=3, steps=40, n_test=60, record_every=10, method=method,
                              lr=5 * 3 / small_data.d)
    ns, snrs = [6, 10, 8], [0.3, 0.5, 0.8]
    batched = sl.run_supervised(SEEDS, small_data, cfg, snr=snrs, n=ns, dtype=F64)
    singles = [sl.run_supervised(s, small_data, cfg, snr=snr, n=n, dtype=F64)
               for s, snr, n in zip(SEEDS, snrs, ns)]
    assert batched.method == method
    _same_history(batched, singles)
    assert np.ptp(batched["train_loss"][:, -1]) > 0          # the runs really differ


def test_run_finetune_batch_equals_one_at_a_time(small_data, rng):
    cfg = sl.SupervisedConfig(m=2, steps=30, n_test=40, record_every=10)
    W0 = 0.05 * torch.randn(3, 2, 2, small_data.d, generator=rng, dtype=F64)
    ns = [4, 9, 6]
    batched = sl.run_finetune(W0, SEEDS, small_data, cfg, n=ns, dtype=F64)
    singles = [sl.run_finetune(W0[r:r + 1], s, small_data, cfg, n=n, dtype=F64)
               for r, (s, n) in enumerate(zip(SEEDS, ns))]
    _same_history(batched, singles)


@pytest.mark.parametrize("stop", ["steps", "linear_phase"])
def test_run_pretrain_batch_equals_one_at_a_time(small_data, stop):
    pre = sl.PretrainConfig(m=3, steps=60, stop=stop, record_every=7, sigma0=1e-4)
    n0s, snrs = [10, 24, 16], [0.5, 0.3, 0.8]
    batched = sl.run_pretrain(SEEDS, small_data, pre, snr=snrs, n0=n0s, dtype=F64)
    for r, (s, n0, snr) in enumerate(zip(SEEDS, n0s, snrs)):
        one = sl.run_pretrain(s, small_data, pre, snr=snr, n0=n0, dtype=F64)
        _close(batched.W[r], one.W[0], rtol=1e-9, atol=1e-15)
        assert batched.stop_step[r] == one.stop_step[0]
        # steps recorded by both agree; a run frozen early keeps its final values to the end
        k = int(np.searchsorted(batched.history.steps, one.history.steps[-1]))
        np.testing.assert_array_equal(batched.history.steps[:k], one.history.steps[:k])
        for name in one.history.metrics:
            _close(batched.history[name][r, :k], one.history[name][0, :k])
            _close(batched.history[name][r, -1], one.history[name][0, -1])
    if stop == "linear_phase":
        assert (batched.stop_step < pre.steps).all()


def test_run_simclr_finetune_batch_equals_one_at_a_time(small_data):
    pre = sl.PretrainConfig(n0=20, m=2, steps=40, stop="steps", sigma0=1e-4)
    ft = sl.SupervisedConfig(m=2, steps=20, n_test=40, record_every=10)
    batched = sl.run_simclr_finetune(SEEDS[:2], small_data, pre, ft, n=[4, 7], n0=[20, 12],
                                     dtype=F64)
    for r, (s, n, n0) in enumerate(zip(SEEDS[:2], [4, 7], [20, 12])):
        one = sl.run_simclr_finetune(s, small_data, pre, ft, n=n, n0=n0, dtype=F64)
        _close(batched.pretrain.W[r], one.pretrain.W[0], atol=1e-15)
        for name in one.finetune.metrics:
            _close(batched.finetune[name][r], one.finetune[name][0])
