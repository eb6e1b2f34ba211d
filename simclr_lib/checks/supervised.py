"""Checks of the supervised and label-complexity chapters (Theorem 4.3, Kou et al. 2023,
Theorem 4.2's label complexity, Condition 4.1's unlabeled budget), on the grid studies of
:mod:`simclr_lib.studies` (a :class:`~simclr_lib.studies.Study` holds each metric as
``(d, r, n, snr, seed)``) and on batches of runs.

Every check returns a :class:`~simclr_lib.report.Verdict`; each has a control in
``tests/test_checks_supervised.py`` on which it says NO. ``python -m
simclr_lib.checks.supervised``, the command the result files under ``book/data/`` record,
forwards to the studies' command line, :func:`simclr_lib.studies.main`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .._validate import check_int
from ..analysis import Interval, fraction, rate_holds
from ..report import Verdict, verdict
from ..studies import Study

__all__ = ["crossing", "boundary_fit", "check_boundary", "check_regime", "check_kou_law",
           "check_label_complexity", "check_budget", "check_mechanism", "one_class_probability",
           "check_span"]


# ---------------------------------------------------------------------------------------------
# Statistics of the boundary

def crossing(xs: Sequence[float], curve: np.ndarray, level: float) -> np.ndarray:
    """Where each column of ``curve`` (len(xs), k) first falls below ``level``, interpolated
    in ``log x`` between the grid points around it: ``xs[0]`` if it starts below, NaN if it
    never falls below."""
    x = np.log(np.asarray(xs, float))
    c = np.asarray(curve, float).reshape(len(x), -1)
    out = np.full(c.shape[1], np.nan)
    for j in range(c.shape[1]):
        below = np.nonzero(c[:, j] < level)[0]
        if below.size == 0:
            continue
        k = below[0]
        if k == 0:
            out[j] = x[0]
            continue
        f = (c[k - 1, j] - level) / (c[k - 1, j] - c[k, j])
        out[j] = x[k - 1] + f * (x[k] - x[k - 1])
    return np.exp(out).reshape(np.asarray(curve).shape[1:])


def _inside(ns, n_star):
    """A crossing strictly inside the n grid (not clipped at its first point)."""
    return np.isfinite(n_star) & (n_star > min(ns))


def _fit(logx: np.ndarray, n_star: np.ndarray, ns) -> np.ndarray:
    """Least-squares coefficients of ``log n*`` on ``[1, logx...]`` over crossings inside
    the grid; NaN when too few."""
    ok = _inside(ns, n_star)
    X = np.column_stack([np.ones(ok.sum()), logx[ok]])
    if ok.sum() < X.shape[1] + 1 or np.linalg.matrix_rank(X) < X.shape[1]:
        return np.full(logx.shape[1] + 1, np.nan)
    return np.linalg.lstsq(X, np.log(n_star[ok]), rcond=None)[0]


def boundary_fit(ns: Sequence[int], logx: np.ndarray, values: np.ndarray, level: float,
                 boot: int = 1000, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, list[Interval]]:
    """Fit ``log n* = c + b . logx`` where ``n*`` is where the seed-mean of ``values``
    (n, cells, seeds) falls below ``level``; ``logx`` is (cells, k). Returns the point
    ``n*`` per cell and one bootstrap 95% interval (over seeds) per coefficient ``b``."""
    values = np.asarray(values, float)
    logx = np.asarray(logx, float).reshape(values.shape[1], -1)
    rng = np.random.default_rng(0) if rng is None else rng
    n_star = crossing(ns, values.mean(-1), level)
    point = _fit(logx, n_star, ns)[1:]
    S = values.shape[-1]
    reps = np.array([_fit(logx, crossing(ns, values[..., rng.integers(0, S, S)].mean(-1),
                                         level), ns)[1:] for _ in range(boot)])
    cis = []
    for k in range(logx.shape[1]):
        r = reps[:, k][np.isfinite(reps[:, k])]
        lo, hi = (np.quantile(r, [0.025, 0.975]) if r.size > boot // 2
                  else (np.nan, np.nan))
        cis.append(Interval(float(point[k]), float(lo), float(hi)))
    return n_star, cis


def _cells(study: Study, metric: str, a: int = 0, b: int = 0) -> np.ndarray:
    return study[metric][a, b]                                  # (n, snr, seed)


def check_boundary(study: Study, q: float, level: float, metric: str = "test_loss",
                   name: str | None = None, glue_as: str | None = None) -> Verdict:
    """Theorem 4.3's boundary: ``n* ~ SNR^-a`` with ``a = q``, ``n*`` where the mean
    ``metric`` falls below ``level``; holds when the bootstrap 95% interval of ``a``
    contains ``q`` and excludes ``q - 1`` and ``q + 1``."""
    vals = _cells(study, metric)
    logx = np.log(study.snrs[0])[:, None]
    n_star, (ci,) = boundary_fit(study.ns, logx, vals, level)
    a = Interval(-ci.value, -ci.hi, -ci.lo)
    used = int(_inside(study.ns, n_star).sum())
    holds = (used >= 3 and np.isfinite(a.lo)
             and rate_holds(a, q, [q - 1, q + 1]))
    return verdict(name or f"Theorem 4.3 (boundary, q = {q:g})",
                   f"n* ~ SNR^-a with a = q = {q:g}: 95% interval of a contains {q:g}, "
                   f"excludes {q - 1:g} and {q + 1:g}",
                   f"a = {a} from {used} SNRs, {len(study.seeds)} seeds "
                   f"(n* at mean {metric.replace('_', ' ')} {level:g})",
                   holds, glue_as, a=a.value, lo=a.lo, hi=a.hi, used=used, level=level,
                   const=_const(n_star, study.snrs[0], q))


def _const(n_star, snrs, q):
    """The geometric mean of ``n* SNR^q`` over the measured crossings (NaN if none)."""
    v = np.log(n_star) + q * np.log(snrs)
    v = v[np.isfinite(v)]
    return float(np.exp(v.mean())) if v.size else float("nan")


def check_regime(ok: np.ndarray, where: np.ndarray, name: str, claim: str,
                 high: float = 0.9, glue_as: str | None = None, **values) -> Verdict:
    """"With high probability" on the runs of the cells ``where`` (n, snr): ``ok`` (n, snr,
    seed) says which runs meet the bound. Holds when the fraction's 95% binomial interval
    reaches ``high`` (consistent with a fraction >= high) and lies above 1/2."""
    runs = np.asarray(ok, bool)[np.asarray(where, bool)]
    if runs.size == 0:
        return verdict(name, claim, "no run in the region", False, glue_as)
    f = fraction(runs)
    holds = f.hi >= high and f.lo > 0.5
    return verdict(name, f"{claim}, with high probability (fraction of runs: 95% interval "
                   f"reaches {high:g} and lies above 0.5)",
                   f"{int(runs.sum())}/{runs.size} runs = {f} over "
                   f"{int(np.asarray(where).sum())} cells", holds, glue_as,
                   frac=f.value, lo=f.lo, hi=f.hi, runs=runs.size, high=high, **values)


def check_kou_law(study: Study, level: float, glue_as: str | None = None
                  ) -> tuple[Verdict, Verdict]:
    """Kou et al. 2023: ``n* ~ d sigma_p^4 / ||mu||^4 = SNR^-4 d^-1``, ``n*`` where the mean
    excess test error falls below ``level``, fitted on ``(log SNR, log d)`` jointly. Two
    verdicts: the SNR exponent's interval contains -4 and excludes -3, -5; the d exponent's
    contains -1 and excludes 0 and -2. A study at one d cannot tell the d exponent: NO."""
    vals = study["excess_error"][:, 0]                         # (d, n, snr, seed)
    D, N, K, S = vals.shape
    cells = vals.transpose(1, 0, 2, 3).reshape(N, D * K, S)
    logx = np.column_stack([np.log(study.snrs).ravel(),
                            np.repeat(np.log(np.asarray(study.ds, float)), K)])
    if len(set(study.ds)) < 2:
        n_star, (c_snr,) = boundary_fit(study.ns, logx[:, :1], cells, level)
        c_d = Interval(float("nan"), float("nan"), float("nan"))
    else:
        n_star, (c_snr, c_d) = boundary_fit(study.ns, logx, cells, level)
    used = int(_inside(study.ns, n_star).sum())
    meas = f"from {used} (d, SNR) cells, d in {study.ds}, {S} seeds"
    v1 = verdict("Kou et al. 2023 (SNR exponent)",
                 "n* ~ SNR^-4 at fixed d: 95% interval of the exponent contains -4, "
                 "excludes -3 and -5", f"exponent {c_snr} {meas}",
                 np.isfinite(c_snr.lo) and rate_holds(c_snr, -4, [-3, -5]),
                 None if glue_as is None else glue_as + "snr_",
                 exp=c_snr.value, lo=c_snr.lo, hi=c_snr.hi)
    d_txt = (f"exponent {c_d} {meas}" if np.isfinite(c_d.value)
             else f"d not varied (d = {study.ds}): the d exponent cannot be fitted")
    v2 = verdict("Kou et al. 2023 (d exponent)",
                 "n* ~ d / ||mu||^4 = SNR^-4 d^-1: 95% interval of the d exponent contains "
                 "-1, excludes 0 and -2", d_txt,
                 bool(np.isfinite(c_d.lo) and rate_holds(c_d, -1, [0, -2])),
                 None if glue_as is None else glue_as + "d_",
                 exp=c_d.value, lo=c_d.lo, hi=c_d.hi, used=used)
    return v1, v2


def check_label_complexity(study: Study, level: float, predicted: float, name: str,
                           metric: str = "test_loss", b: int = 0,
                           glue_as: str | None = None) -> tuple[np.ndarray, Verdict]:
    """Label complexity ``n*(SNR)``, where the mean ``metric`` falls below ``level``; the
    log-log slope's bootstrap 95% interval must contain ``predicted`` and exclude
    ``predicted +- 1``. Returns ``n*`` per SNR and the verdict."""
    vals = _cells(study, metric, 0, b)
    n_star, (ci,) = boundary_fit(study.ns, np.log(study.snrs[0])[:, None], vals, level)
    inside = _inside(study.ns, n_star)
    # n* clipped at the grid's first point is still a measured (upper) value: keep it
    n_fit = np.where(np.isfinite(n_star), n_star, np.nan)
    if not inside.any():
        from ..analysis import loglog_fit
        ci = Interval(loglog_fit(study.snrs[0], n_fit)[0], np.nan, np.nan)
    out = int((~np.isfinite(n_star)).sum())
    beyond = f" and > {max(study.ns)} (beyond the grid) at {out} SNRs" if out else ""
    holds = bool(np.isfinite(n_star).all() and np.isfinite(ci.lo)
                 and rate_holds(ci, predicted, [predicted - 1, predicted + 1]))
    v = verdict(name, f"n*(SNR) ~ SNR^{predicted:g}: 95% interval of the log-log slope "
                f"contains {predicted:g}, excludes {predicted - 1:g} and {predicted + 1:g}",
                f"slope {ci} over SNR {study.snrs[0].min():g}..{study.snrs[0].max():g}, "
                f"n* from {np.nanmin(n_star):.3g} to {np.nanmax(n_star):.3g}"
                f"{beyond}, "
                f"{len(study.seeds)} seeds (n* at mean {metric.replace('_', ' ')} {level:g})",
                holds, glue_as, slope=ci.value, lo=ci.lo, hi=ci.hi, beyond=out,
                n_min=float(np.nanmin(n_star)), n_max=float(np.nanmax(n_star)))
    return n_star, v


def check_budget(study: Study, level: float, n: int, predicted: float = -2.0,
                 metric: str = "test_loss", glue_as: str | None = None
                 ) -> tuple[np.ndarray, Verdict]:
    """Condition 4.1's unlabeled budget: ``n0*(SNR)``, the ``n0`` where fine-tuning on ``n``
    labels reaches mean ``metric`` below ``level`` (interpolated in ``log n0`` over the
    budgets ``r = n0 SNR^2``), fitted against SNR; holds when the slope's bootstrap 95%
    interval contains ``predicted`` and excludes ``predicted +- 1``."""
    i = study.ns.index(n)
    vals = study[metric][0, :, i]                               # (r, snr, seed)
    snrs = study.snrs[0]
    n0 = np.array([[max(2, math.ceil(r / s ** 2)) for s in snrs] for r in study.rs])
    rng = np.random.default_rng(0)

    def n0_star(v):
        out = np.full(len(snrs), np.nan)
        for j in range(len(snrs)):
            out[j] = crossing(n0[:, j], v[:, j:j + 1], level)[0]
        return out

    point = n0_star(vals.mean(-1))
    S = vals.shape[-1]

    def slope(y):
        ok = np.isfinite(y) & (y > n0[0])
        if ok.sum() < 3:
            return np.nan
        return np.polyfit(np.log(snrs[ok]), np.log(y[ok]), 1)[0]

    reps = np.array([slope(n0_star(vals[..., rng.integers(0, S, S)].mean(-1)))
                     for _ in range(1000)])
    reps = reps[np.isfinite(reps)]
    lo, hi = np.quantile(reps, [0.025, 0.975]) if reps.size > 500 else (np.nan, np.nan)
    ci = Interval(float(slope(point)), float(lo), float(hi))
    holds = bool(np.isfinite(ci.lo) and rate_holds(ci, predicted,
                                                    [predicted - 1, predicted + 1]))
    v = verdict("Condition 4.1 (unlabeled budget)",
                f"n0*(SNR) ~ SNR^{predicted:g}: 95% interval of the slope contains "
                f"{predicted:g}, excludes {predicted - 1:g} and {predicted + 1:g}",
                f"slope {ci} from {int(np.isfinite(point).sum())} SNRs, {S} seeds "
                f"(n0* where n = {n} labels reach mean {metric.replace('_', ' ')} {level:g})",
                holds, glue_as, slope=ci.value, lo=ci.lo, hi=ci.hi)
    return point, v


def check_mechanism(benign, harmful, ratio: float, glue_as: str | None = None) -> Verdict:
    """Theorem 4.3's mechanism on two batches of runs (histories with Definition 5.1's
    summaries): a run agrees when it fits its labels (training error 0) and, benign,
    ``gamma_max > rho_bar_max`` or, harmful, ``rho_bar_max > ratio * gamma_max``. Holds as
    :func:`check_regime` on the fraction of all runs that agree."""
    g_b, r_b = benign.last("gamma_max"), benign.last("rho_bar_max")
    g_h, r_h = harmful.last("gamma_max"), harmful.last("rho_bar_max")
    ok = np.concatenate([(benign.last("train_error") == 0) & (g_b > r_b),
                         (harmful.last("train_error") == 0) & (r_h > ratio * g_h)])
    return check_regime(ok[None, None], np.ones((1, 1), bool), "Theorem 4.3 (mechanism)",
                        f"runs fit their labels; benign: gamma_max > rho_bar_max; harmful: "
                        f"rho_bar_max > {ratio:g} gamma_max", glue_as=glue_as,
                        ratio_b=float(np.median(g_b / r_b)),
                        ratio_h=float(np.median(r_h / g_h)))


def one_class_probability(n: int) -> float:
    """The chance that ``n`` uniform labels all fall in one class, ``2^(1 - n)``."""
    return 2.0 ** (1 - check_int("n", n))


def check_span(delta: torch.Tensor, basis: torch.Tensor, gap: float, tol: float = 1e-8,
               glue_as: str | None = None) -> Verdict:
    """Definition 5.1: ``delta = W(T) - W(0)`` (R, 2, m, d) lies in the span of ``basis``
    (R, k, d), and the two trainers agree (``gap``, their largest relative difference)."""
    Qb, _ = torch.linalg.qr(basis.transpose(1, 2))
    inside = torch.einsum("rdk,rjmk->rjmd", Qb, torch.einsum("rdk,rjmd->rjmk", Qb, delta))
    resid = ((delta - inside).norm() / delta.norm()).item()
    fmt = lambda x: f"< {tol:.0e}" if x < tol else f"{x:.1e}"  # noqa: E731
    return verdict("Definition 5.1",
                   f"W(T) - W(0) lies in span{{mu, xi_1..xi_n}} and weight- and "
                   f"coefficient-space GD agree, to relative {tol:.0e}",
                   f"relative norm outside the span {fmt(resid)}, largest relative "
                   f"coefficient gap {fmt(gap)}", resid < tol and gap < tol, glue_as)


if __name__ == "__main__":          # the recorded commands: forward to simclr_lib.studies
    from ..studies import main

    raise SystemExit(main())
