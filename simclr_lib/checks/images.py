"""Checks of the image experiments (chapter 7, :ref:`real-images`, and the paper's Appendix A).

The paper's image claim is empirical: with a few hundred unlabeled images, SimCLR pre-training
followed by fine-tuning beats direct supervised training of the same CNN when labels are
scarcest, and the gap closes as labels become plentiful. Every comparison here is *paired by
seed* (a seed's two pipelines share their test split, unlabeled pool and labels), and every
interval is over seeds:

* :func:`gain_interval` -- the mean paired accuracy gain with a 95% Student-t interval;
* :func:`remark_mnist` -- the remark's verdict: the gain at the smallest ``n`` has its
  interval above 0 *and* the gain shrinks by the largest ``n`` (interval of the paired
  difference above 0); the fraction of seeds where pre-training is ahead is shown beside it
  with its binomial interval;
* :func:`pair_survey` and :func:`gain_follows_alignment` -- the gain across digit pairs
  against the pre-trained filters' alignment with each pair's class direction, with a
  bootstrap-over-seeds interval of the rank correlation.

Control tests (``tests/test_checks_images.py``) run each check where its claim is false and
assert that it says NO.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..analysis import Interval, fraction, mean_ci
from ..diagnostics import alignment
from ..image_study import LabelEfficiency, label_efficiency
from ..images import ImageConfig, ImageTask, class_direction, digits_task
from ..report import Verdict, verdict

__all__ = ["gain_interval", "remark_mnist", "PairSurvey", "pair_survey",
           "gain_follows_alignment", "filter_alignment"]


def _gain(res: LabelEfficiency, n: int) -> np.ndarray:
    if n not in res.ns:
        raise ValueError(f"n must be one of the run's label counts {res.ns}, got {n!r}")
    k = res.ns.index(n)
    return res.accuracy["simclr"][k] - res.accuracy["supervised"][k]       # (seeds,)


def gain_interval(res: LabelEfficiency, n: int, level: float = 0.95) -> Interval:
    """Paired gain in test accuracy of SimCLR + fine-tuning over direct training at ``n``
    labels: the mean over seeds with its Student-t interval. Chapter 7, Appendix A."""
    return mean_ci(_gain(res, n), level)


def remark_mnist(res: LabelEfficiency, result: str, glue_as: str | None = None) -> Verdict:
    """The verdict of the remark "SimCLR saves labels on real images" on ``res``.

    Claim (typed once, here): at the smallest ``n`` of the run the paired gain's 95% interval
    over seeds lies above 0, and the gap closes: the paired difference ``gain(n_min) -
    gain(n_max)`` has its 95% interval above 0. Glues ``gain``, ``gain_lo``, ``gain_hi``,
    ``close``, ``close_lo``, ``close_hi``, ``wins`` (fraction of seeds ahead, with ``wins_lo``,
    ``wins_hi``), ``seeds``, ``n_min``, ``n_max``.
    """
    n_min, n_max = min(res.ns), max(res.ns)
    if n_min == n_max:
        raise ValueError("remark_mnist needs at least two label counts (the gap must close)")
    g_lo, g_hi = _gain(res, n_min), _gain(res, n_max)
    gain, close = mean_ci(g_lo), mean_ci(g_lo - g_hi)
    wins = fraction(g_lo > 0)
    S = len(res.seeds)
    holds = gain.lo > 0 and close.lo > 0
    return verdict(
        result,
        f"at n = {n_min} the paired accuracy gain of SimCLR + FT over direct training has its "
        f"95% interval over seeds above 0, and by n = {n_max} the gain has shrunk "
        f"(interval of gain(n = {n_min}) - gain(n = {n_max}) above 0)",
        f"gain at n = {n_min}: {gain} ({S} seeds); shrink by n = {n_max}: {close}; "
        f"SimCLR + FT ahead in {int((g_lo > 0).sum())}/{S} seeds {wins}",
        holds, glue_as, gain=gain.value, gain_lo=gain.lo, gain_hi=gain.hi, close=close.value,
        close_lo=close.lo, close_hi=close.hi, wins=int((g_lo > 0).sum()), wins_lo=wins.lo,
        wins_hi=wins.hi, seeds=S, n_min=n_min, n_max=n_max)


def filter_alignment(res: LabelEfficiency, task: ImageTask, cfg: ImageConfig) -> np.ndarray:
    """Mean ``|cos(w_r, mu_hat)|`` of each seed's pre-trained filters (seeds,), with ``mu_hat``
    the task's class-mean difference of patch sums (:func:`~simclr_lib.images.class_direction`),
    the images' analogue of ``2 mu`` (Theorem 5.3). A diagnostic: labels enter only here."""
    mu = class_direction(task, cfg.patch, cfg.stride).to(res.pretrain.W.dtype)
    W = res.pretrain.W.cpu()
    return alignment(W, mu.expand(W.shape[0], -1)).mean(1).numpy()


