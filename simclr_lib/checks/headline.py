"""The take-away of the paper, Theorem 4.2 against Theorem 4.3 (chapter 1, :ref:`intro`, and
the synthetic experiment of the paper's Appendix A).

Both theorems bound the *test loss* ``L_D``, so everything here is decided on the final test
loss of each seed, with the test error recorded beside it:

* :func:`label_grid` -- final test loss and error over an ``(n, snr)`` grid for direct
  training or SimCLR + fine-tuning (each ``(snr, seed)`` pre-trained once, on
  ``n0 = n0_snr2 / snr^2`` unlabeled samples, then fine-tuned on every ``n``), one batched
  program per ``n`` so memory stays small;
* :meth:`LabelGrid.n_star` -- labels needed: the smallest ``n`` of the grid at which at least
  half of the seeds reach ``L_D <= eps`` (or error ``<= eps`` with ``on="error"``);
* :func:`takeaway` -- the verdict "SimCLR + fine-tuning with few labels is benign where
  direct training with many more labels is harmful", each side read as *with high
  probability*: the fraction of seeds that meet it has its 95% binomial interval above 1/2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .._validate import check_choice, check_float, check_int, check_seeds
from ..analysis import Interval, fraction
from ..config import DataConfig, PretrainConfig, SupervisedConfig
from ..data import Dataset, stream
from ..losses import logistic
from ..models import cnn_logits, split_filters
from ..pipelines import run_finetune, run_pretrain, run_supervised
from ..report import Verdict, verdict
from ..sweeps import n0_for

__all__ = ["LabelGrid", "label_grid", "takeaway", "high_probability"]


@dataclass
class LabelGrid:
    """``loss[i, j, s]``, ``error[i, j, s]`` and ``train_loss[i, j, s]``: final test loss, test
    error and training loss at ``ns[i]``, ``snrs[j]`` and seed ``s``; ``wrong_loss[i, j, s]``
    the part of the test loss that comes from misclassified test points,
    ``(1/n_test) sum_{y f < 0} l(y f)``; ``gamma_max`` and ``rho_max`` the final largest
    signal and noise coefficients (Definition 5.1); ``n0[j]`` the unlabeled samples (SimCLR
    only)."""

    kind: str
    ns: list[int]
    snrs: list[float]
    seeds: list[int]
    loss: np.ndarray
    error: np.ndarray
    train_loss: np.ndarray
    wrong_loss: np.ndarray
    gamma_max: np.ndarray
    rho_max: np.ndarray
    n0: list[int] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def n_star(self, eps: float, on: str = "loss") -> np.ndarray:
        """Per SNR, the smallest ``n`` at which at least half of the seeds have final test
        loss (``on="loss"``) or error (``on="error"``) ``<= eps``; NaN where none does."""
        check_choice("on", on, ("loss", "error"))
        ok = ((self.loss if on == "loss" else self.error) <= eps).mean(-1) >= 0.5
        out = np.full(len(self.snrs), np.nan)
        for j in range(len(self.snrs)):
            hit = [n for i, n in enumerate(self.ns) if ok[i, j]]
            if hit:
                out[j] = min(hit)
        return out

    def cell(self, n: int, snr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(test loss, test error, training loss, test loss of the mistakes) per seed."""
        if n not in self.ns or snr not in self.snrs:
            raise ValueError(f"no cell (n={n!r}, snr={snr!r}) in the grid {self.ns} x {self.snrs}")
        i, j = self.ns.index(n), self.snrs.index(snr)
        return (self.loss[i, j], self.error[i, j], self.train_loss[i, j],
                self.wrong_loss[i, j])


_PRETRAIN_BATCH = 4   # seeds pre-trained together: bounds the memory of n0 = 400 at d = 2000


def _pretrained_split(seeds: list[int], data: DataConfig, pre: PretrainConfig, snr: float,
                      n0: int) -> torch.Tensor:
    """Pre-train ``seeds`` (a batch equals its runs one at a time) and split their filters."""
    res = run_pretrain(seeds, data, pre, snr=snr, n0=n0)
    return split_filters(res.W, [stream(s, "split") for s in seeds])


def _mistake_loss(W: torch.Tensor, test: Dataset, q: float) -> np.ndarray:
    """``(1/n_test) sum_{y f < 0} l(y f)`` per run (R,), one run at a time (small memory)."""
    out = np.zeros(W.shape[0])
    for r in range(W.shape[0]):
        one = Dataset(*(t[r:r + 1] for t in (test.y, test.y_true, test.noise, test.mu,
                                            test.signal_first, test.mask)))
        margin = one.y * cnn_logits(W[r:r + 1], one.patches(), q)
        out[r] = float((logistic(margin) * (margin < 0)).mean())
    return out


