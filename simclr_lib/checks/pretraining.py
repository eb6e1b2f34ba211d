"""Checks and experiments of the pre-training chapter (``book/pretraining.md``): Lemma 5.1,
Lemma 5.2 and Theorem 5.3 (alignment and signs), plus the chapter's studies beyond the
theorem (long runs under fixed and fresh views, augmentation strength, NT-Xent).
``tests/test_checks_pretraining.py`` runs each check on a control where its claim is false.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from ..analysis import fraction, loglog_fit
from ..config import DataConfig, PretrainConfig
from ..diagnostics import power_matrix, spectrum
from ..pipelines import run_pretrain
from ..report import Verdict, verdict
from ..pretraining import pretrain

__all__ = ["one_step", "lemma_5_1", "spectra", "lemma_5_2", "theorem_5_3", "kept_signs",
           "signs_kept", "theorem_5_3_signs", "long_runs", "augmentation", "ntxent"]


def one_step(sigmas: Sequence[float], snr: float, n0: int, seed: int = 0,
             data: DataConfig = DataConfig()) -> dict:
    """One pre-training step (float64) from the same start rescaled to each ``sigma0``,
    against the power-method step ``W0 A``: relative error and largest logit per sigma0."""
    cfg = PretrainConfig(n0=n0, sigma0=1.0, stop="steps", steps=1, record_every=1)
    base = run_pretrain([seed] * len(sigmas), data, cfg, snr=snr, dtype=torch.float64)
    s = torch.tensor(list(sigmas), dtype=torch.float64)[:, None, None]
    W0 = s * base.W0
    res = pretrain(W0, base.data, base.view, cfg.tau, base.lr, 1, stop="steps", record_every=1)
    A = power_matrix(base.data, base.view, cfg.tau, float(base.lr[0]))
    pred = W0 @ A
    err = (res.W - W0 - pred).flatten(1).norm(dim=1) / pred.flatten(1).norm(dim=1)
    return {"sigma0": np.asarray(sigmas, float), "rel_err": err.numpy(),
            "max_logit": res.history["max_logit"][:, 0]}


def lemma_5_1(step: dict, sigma0: float = 1e-6, tol: float = 1e-2) -> Verdict:
    """Lemma 5.1: at ``sigma0`` one GD step equals ``W (I + A)`` to a relative error <= tol."""
    print(" sigma0   max|logit|   ||W1 - W0(I+A)|| / ||W0 A||")
    for s, lg, e in zip(step["sigma0"], step["max_logit"], step["rel_err"]):
        print(f"{s:7.0e}   {lg:9.1e}     {e:9.1e}")
    i = int(np.argmin(np.abs(step["sigma0"] - sigma0)))
    if not np.isclose(step["sigma0"][i], sigma0):
        raise ValueError(f"sigma0={sigma0} is not among the measured {step['sigma0'].tolist()}")
    slope, _ = loglog_fit(step["sigma0"], step["rel_err"])
    err = float(step["rel_err"][i])
    return verdict("Lemma 5.1", f"one GD step = W(I + A), relative error <= {tol:g} at "
                                f"sigma0 = {sigma0:g}",
                   f"relative error {err:.1e} at sigma0 = {sigma0:g}; error ~ "
                   f"sigma0^{slope:.2f}", err <= tol, "l51_", err=err, slope=slope)


def spectra(n0s: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
            data: DataConfig = DataConfig(), cfg: PretrainConfig = PretrainConfig()
            ) -> dict[str, np.ndarray]:
    """Lemma 5.2's spectrum of ``A`` for every (n0, snr, seed), float64: per run ``k`` =
    n0 SNR^2, ``ratio`` = lambda_1 / (2 eta ||mu||^2 / tau), ``gap`` = lambda_1 / lambda_2,
    ``cos`` = ``|cos(v_1, mu)|`` (and the cell's ``n0``)."""
    out: dict[str, list] = {k: [] for k in ("n0", "k", "ratio", "gap", "cos")}
    steps1 = replace(cfg, stop="steps", steps=1)
    for n0 in n0s:
        for snr in snrs:
            for seed in seeds:               # one run at a time: memory O(n0 d)
                res = run_pretrain([seed], data, replace(steps1, n0=n0), snr=snr,
                                   dtype=torch.float64)
                r = 0
                lr = float(res.lr[r])
                lam = 2 * lr * float(res.data.mu[r].norm()) ** 2 / cfg.tau
                ev, v1 = spectrum(res.data, res.view, cfg.tau, lr, run=r, k=2)
                mu = res.data.mu[r]
                vals = (n0, n0 * snr ** 2, float(ev[0]) / lam, float(ev[0] / ev[1]),
                        abs(float(v1 @ mu)) / float(mu.norm()))
                for key, v in zip(out, vals):
                    out[key].append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def lemma_5_2(sp: dict, k_min: float = 4.0, tol: float = 0.15) -> Verdict:
    """Lemma 5.2: in every run with n0 SNR^2 >= k_min, lambda_1 is within ``tol`` (relative)
    of 2 eta ||mu||^2 / tau. Prints the fraction of runs with its interval."""
    big = sp["k"] >= k_min
    dev = np.abs(sp["ratio"][big] - 1)
    k = sp["k"][big]
    refined = np.abs(sp["ratio"][big] / (1 + 1 / (2 * k)) - 1)
    ok = fraction(dev <= tol)
    gap_slope, _ = loglog_fit(k, sp["gap"][big])
    return verdict("Lemma 5.2", f"lambda_1 within {tol:.0%} of 2 eta ||mu||^2 / tau in every "
                                f"run with n0 SNR^2 >= {k_min:g}",
                   f"{ok} of {big.sum()} runs; max deviation {dev.max():.3f} (vs "
                   f"1 + 1/(2 n0 SNR^2): {refined.max():.3f}); min |cos(v1, mu)| "
                   f"{sp['cos'][big].min():.3f}", bool(dev.max() <= tol), "l52_",
                   dev=float(dev.max()), refined=float(refined.max()), gap_slope=gap_slope,
                   cos4=_mean(sp["cos"][np.isclose(sp["k"], 4)]),
                   cos16=_mean(sp["cos"][np.isclose(sp["k"], 16)]), tol=tol)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def theorem_5_3(align: np.ndarray, kgrid: np.ndarray, high: float = 0.9,
                low: float = 0.5) -> Verdict:
    """Theorem 5.3 on an alignment grid ``align`` (n0, snr, seeds) with ``kgrid`` (n0, snr) =
    n0 SNR^2: the seed mean of mean ``|cos(w_r, mu)|`` is >= ``high`` in every cell with
    n0 SNR^2 >= 4 and <= ``low`` in every cell with n0 SNR^2 <= 1/4. Prints the fraction of
    single runs that meet the bound, with its interval."""
    mean = align.mean(-1)
    hi, lo = kgrid >= 4, kgrid <= 0.25
    runs_hi = fraction(align[hi] >= high)
    return verdict("Theorem 5.3", f"seed-mean |cos(w_r, mu)| >= {high} in every cell with "
                                  f"n0 SNR^2 >= 4 and <= {low} where n0 SNR^2 <= 1/4",
                   f"min over {hi.sum()} cells {mean[hi].min():.3f} (single runs >= {high}: "
                   f"{runs_hi}); max over {lo.sum()} cells {mean[lo].max():.3f}",
                   bool(mean[hi].min() >= high and mean[lo].max() <= low), "t53_",
                   high_min=float(mean[hi].min()), low_max=float(mean[lo].max()),
                   k1=float(mean[np.isclose(kgrid, 1)].mean()), runs=runs_hi.value,
                   runs_lo=runs_hi.lo)


def kept_signs(res) -> np.ndarray:
    """Per filter (R, 2m): the sign of <w_r, mu> after pre-training equals that at the start."""
    mu = res.data.mu
    a = torch.einsum("rkd,rd->rk", res.W0, mu)
    b = torch.einsum("rkd,rd->rk", res.W, mu)
    return (a * b > 0).numpy()


def signs_kept(n0s: Sequence[int], seeds: Sequence[int], data: DataConfig = DataConfig(),
               snr: float | None = None, memory_gb: float = 0.02) -> dict[int, np.ndarray]:
    """:func:`kept_signs` after ``run_pretrain(seeds, data, PretrainConfig(n0=n0), snr)``
    for every ``n0``: {n0: (seeds, 2m) booleans}. Seeds run in chunks that fit ``memory_gb``
    (``chunks.run_bytes``) and only the signs are kept, not the samples; a run's result does
    not depend on its batch-mates, so the chunking changes nothing but the memory."""
    from ..chunks import draw_bytes, run_bytes, runs_within
    seeds, out = list(seeds), {}
    for n0 in n0s:
        cfg = PretrainConfig(n0=n0)
        k = runs_within(memory_gb, run_bytes("alignment", data, n0, pre=cfg),
                        draw_bytes(n0, data.d))
        out[n0] = np.concatenate([kept_signs(run_pretrain(seeds[i:i + k], data, cfg, snr=snr))
                                  for i in range(0, len(seeds), k)])
    return out


def theorem_5_3_signs(kept: dict[float, np.ndarray], cos_v1: dict[float, float]) -> Verdict:
    """Theorem 5.3's signs: at each n0 SNR^2 ``k`` the fraction of filters that keep their
    sign (``kept[k]`` booleans) has a 95% interval containing ``1 - arccos|cos(v1, mu)|/pi``,
    and the fraction kept at the largest k is at least that at the smallest."""
    ks = sorted(kept)
    fr = {k: fraction(kept[k]) for k in ks}
    pred = {k: 1 - math.acos(min(1.0, cos_v1[k])) / math.pi for k in ks}
    ok = all(fr[k].contains(pred[k]) for k in ks) and fr[ks[-1]].value >= fr[ks[0]].value
    return verdict("Theorem 5.3 (signs)",
                   "fraction of filters keeping the sign of <w_r(0), mu>: 95% interval "
                   "contains 1 - arccos|cos(v1, mu)|/pi, not decreasing in n0 SNR^2",
                   "; ".join(f"k = {k:g}: {fr[k]} (pred. {pred[k]:.3f})" for k in ks),
                   ok, "t53s_", **{f"kept{k:g}": fr[k].value for k in ks})


def long_runs(snr: float, ks: Sequence[float], seeds: Sequence[int], steps: int,
              fresh: bool, data: DataConfig = DataConfig(), every: int = 5) -> dict:
    """Pre-training run on for ``steps`` at each n0 SNR^2 in ``ks``: per k the alignment and
    loss (seeds, T), the end of the power-method phase per seed and the top eigenvector's
    ``|cos(v1, mu)|`` (fixed views' A, float32)."""
    out = {}
    for k in ks:
        n0 = max(2, round(k / snr ** 2))
        cfg = PretrainConfig(n0=n0, stop="steps", steps=steps, record_every=every,
                             fresh_views=fresh)
        res = run_pretrain(list(seeds), data, cfg, snr=snr)
        h = res.history
        out[k] = {"n0": n0, "t": h.steps, "align": h["align_mean"], "loss": h["loss"],
                  "stop": h.steps[(h["max_logit"] > cfg.logit_stop).argmax(1)]}
    return out


def augmentation(snr: float, ks: Sequence[float], rhos: Sequence[float],
                 seeds: Sequence[int], data: DataConfig = DataConfig()) -> dict:
    """Alignment and stop step at the end of the power-method phase against the views' noise
    correlation rho: {k: (align (len(rhos), seeds), stop (len(rhos), seeds))}."""
    out = {}
    for k in ks:
        n0 = round(k / snr ** 2)
        rs = [run_pretrain(list(seeds), data, PretrainConfig(n0=n0, aug_rho=r), snr=snr)
              for r in rhos]
        out[k] = (np.array([r.history.last("align_mean") for r in rs]),
                  np.array([r.stop_step for r in rs]))
    return out


def ntxent(snr: float, n0: int, seed: int, lrs: Sequence[float], steps: int = 200,
           data: DataConfig = DataConfig()) -> dict:
    """NT-Xent (tau = 0.5, sigma0 = 1e-3) for several step sizes on one seed's pairs, and the
    paper's InfoNCE at the end of its power-method phase on the same pairs."""
    cfg = PretrainConfig(n0=n0, loss="ntxent", stop="steps", steps=steps, record_every=10,
                         tau=0.5, sigma0=1e-3)
    base = run_pretrain([seed] * len(lrs), data, replace(cfg, steps=1), snr=snr)
    nt = pretrain(base.W0, base.data, base.view, cfg.tau,
                  torch.tensor(list(lrs), dtype=base.W0.dtype), steps, loss="ntxent",
                  stop="steps", record_every=cfg.record_every)
    info = run_pretrain([seed], data, PretrainConfig(n0=n0), snr=snr)
    return {"lr": np.asarray(lrs), "max_align": nt.history["align_mean"].max(1),
            "align": nt.history.last("align_mean"), "loss": nt.history.last("loss"),
            "info": float(info.history.last("align_mean")[0])}