@dataclass
class PairSurvey:
    """Per digit pair: ``align[p]`` and ``gain[p]`` are (seeds,) arrays at ``n`` labels, and
    ``direct[p]`` the direct-training accuracy (seeds,)."""

    pairs: list[tuple[int, int]]
    n: int
    align: dict[tuple[int, int], np.ndarray]
    gain: dict[tuple[int, int], np.ndarray]
    direct: dict[tuple[int, int], np.ndarray]

    def table(self) -> str:
        rows = [f"{'pair':<8}{'alignment':>10}{'gain':>8}{'95% interval':>18}{'direct':>8}"]
        for p in self.pairs:
            g = mean_ci(self.gain[p])
            rows.append(f"{p[0]} vs {p[1]:<3}{self.align[p].mean():>10.3f}{g.value:>8.3f}"
                        f"{f'[{g.lo:.3f}, {g.hi:.3f}]':>18}{self.direct[p].mean():>8.3f}")
        return "\n".join(rows)


def pair_survey(pairs: Sequence[tuple[int, int]], seeds: Sequence[int], cfg: ImageConfig,
                n: int = 2, done: dict[tuple[int, int], LabelEfficiency] | None = None
                ) -> PairSurvey:
    """SimCLR + fine-tuning against direct training at ``n`` labels on each digit pair of the
    bundled digits (:func:`~simclr_lib.images.digits_task`), with the filters' alignment.
    ``done`` maps pairs already run (with ``n`` among their label counts) to their results."""
    done = done or {}
    align, gain, direct = {}, {}, {}
    for a, b in pairs:
        task = digits_task((a,), (b,))
        res = done.get((a, b)) or label_efficiency(task, [n], seeds, cfg)
        k = res.ns.index(n)
        align[(a, b)] = filter_alignment(res, task, cfg)
        gain[(a, b)] = _gain(res, n)
        direct[(a, b)] = res.accuracy["supervised"][k]
    return PairSurvey([tuple(p) for p in pairs], n, align, gain, direct)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    rx, ry = rank(x), rank(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def gain_follows_alignment(survey: PairSurvey, result: str, glue_as: str | None = None,
                           boot: int = 2000, rng: np.random.Generator | None = None) -> Verdict:
    """Verdict: across digit pairs the paired gain rises with the filters' alignment.

    Claim: Spearman's rank correlation between the pairs' mean alignment and mean gain is
    positive, with its 95% bootstrap interval (seeds resampled with replacement, the same
    seeds for every pair) above 0. Glues ``rho``, ``rho_lo``, ``rho_hi``, ``pairs``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    A = np.stack([survey.align[p] for p in survey.pairs])                # (pairs, seeds)
    G = np.stack([survey.gain[p] for p in survey.pairs])
    point = _spearman(A.mean(1), G.mean(1))
    S = A.shape[1]
    reps = []
    for _ in range(boot):
        idx = rng.integers(0, S, S)
        reps.append(_spearman(A[:, idx].mean(1), G[:, idx].mean(1)))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    ci = Interval(point, float(lo), float(hi))
    return verdict(result,
                   f"the gain at n = {survey.n} rises with the filters' alignment across "
                   "digit pairs (Spearman rank correlation, 95% bootstrap interval above 0)",
                   f"Spearman {ci} over {len(survey.pairs)} pairs, {S} seeds",
                   ci.lo > 0, glue_as, rho=ci.value, rho_lo=ci.lo, rho_hi=ci.hi,
                   pairs=len(survey.pairs))