def label_grid(kind: str, ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
               data: DataConfig = DataConfig(), ft: SupervisedConfig = SupervisedConfig(),
               pre: PretrainConfig = PretrainConfig(), n0_snr2: float = 4.0,
               n0: int | None = None) -> LabelGrid:
    """Final test loss and error of ``kind`` (``"supervised"`` or ``"simclr"``) over a grid.

    Seed ``s`` of every cell uses the same streams as
    :func:`~simclr_lib.pipelines.run_supervised` and
    :func:`~simclr_lib.pipelines.run_simclr_finetune` (same labels for both pipelines). SimCLR
    cells of one ``(snr, seed)`` share one pre-training on ``n0 = n0_snr2 / snr^2`` samples,
    or on ``n0`` samples at every SNR when ``n0`` is given (Appendix A). Chapter 1.
    """
    check_choice("kind", kind, ("supervised", "simclr"))
    ns = [check_int("n", n) for n in ns]
    snrs = [check_float("snr", s, low=0.0, low_open=True) for s in snrs]
    seeds = check_seeds(seeds)
    n0_snr2 = check_float("n0_snr2", n0_snr2, low=0.0, low_open=True)
    if not ns or not snrs:
        raise ValueError("ns and snrs must be non-empty")
    S = len(seeds)
    loss = np.zeros((len(ns), len(snrs), S))
    error, train, wrong, gamma, rho = (np.zeros_like(loss) for _ in range(5))
    if n0 is not None:
        n0 = check_int("n0", n0, low=2)
    n0s = [(n0 or n0_for(s, n0_snr2)) for s in snrs] if kind == "simclr" else []
    for j, snr in enumerate(snrs):
        if kind == "simclr":
            W0 = torch.cat([_pretrained_split(seeds[a:a + _PRETRAIN_BATCH], data, pre, snr,
                                              n0s[j]) for a in range(0, S, _PRETRAIN_BATCH)])
        for i, n in enumerate(ns):
            if kind == "simclr":
                hist = run_finetune(W0, seeds, data, ft, snr=snr, n=n)
            else:
                hist = run_supervised(seeds, data, ft, snr=snr, n=n)
            loss[i, j], error[i, j] = hist.last("test_loss"), hist.last("test_error")
            train[i, j] = hist.last("train_loss")
            wrong[i, j] = _mistake_loss(hist.final["W"], hist.test, ft.q)
            gamma[i, j], rho[i, j] = hist.last("gamma_max"), hist.last("rho_bar_max")
            del hist
    cfg = {"data": data, "ft": ft, "pre": pre if kind == "simclr" else None,
           "n0_snr2": n0_snr2 if kind == "simclr" and n0 is None else None}
    return LabelGrid(kind, ns, snrs, seeds, loss, error, train, wrong, gamma, rho, n0s, cfg)


def high_probability(ok: np.ndarray) -> tuple[bool, Interval]:
    """"With high probability", read on seeds: the fraction of seeds where ``ok`` holds has
    its 95% Clopper-Pearson interval above 1/2. Returns (holds, interval)."""
    ci = fraction(ok)
    return ci.lo > 0.5, ci


def takeaway(simclr: LabelGrid, direct: LabelGrid, snr: float, n_simclr: int, n_direct: int,
             eps: float, result: str, glue_as: str | None = None) -> Verdict:
    """The take-away at one SNR: SimCLR + fine-tuning with ``n_simclr`` labels has test loss
    ``L_D <= eps`` (Theorem 4.2), and direct training with ``n_direct`` labels has
    ``L_D >= 0.1`` (Theorem 4.3, harmful), each with high probability
    (:func:`high_probability`). Test errors are shown beside the losses. Glues ``frac_s``,
    ``frac_s_lo``, ``frac_s_hi``, ``frac_d`` (and ``_lo``, ``_hi``), the median losses
    ``loss_s``, ``loss_d``, mean errors ``err_s``, ``err_d``, the median training loss
    ``train_s`` of the SimCLR runs, the share ``wrong_share`` of their test loss that comes
    from misclassified points, the mean loss ``per_mistake`` of a misclassified point, the
    number ``no_error`` of SimCLR seeds with no test error, the median final ``gamma_s`` (max
    gamma) and ``rho_s`` (max rho_bar), ``seeds``, ``eps``.
    """
    eps = check_float("eps", eps, 0.0, 1.0, low_open=True)
    loss_s, err_s, train_s, wrong_s = simclr.cell(n_simclr, snr)
    i, j = simclr.ns.index(n_simclr), simclr.snrs.index(snr)
    gamma_s, rho_s = simclr.gamma_max[i, j], simclr.rho_max[i, j]
    loss_d, err_d, _, _ = direct.cell(n_direct, snr)
    ok_s, ci_s = high_probability(loss_s <= eps)
    ok_d, ci_d = high_probability(loss_d >= 0.1)
    S = len(simclr.seeds)
    return verdict(
        result,
        f"at SNR = {snr:g}, with high probability (fraction of seeds, 95% interval above 1/2): "
        f"SimCLR + FT with n = {n_simclr} labels has test loss <= {eps:g} (Thm 4.2), direct "
        f"training with n = {n_direct} has test loss >= 0.1 (Thm 4.3, harmful)",
        f"SimCLR + FT: {int((loss_s <= eps).sum())}/{S} seeds {ci_s}, median loss "
        f"{np.median(loss_s):.3f} (error {err_s.mean():.3f}); direct: "
        f"{int((loss_d >= 0.1).sum())}/{len(direct.seeds)} seeds {ci_d}, median loss "
        f"{np.median(loss_d):.3f} (error {err_d.mean():.3f})",
        ok_s and ok_d, glue_as, frac_s=ci_s.value, frac_s_lo=ci_s.lo, frac_s_hi=ci_s.hi,
        frac_d=ci_d.value, frac_d_lo=ci_d.lo, frac_d_hi=ci_d.hi,
        loss_s=float(np.median(loss_s)), loss_d=float(np.median(loss_d)),
        err_s=float(err_s.mean()), err_d=float(err_d.mean()),
        train_s=float(np.median(train_s)), wrong_share=float(wrong_s.sum() / loss_s.sum()),
        per_mistake=float(wrong_s.sum() / max(err_s.sum(), 1e-12)),
        no_error=int((err_s == 0).sum()), gamma_s=float(np.median(gamma_s)),
        rho_s=float(np.median(rho_s)), seeds=S, eps=eps)
