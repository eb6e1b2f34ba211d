"""Property-based tests (hypothesis): random valid configurations on small shapes never crash,
never return NaN and satisfy the invariants below; random invalid ones always raise a
ValueError whose message starts with the parameter's name.

Invariants: losses >= 0 and errors in [0, 1]; the coefficient-space and weight-space steppers
give the same run (float64, relative 1e-6); permuting the training samples leaves the run
unchanged up to float rounding. The profile ``ci`` (the default, ``HYPOTHESIS_PROFILE``
selects another) is derandomized, so every run of the suite tries the same inputs; the numbers
of valid and invalid inputs tried are printed at the end of the session (tests/conftest.py).
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import simclr_lib as sl
from simclr_lib.training import fit, make_stepper

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, **COMMON)
settings.register_profile("dev", **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

HYPOTHESIS_COUNTS: Counter = Counter()       # printed by tests/conftest.py
F64 = torch.float64


def _number(x, kind):
    """The same value as a Python or a numpy number: both must be accepted."""
    return st.sampled_from([kind, getattr(np, "int64" if kind is int else "float32")]).map(
        lambda t: t(x))


def numbers_like(strategy, kind):
    return strategy.flatmap(lambda x: _number(x, kind))


floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
seeds_st = st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=3, unique=True)

data_st = st.builds(
    sl.DataConfig, d=numbers_like(st.integers(16, 48), int), snr=numbers_like(floats(0.05, 2.0), float),
    sigma_p=floats(0.3, 3.0), p=floats(0.0, 0.4), signal_patch=st.sampled_from(["random", "first"]))

sup_st = st.builds(
    sl.SupervisedConfig, n=numbers_like(st.integers(1, 12), int), m=st.integers(1, 4),
    q=st.sampled_from([1.0, 2.0, 3.0]) | floats(1.0, 4.0), steps=st.integers(1, 15),
    n_test=st.integers(1, 20), record_every=st.integers(1, 8),
    method=st.sampled_from(["auto", "weight", "coefficient"]))

pre_st = st.builds(
    sl.PretrainConfig, n0=st.integers(2, 12), m=st.integers(1, 3), tau=floats(0.2, 3.0),
    steps=st.integers(1, 10), stop=st.just("steps"), loss=st.sampled_from(["infonce", "ntxent"]),
    aug_rho=floats(0.0, 1.0), record_every=st.integers(1, 4)) | st.builds(
    sl.PretrainConfig, n0=st.integers(2, 12), m=st.integers(1, 3), steps=st.integers(1, 10))


def _check_history(hist, runs: int):
    for name, v in hist.metrics.items():
        assert v.shape[0] == runs, name
        assert np.isfinite(v).all(), name
        if name.endswith("loss"):
            assert (v >= 0).all(), name
        if name.endswith("error"):
            assert ((v >= 0) & (v <= 1)).all(), name


@settings(max_examples=60)
@given(data=data_st, cfg=sup_st, seeds=seeds_st, per_run_n=st.booleans())
def test_valid_supervised_runs_are_finite_and_in_range(data, cfg, seeds, per_run_n):
    HYPOTHESIS_COUNTS["valid"] += 1
    n = [max(1, cfg.n - k) for k in range(len(seeds))] if per_run_n else None
    hist = sl.run_supervised(seeds, data, cfg, n=n)
    _check_history(hist, len(seeds))
    assert torch.isfinite(hist.final["W"]).all()


@settings(max_examples=40)
@given(data=data_st, cfg=pre_st, seeds=seeds_st)
def test_valid_pretraining_runs_are_finite(data, cfg, seeds):
    HYPOTHESIS_COUNTS["valid"] += 1
    res = sl.run_pretrain(seeds, data, cfg)
    assert torch.isfinite(res.W).all()
    for name, v in res.history.metrics.items():
        assert np.isfinite(v).all(), name
    assert ((res.history["align_mean"] >= 0) & (res.history["align_mean"] <= 1 + 1e-6)).all()
    assert ((0 <= res.stop_step) & (res.stop_step <= cfg.steps)).all()


def _rel(a, b, tol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= tol * max(scale, 1e-300)


@settings(max_examples=40)
@given(data=data_st, cfg=sup_st, seeds=seeds_st)
def test_coefficient_space_equals_weight_space(data, cfg, seeds):
    HYPOTHESIS_COUNTS["valid"] += 1
    runs = {}
    for method in ("weight", "coefficient"):
        c = sl.config.replace(cfg, method=method)
        runs[method] = sl.run_supervised(seeds, data, c, dtype=F64)
    w, c = runs["weight"], runs["coefficient"]
    for name in ("train_loss", "test_loss", "gamma_max", "rho_bar_max", "rho_under_min"):
        _rel(c[name], w[name], 1e-6)
    _rel(c.final["W"], w.final["W"], 1e-6)


def _permute(data: sl.Dataset, perm: torch.Tensor) -> sl.Dataset:
    return sl.Dataset(data.y[:, perm], data.y_true[:, perm], data.noise[:, perm], data.mu,
                      data.signal_first[:, perm], data.mask[:, perm])


@settings(max_examples=30)
@given(data=data_st, cfg=sup_st, seeds=seeds_st, key=st.integers(0, 2 ** 31))
def test_permuting_the_training_samples_leaves_the_run_unchanged(data, cfg, seeds, key):
    HYPOTHESIS_COUNTS["valid"] += 1
    train = sl.make_dataset(data, cfg.n, seeds, "train", dtype=F64)
    test = sl.make_dataset(data, cfg.n_test, seeds, "test", dtype=F64)
    W0 = sl.init_cnn([sl.stream(s, "init") for s in seeds], cfg.m, data.d, cfg.init_std(data),
                     dtype=F64)
    perm = torch.randperm(cfg.n, generator=torch.Generator().manual_seed(key))
    out = []
    for tr in (train, _permute(train, perm)):
        stepper = make_stepper(cfg.method, W0, tr, test, cfg.q, cfg.step_size(data))
        out.append(fit(stepper, test.y, tr.weights(), cfg.steps, cfg.record_every))
    a, b = out
    for name in ("train_loss", "train_error", "test_loss", "test_error", "gamma_max"):
        _rel(b[name], a[name], 1e-9)
    _rel(b.final["W"], a.final["W"], 1e-9)
    _rel(b.final["rho"], a.final["rho"][..., perm], 1e-8)


# ----------------------------------------------------------------------- invalid inputs

BAD_COUNT = st.one_of(st.integers(-5, 0), st.floats(1.0, 5.0), st.booleans(),
                      st.just("3"), st.none())
BAD_POSITIVE = st.one_of(floats(-10.0, 0.0), st.sampled_from([math.nan, math.inf, -math.inf]),
                         st.just("1.0"), st.booleans())
BAD_NON_NEGATIVE = st.one_of(floats(-10.0, -1e-9), st.sampled_from([math.nan, math.inf, -math.inf]),
                             st.just("1.0"), st.booleans())       # snr = 0 (no signal) is valid
BAD_OPTION = st.text(max_size=8) | st.integers() | st.none()

INVALID = {   # (config class, field) -> values that must be refused
    (sl.DataConfig, "d"): st.one_of(st.integers(-3, 1), st.floats(2.0, 9.0), st.booleans()),
    (sl.DataConfig, "snr"): BAD_NON_NEGATIVE,
    (sl.DataConfig, "sigma_p"): BAD_POSITIVE,
    (sl.DataConfig, "p"): st.one_of(floats(0.5, 5.0), floats(-5.0, -1e-9), st.just(math.nan)),
    (sl.DataConfig, "signal_patch"): BAD_OPTION,
    (sl.SupervisedConfig, "n"): BAD_COUNT,
    (sl.SupervisedConfig, "m"): BAD_COUNT,
    (sl.SupervisedConfig, "steps"): BAD_COUNT,
    (sl.SupervisedConfig, "n_test"): BAD_COUNT,
    (sl.SupervisedConfig, "record_every"): BAD_COUNT,
    (sl.SupervisedConfig, "q"): st.one_of(floats(-5.0, 0.999), st.just(math.inf)),
    (sl.SupervisedConfig, "sigma0"): BAD_POSITIVE,
    (sl.SupervisedConfig, "lr"): BAD_POSITIVE,
    (sl.SupervisedConfig, "method"): BAD_OPTION,
    (sl.PretrainConfig, "n0"): st.one_of(st.integers(-3, 1), st.floats(2.0, 9.0)),
    (sl.PretrainConfig, "m"): BAD_COUNT,
    (sl.PretrainConfig, "tau"): BAD_POSITIVE,
    (sl.PretrainConfig, "sigma0"): BAD_POSITIVE,
    (sl.PretrainConfig, "lam"): BAD_POSITIVE,
    (sl.PretrainConfig, "logit_stop"): BAD_POSITIVE,
    (sl.PretrainConfig, "aug_rho"): st.one_of(floats(1.0 + 1e-9, 9.0), floats(-9.0, -1e-9)),
    (sl.PretrainConfig, "loss"): BAD_OPTION,
    (sl.PretrainConfig, "stop"): BAD_OPTION,
}


def _valid_option(cls, field, value) -> bool:
    return value in {(sl.DataConfig, "signal_patch"): ("random", "first"),
                     (sl.SupervisedConfig, "method"): ("auto", "weight", "coefficient"),
                     (sl.PretrainConfig, "loss"): ("infonce", "ntxent"),
                     (sl.PretrainConfig, "stop"): ("linear_phase", "steps")}.get((cls, field), ())


@settings(max_examples=300)
@given(st.sampled_from(sorted(INVALID, key=lambda k: (k[0].__name__, k[1]))).flatmap(
    lambda k: st.tuples(st.just(k), INVALID[k])))
def test_invalid_config_fields_raise_a_value_error_naming_them(case):
    (cls, field), value = case
    assume(not _valid_option(cls, field, value))
    HYPOTHESIS_COUNTS["invalid"] += 1
    with pytest.raises(ValueError, match=rf"^{field} must "):
        cls(**{field: value})


@settings(max_examples=100)
@given(kind=st.sampled_from(["snr", "n", "seed", "data", "cfg"]), runs=st.integers(1, 3),
       bad=st.sampled_from([0, -1, math.nan, "x", None]))
def test_invalid_pipeline_arguments_raise_a_value_error_naming_them(kind, runs, bad):
    HYPOTHESIS_COUNTS["invalid"] += 1
    seeds, data, cfg = list(range(runs)), sl.DataConfig(d=16), sl.SupervisedConfig(n=4, steps=1)
    kw = {}
    if kind in ("snr", "n"):
        kw[kind] = [0.5 if kind == "snr" else 3] * (runs - 1) + [bad]
    elif kind == "seed":
        seeds = seeds[:-1] + [bad]
    elif kind == "data":
        data = {"d": bad}
    else:
        cfg = sl.PretrainConfig() if bad is None else {"n": bad}
    assume(not (kind in ("seed", "snr") and bad == 0))       # seed 0 and snr 0 are valid
    with pytest.raises(ValueError, match=rf"^{re.escape(kind)} (must|has)"):
        sl.run_supervised(seeds, data, cfg, **kw)
