"""Control tests of ``sl.checks.kou``: each check says yes on a synthetic grid where its claim
is true and NO where it is false; plus the committed grid's configuration and a reduced
re-run of it (the chapter ``book/kou.md`` loads the committed file)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import simclr_lib as sl
from simclr_lib import fast

K = sl.checks.kou
DS = np.array([100 + 10 * t for t in range(0, 100, 5)])
MUS = np.round(0.1 * np.arange(100), 1)


def synthetic(a: float, seeds: int = 10, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """err (D, M, S): from 0.5 down to 0.1 as a function of ||mu|| / (1.6 (d/100)^a), so the
    crossing of any level scales exactly as d^a."""
    rng = np.random.default_rng(seed)
    star = 1.6 * (DS / 100.0) ** a
    mean = 0.1 + 0.8 / (1 + np.exp(4 * MUS[None, :] / star[:, None]))
    return mean[..., None] + noise * rng.standard_normal((DS.size, MUS.size, seeds))


def test_crossing_interpolates():
    err = np.array([[0.5, 0.3, 0.1], [0.5, 0.5, 0.5]])
    out = K.crossing(err, [0.0, 1.0, 2.0], 0.2)
    assert out[0] == pytest.approx(1.5) and np.isnan(out[1])


@pytest.mark.parametrize("a,holds", [(0.25, True), (0.4, False), (0.1, False)])
def test_exponent_check_control(a, holds):
    ci = K.exponent(synthetic(a), DS, MUS, boot=200)
    assert K.check_exponent(f"control a={a}", ci).holds is holds
    assert abs(ci.value - a) < 0.02            # the fit recovers the true exponent


@pytest.mark.parametrize("a,holds", [(0.25, True), (0.4, False)])
def test_table_exponent_control(a, holds):
    ci = K.table_exponent(synthetic(a).mean(2), DS, MUS)
    assert K.check_exponent(f"table control a={a}", ci).holds is holds


def test_agreement_control():
    ours = synthetic(0.25, seed=1)
    same = synthetic(0.25, seed=2).mean(2)     # another draw of the same model
    other = synthetic(0.1, seed=2).mean(2)     # a much flatter boundary
    assert K.check_agreement("control same", ours, same).holds
    assert not K.check_agreement("control other", ours, other).holds
    with pytest.raises(ValueError, match="differ"):
        K.check_agreement("bad", ours, same[:3])


def test_noise_floor_matches_two_draws():
    a, b = synthetic(0.25, seed=3), synthetic(0.25, seed=4)
    measured = np.abs(a.mean(2) - b.mean(2)).mean()
    assert measured == pytest.approx(K.noise_floor(a), rel=0.1)


def test_published_tables_are_committed_unchanged():
    test, train = K.published("test"), K.published("train")
    assert test.shape == train.shape == (100, 100)
    assert test[0, 0] == pytest.approx(0.4978) and 0 <= test.min() and test.max() <= 1
    with pytest.raises(ValueError, match="kind must be"):
        K.published("val")


def test_committed_grid_configuration_and_a_reduced_rerun():
    g = K.load_grid()
    cfg = g["config"]
    assert g["test_error"].shape == (100, 100, 10)
    for key in ("n", "n_test", "m", "q", "p", "lr", "steps"):
        assert cfg[key] == fast.KOU[key], key
    assert cfg["ds"] == fast.KOU["ds"] and np.allclose(cfg["mu_norms"], fast.KOU["mu_norms"])
    assert cfg["command"].startswith("python -m simclr_lib.fast book/data/kou_grid.npz")
    rows, cols, seeds = [0, 57], [0, 25, 99], [0, 1, 2]
    re = fast.kou_grid([fast.KOU["ds"][t] for t in rows], g["mu_norms"][cols].tolist(), seeds)
    # the same rows need the same cell seeds: row t of the full grid is cell_seed(s, t)
    for i, t in enumerate(rows):
        data, c = fast.kou_configs(fast.KOU["ds"][t])
        row = fast.supervised_cells([sl.cell_seed(s, t) for s in seeds],
                                    g["mu_norms"][cols].tolist(), c.n, data, c)
        np.testing.assert_allclose(row["test_error"], g["test_error"][t][cols][:, seeds],
                                   atol=1e-3)
    assert re["test_error"].shape == (2, 3, 3)


def test_local_exponents_recover_the_slope():
    local = K.local_exponents(synthetic(0.25, noise=0.0), DS, MUS)
    assert local.shape == (DS.size - 1,)
    assert np.allclose(local, 0.25, atol=0.02)
    assert np.allclose(K.local_exponents(synthetic(0.4, noise=0.0), DS, MUS), 0.4, atol=0.02)


def test_large_d_is_the_gram_method_run_by_run():
    """A reduced large-d grid: each cell is gram.run_supervised of its seed and ||mu||, and the
    seed chunks do not change the result."""
    ds, mus, seeds = [100, 10 ** 6], [1.0, 20.0], [0, 1, 2]
    out = K.large_d(ds, mus, seeds, chunk=2)
    err = out["test_error"]
    assert err.shape == (2, 2, 3) and np.isfinite(err).all()
    assert np.array_equal(err, K.large_d(ds, mus, seeds, chunk=3)["test_error"])
    data, cfg = fast.kou_configs(10 ** 6)
    h = sl.gram.run_supervised([sl.cell_seed(2, 1, 1)], data, cfg,
                               snr=[20.0 / 10 ** 3], record=False)
    assert err[1, 1, 2] == pytest.approx(float(h.last("test_error")[0]))
    assert err[1, 1].mean() < 0.3 < err[1, 0].mean()      # ||mu|| = 20 learns, 1 does not


@pytest.mark.parametrize("kw,match", [({"ds": [30]}, "d"), ({"mu_norms": [0.0]}, "mu_norm"),
                                      ({"chunk": 0}, "chunk"), ({"mu_norms": []}, "non-empty")])
def test_large_d_validates(kw, match):
    with pytest.raises(ValueError, match=match):
        K.large_d(**kw)
