"""Sweeps on a Dask cluster: a LocalCluster on loopback (two worker processes) runs a sweep's
chunks through ``client.get_executor()`` and gives exactly the in-process result.

A real cluster is the same call with ``Client("tcp://scheduler:8786")`` (bench/README.md)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import sweeps

distributed = pytest.importorskip("distributed")

DATA = sl.DataConfig(d=40)
SUP = sl.SupervisedConfig(m=3, steps=100, record_every=50, n_test=60)
PRE = sl.PretrainConfig(m=3, steps=30)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_supervised_sweep_on_dask_matches_in_process(client, tmp_path):
    grid = lambda **kw: sweeps.supervised_grid([3, 8], [0.5, 1.0], [0, 1, 2], DATA, SUP,  # noqa: E731
                                               memory_gb=1e-7, **kw)
    ref = grid()
    res = grid(executor=client.get_executor(), cache_dir=tmp_path)
    assert res.chunks == {"total": 12, "computed": 12, "cached": 0}
    np.testing.assert_array_equal(res.values, ref.values)
    assert len(list(tmp_path.glob("*.npz"))) == 12            # chunks from the workers are cached
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2                    # two separate processes did the work


def test_simclr_sweep_on_dask_matches_in_process(client):
    grid = lambda **kw: sweeps.simclr_grid([2, 4], [0.6, 0.9], [0, 1], DATA, PRE, SUP,  # noqa: E731
                                           n0_snr2=4.0, memory_gb=1e-7, dtype=torch.float64, **kw)
    ref = grid()
    res = grid(executor=client.get_executor())
    assert res.chunks["total"] == 4
    np.testing.assert_array_equal(res.values, ref.values)
