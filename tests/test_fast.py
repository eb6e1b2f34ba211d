"""``fast.supervised_cells`` (all signal strengths of a seed in one batch) against the exact
coefficient-space path ``run_supervised`` on the same seeds and streams, and ``kou_grid``.

Tolerances. Both paths do the same arithmetic in a different order (batched products over
the stacked signal strengths, the filter sign folded into the noise coefficients), so they
differ by rounding only. In float64 that is ~1e-16 relative per operation; over <= 60 GD
steps of a smooth loss the losses agree to 1e-10 and no margin comes within that of zero,
so the test errors agree exactly. In float32 (~6e-8 per operation) the losses agree to
1e-5 and a test sample can flip only if its margin is within ~1e-5 of zero: we allow one
flipped sample in a thousand (1e-3 on a test error of n_test = 1000 samples).
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import fast
from simclr_lib.config import replace

MUS = [0.0, 0.7, 2.0, 5.0]
SEEDS = [0, 3, 11]


def reference(seeds, mu, data, cfg, dtype):
    """The same cells through ``run_supervised`` in coefficient space, one ||mu|| at a time."""
    h = sl.run_supervised(seeds, replace(data, snr=mu / (data.sigma_p * math.sqrt(data.d))),
                          replace(cfg, method="coefficient"), dtype=dtype)
    return {k: h.last(k) for k in fast.METRICS}


@pytest.mark.parametrize("dtype,tol,err_tol", [(torch.float64, 1e-10, 0.0),
                                               (torch.float32, 1e-5, 1e-3)])
@pytest.mark.parametrize("q,lr,d", [(1.0, 2.5, 150), (3.0, 0.5, 120)])
def test_cells_equal_run_supervised(dtype, tol, err_tol, q, lr, d):
    data, cfg = fast.kou_configs(d, n_test=1000, steps=60)
    cfg = replace(cfg, q=q, lr=lr, sigma0=cfg.sigma0 if q == 1 else 0.05)
    got = fast.supervised_cells(SEEDS, MUS, cfg.n, data, cfg, dtype=dtype, batch=2)
    for j, mu in enumerate(MUS):
        if mu == 0:
            continue
        ref = reference(SEEDS, mu, data, cfg, dtype)
        for k in ("train_loss", "test_loss"):
            np.testing.assert_allclose(got[k][j], ref[k], rtol=tol, atol=tol, err_msg=k)
        assert np.abs(got["test_error"][j] - ref["test_error"]).max() <= err_tol
    assert {k: v.shape for k, v in got.items()} == {k: (len(MUS), len(SEEDS))
                                                     for k in fast.METRICS}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_compiled_relu_passes_equal_the_torch_cells(dtype, tol):
    """On the CPU with ReLU, supervised_cells runs the compiled passes (fast._relu_cells,
    kernels.py); they equal the tensor version fast._cells (which other devices and q != 1 use)
    on the same streams, ||mu|| = 0 included. In float32 a 100-step ReLU run amplifies rounding
    (an activation at the edge of zero), hence the looser tolerance; test errors may differ by
    a flipped sample."""
    data, cfg = fast.kou_configs(140, n_test=400, steps=100)
    a = fast._cells(SEEDS, MUS, 20, data, cfg, torch.device("cpu"), dtype)
    b = fast._relu_cells(SEEDS, MUS, 20, data, cfg, dtype)
    for k in ("train_loss", "test_loss"):
        np.testing.assert_allclose(b[k], a[k], rtol=tol, atol=tol, err_msg=k)
    assert np.abs(a["test_error"] - b["test_error"]).max() <= (0 if dtype == torch.float64
                                                                else 2 / 400)


def test_compiled_passes_detect_divergence():
    """A step that overflows float32 stops the run with the tensor version's error, at the
    same step; a large but finite one does not."""
    data, cfg = fast.kou_configs(120, n_test=10, steps=50)
    with pytest.raises(sl.DivergenceError, match="diverged at step 1 "):
        fast.supervised_cells([0], [5.0], 20, data, replace(cfg, lr=1e38))
    with pytest.raises(sl.DivergenceError, match="diverged at step 1 "):
        fast._cells([0], [5.0], 20, data, replace(cfg, lr=1e38), torch.device("cpu"),
                    torch.float32)
    assert fast.supervised_cells([0], [5.0], 20, data, replace(cfg, lr=1e30))["train_loss"] == 0


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_blas_threads_change_cells_by_rounding_only(dtype, tol):
    """numpy's BLAS computes K sig and the test products. With 1 or 2 threads it may pick
    another kernel and sum in another order (OpenBLAS on AVX-512 uses its direct sgemm for
    small products only on one thread), so the cells agree to rounding, not bit for bit:
    losses within ``tol`` relative, at most one flipped test sample in n_test. The control
    (29 steps instead of 30) must fall outside that tolerance."""
    from threadpoolctl import threadpool_limits
    data, cfg = fast.kou_configs(300, n_test=1000, steps=30)
    out = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            out.append(fast.supervised_cells(SEEDS, MUS, 20, data, cfg, dtype=dtype))
    control = fast.supervised_cells(SEEDS, MUS, 20, data, replace(cfg, steps=29), dtype=dtype)

    def close(a, b):
        return all(np.allclose(a[k], b[k], rtol=tol, atol=0) for k in ("train_loss", "test_loss")
                   ) and np.abs(a["test_error"] - b["test_error"]).max() <= 1 / cfg.n_test
    assert close(out[0], out[1])
    assert not close(out[0], control)


def test_draw_run_is_make_dataset():
    """One run's draws, in make_dataset's order: the fast path and the datasets agree."""
    data = sl.DataConfig(d=50, snr=0.3, p=0.2)
    ds = sl.make_dataset(data, 30, [4, 9], "test")
    for r, seed in enumerate([4, 9]):
        yt, y, first, noise = sl.data.draw_run(data, 30, sl.stream(seed, "test"))
        assert torch.equal(yt, ds.y_true[r]) and torch.equal(y, ds.y[r])
        assert torch.equal(first, ds.signal_first[r])
        assert torch.equal(noise, ds.noise[r, :, 1:]) and not ds.noise[r, :, 0].any()


def test_zero_signal_is_the_limit_of_weak_signal():
    """||mu|| = 0 (no DataConfig allows snr = 0) equals the limit snr -> 0 of the reference."""
    data, cfg = fast.kou_configs(130, n_test=500, steps=40)
    got = fast.supervised_cells(SEEDS, [0.0], cfg.n, data, cfg, dtype=torch.float64)
    ref = reference(SEEDS, 1e-12, data, cfg, torch.float64)
    for k in fast.METRICS:
        np.testing.assert_allclose(got[k][0], ref[k], rtol=1e-9, atol=1e-9, err_msg=k)
    assert abs(got["test_error"].mean() - 0.5) < 0.1        # no signal: chance level


def test_batching_does_not_change_cells():
    data, cfg = fast.kou_configs(110, n_test=200, steps=20)
    a = fast.supervised_cells(SEEDS, MUS, 20, data, cfg, batch=1)
    b = fast.supervised_cells(SEEDS, MUS, 20, data, cfg, batch=3)
    for k in fast.METRICS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_kou_grid_rows_and_split():
    """Row t of the grid is supervised_cells at d = ds[t] with seeds cell_seed(s, t); the
    result does not depend on how the rows are spread over an executor."""
    ds, mus = [100, 130, 170], [0.0, 3.0]
    g1 = fast.kou_grid(ds, mus, seeds=[0, 1], n_test=100, steps=10, chunks=1)
    with ThreadPoolExecutor(2) as ex:
        g2 = fast.kou_grid(ds, mus, seeds=[0, 1], n_test=100, steps=10, executor=ex)
    data, cfg = fast.kou_configs(130, n_test=100, steps=10)
    row = fast.supervised_cells([sl.cell_seed(0, 1), sl.cell_seed(1, 1)], mus, 20, data, cfg)
    for k in fast.METRICS:
        assert g1[k].shape == (3, 2, 2)
        np.testing.assert_array_equal(g1[k], g2[k])
        np.testing.assert_array_equal(g1[k][1], row[k])
    assert g1["ds"].tolist() == ds and g1["mu_norms"].tolist() == mus


@pytest.mark.parametrize("kw,msg", [
    ({"mu_norms": [-1.0]}, "mu_norm must be"),
    ({"mu_norms": []}, "mu_norms must be a non-empty"),
    ({"mu_norms": 1.0}, "mu_norms must be a non-empty"),
    ({"n": 0}, "n must be an integer"),
    ({"batch": 0}, "batch must be an integer"),
    ({"seeds": [-1]}, "seed must be an integer"),
    ({"dtype": torch.float16}, "dtype must be"),
])
def test_validation(kw, msg):
    data, cfg = fast.kou_configs(100, n_test=10, steps=1)
    args = {"seeds": [0], "mu_norms": [1.0], "n": 4, "data": data, "cfg": cfg, **kw}
    with pytest.raises(ValueError, match=msg):
        fast.supervised_cells(**args)


@pytest.mark.parametrize("kw,msg", [({"ds": []}, "ds must be"), ({"ds": [1]}, "d must be"),
                                    ({"chunks": 0}, "chunks must be"),
                                    ({"steps": 0}, "steps must be")])
def test_kou_grid_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        fast.kou_grid(**{"mu_norms": [1.0], "seeds": [0], **kw})
