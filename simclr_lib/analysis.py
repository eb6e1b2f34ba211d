"""Statistics every check uses: fractions of seeds with binomial intervals, log-log fits with
bootstrap intervals over seeds, and the rate test "the interval contains the prediction and
excludes the nearest alternatives".

All randomness here (the bootstrap) comes from a ``numpy.random.Generator`` the caller passes
or from a fixed default seed, never from global state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Interval", "binomial_ci", "fraction", "mean_ci", "loglog_fit", "bootstrap_slope",
           "rate_holds", "label_complexity"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% (by default) interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float

    def contains(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def __str__(self) -> str:
        return f"{_g3(self.value)} [{_g3(self.lo)}, {_g3(self.hi)}]"


def _g3(x: float) -> str:
    """``x`` to 3 significant digits, rounded from 9 first: a value that is a tie in exact
    arithmetic (e.g. a bootstrap quantile of fractions of 8 seeds, -0.2125) prints the same
    whatever the last bits its BLAS left (-0.21249999999 or -0.21250000001)."""
    return f"{float(f'{x:.9g}'):.3g}"


def binomial_ci(k: int, n: int, level: float = 0.95) -> Interval:
    """The fraction ``k / n`` with its exact (Clopper-Pearson) interval."""
    from scipy.special import betaincinv     # = scipy.stats.beta.ppf, without scipy.stats (62 MB)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, a))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - a))
    return Interval(k / n, lo, hi)


def fraction(ok: Sequence[bool] | np.ndarray, level: float = 0.95) -> Interval:
    """The fraction of seeds where ``ok`` is true, with its binomial interval."""
    ok = np.asarray(ok, bool).ravel()
    return binomial_ci(int(ok.sum()), int(ok.size), level)


def mean_ci(x: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Mean of the per-seed values ``x`` with its Student-t interval (zero width when all
    values agree)."""
    from scipy.special import stdtrit         # = scipy.stats.t.ppf
    x = np.asarray(x, float).ravel()
    if x.size < 2:
        raise ValueError(f"an interval over seeds needs at least 2 seeds, got {x.size}")
    half = stdtrit(x.size - 1, 0.5 + level / 2) * x.std(ddof=1) / np.sqrt(x.size)
    return Interval(float(x.mean()), float(x.mean() - half), float(x.mean() + half))


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ``log y`` against ``log x`` (finite, positive points);
    NaN when fewer than two such points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.unique(x[ok]).size < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def bootstrap_slope(x: Sequence[float], y: np.ndarray, reduce=np.nanmean, boot: int = 2000,
                    level: float = 0.95, rng: np.random.Generator | None = None) -> Interval:
    """The log-log slope of ``reduce(y over seeds)`` against ``x``, with a percentile bootstrap
    interval over seeds.

    ``y`` is (len(x), seeds); each bootstrap replicate resamples the seeds (columns) with
    replacement, reduces them per point and refits. Replicates with fewer than two usable points
    are dropped; the interval is NaN when none is usable.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if y.ndim != 2 or y.shape[0] != x.size:
        raise ValueError(f"y must be (len(x)={x.size}, seeds), got shape {y.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    point = loglog_fit(x, reduce(y, axis=1))[0]
    S = y.shape[1]
    reps = []
    for _ in range(boot):
        yb = y[:, rng.integers(0, S, S)]
        with np.errstate(all="ignore"):
            reps.append(loglog_fit(x, reduce(yb, axis=1))[0])
    reps = np.asarray(reps)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(point, float("nan"), float("nan"))
    a = (1 - level) / 2
    return Interval(point, float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a)))


def rate_holds(ci: Interval, predicted: float, alternatives: Sequence[float]) -> bool:
    """A rate verdict: the interval contains ``predicted`` and excludes every alternative."""
    return ci.contains(predicted) and not any(ci.contains(a) for a in alternatives)


def label_complexity(result, threshold: float, metric: str = "test_loss") -> np.ndarray:
    """``n*``: the smallest labeled sample size ``n`` of a sweep whose *mean over seeds* of
    ``metric`` is strictly below ``threshold``, NaN where no ``n`` of the grid is.

    ``result`` is a ``SweepResult`` (``simclr_lib.sweeps``) whose first axis is ``n``
    (``supervised_grid``, ``simclr_grid``); the answer has one entry per cell of the other axes
    (e.g. one per SNR of an ``(n, snr)`` sweep). The criterion is the chosen metric of the
    seed mean (default the test loss, the quantity Theorems 4.2 and 4.3 bound), not a
    fraction of seeds. Chapters 1 and 6.
    """
    from ._validate import check_float
    if not isinstance(metric, str) or metric not in result.metrics:
        raise ValueError(f"metric must be one of {tuple(result.metrics)}, got {metric!r}")
    high = 1.0 if metric.endswith("_error") else None
    threshold = check_float("threshold", threshold, 0.0, high, low_open=True)
    if list(result.axes)[0] != "n" or len(result.axes) < 3:
        raise ValueError(f"label_complexity needs a sweep whose first axis is n, got axes "
                         f"{tuple(result.axes)}")
    ns = np.asarray(result.axes["n"], float)
    order = np.argsort(ns, kind="stable")
    below = result.mean(metric)[order] < threshold          # (len(ns), *other axes)
    first = np.argmax(below, axis=0)
    return np.where(below.any(axis=0), ns[order][first], np.nan)
