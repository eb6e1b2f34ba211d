"""The statistics of ``sl.analysis`` against values computed by hand or by scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import simclr_lib as sl

A = sl.analysis


def test_binomial_ci_is_clopper_pearson():
    ci = A.binomial_ci(7, 10)
    assert ci.value == pytest.approx(0.7)
    assert ci.lo == pytest.approx(stats.beta.ppf(0.025, 7, 4))
    assert ci.hi == pytest.approx(stats.beta.ppf(0.975, 8, 3))
    assert A.binomial_ci(0, 5).lo == 0.0 and A.binomial_ci(5, 5).hi == 1.0


def test_mean_ci_is_the_student_t_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    ci = A.mean_ci(x)
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2.0
    assert (ci.value, ci.lo, ci.hi) == pytest.approx((3.5, 3.5 - half, 3.5 + half))
    assert ci.contains(3.5) and not ci.contains(3.5 + 1.01 * half)
    same = A.mean_ci([2.0, 2.0, 2.0])
    assert same.lo == same.hi == 2.0
    with pytest.raises(ValueError, match="at least 2 seeds"):
        A.mean_ci([1.0])


def test_mean_ci_covers_the_mean_at_its_level():
    rng = np.random.default_rng(0)
    hits = [A.mean_ci(rng.normal(1.0, 2.0, 8)).contains(1.0) for _ in range(2000)]
    assert 0.93 < np.mean(hits) < 0.97


def test_interval_prints_ties_the_same_whatever_the_last_bits():
    a = sl.analysis.Interval(-0.125, -0.2125 - 1e-15, -0.0125)
    b = sl.analysis.Interval(-0.125, -0.2125 + 1e-15, -0.0125)
    assert str(a) == str(b) == "-0.125 [-0.212, -0.0125]"
    assert str(sl.analysis.Interval(0.2366, 0.22449, 0.2461)) == "0.237 [0.224, 0.246]"
