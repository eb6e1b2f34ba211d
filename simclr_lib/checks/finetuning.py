"""Checks of the fine-tuning chapter (``book/finetuning.md``): Condition 4.1, Lemma 5.4,
Theorem 5.5 and Theorem 4.2. Each returns the :class:`~simclr_lib.report.Verdict` it shows;
``tests/test_checks_finetuning.py`` runs each on a control where its claim is false.

"With high probability" is read as: the claim holds in at least ``WHP`` (0.9) of the seeds
(the measured fraction, printed with its 95% Clopper-Pearson interval).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..analysis import fraction
from .._validate import check_int
from ..chunks import draw_bytes, run_bytes, runs_within
from ..config import DataConfig, PretrainConfig, SupervisedConfig
from ..diagnostics import alignment
from ..pipelines import run_finetune, run_pretrain, run_supervised, split_start
from ..report import Verdict, verdict
from ..training import History

__all__ = ["WHP", "experiment", "bound_met", "by_n", "condition_4_1", "lemma_5_4", "theorem_5_5",
           "gaussian_start", "theorem_4_2", "labels_vs_direct", "head_start",
           "seeds_per_chunk", "split_study", "SplitStudy"]

WHP = 0.9            # "with high probability": at least this fraction of the seeds


def bound_met(h: History | dict, eps: float) -> np.ndarray:
    """Per run: some recorded step has ``L_S <= eps`` and ``L_D <= 6 eps`` (Theorem 4.2, the
    ``exp(-n^2)`` term dropped)."""
    ls, ld = np.asarray(h["train_loss"]), np.asarray(h["test_loss"])
    return ((ls <= eps) & (ld <= 6 * eps)).any(-1)


def by_n(h: History, ns: Sequence[int], seeds: int) -> dict[int, dict[str, np.ndarray]]:
    """Split a History whose runs are ``n``-major (run ``k * seeds + s``) into
    ``{n: {metric: (seeds, T)}}``."""
    K = len(ns)
    return {n: {k: v.reshape(K, seeds, -1)[i] for k, v in h.metrics.items()}
            for i, n in enumerate(ns)}


def condition_4_1(data: DataConfig, pre: PretrainConfig, ft: SupervisedConfig, snr: float,
                  ns: Sequence[int]) -> Verdict:
    """Every row printed enters the verdict: n0 SNR^2 >= 1, n << SNR^-q (n <= SNR^-q / 10),
    sigma0 <= 1e-4, lam < 1 and d >= n0^4."""
    n0, q = pre.n0, ft.q
    rows = [("n0 SNR^2 >= 1", f"{n0 * snr ** 2:g}", n0 * snr ** 2 >= 1),
            ("n << SNR^-q", f"n <= {max(ns)}, SNR^-q = {snr ** -q:.0f}",
             max(ns) <= 0.1 * snr ** -q),
            ("small sigma0", f"{pre.sigma0:.0e} (<= 1e-4)", pre.sigma0 <= 1e-4),
            ("small step", f"2 eta ||mu||^2 / tau = {pre.lam}", pre.lam < 1),
            ("d >= n0^4", f"d = {data.d}, n0^4 = {n0 ** 4:.1e}", data.d >= n0 ** 4)]
    for name, value, met in rows:
        print(f"{name:<16}{value:<34}{'met' if met else 'NOT met'}")
    bad = [name for name, _, met in rows if not met]
    return verdict("Condition 4.1", "all five conditions hold: " + ", ".join(r[0] for r in rows),
                   "not met: " + (", ".join(bad) if bad else "none"), not bad)


def _partition(W: torch.Tensor, W_split: torch.Tensor) -> np.ndarray:
    """Per run: the two halves hold exactly the 2m pre-trained filters, each once."""
    R, k, d = W.shape
    halves = W_split.reshape(R, -1, d)
    if halves.shape[1] != k:
        return np.zeros(R, bool)
    a = W[torch.arange(R)[:, None], W[..., 0].argsort(1)]
    b = halves[torch.arange(R)[:, None], halves[..., 0].argsort(1)]
    return np.array([torch.equal(a[r], b[r]) for r in range(R)])


def lemma_5_4(W: torch.Tensor, W_split: torch.Tensor, mu: torch.Tensor,
              align_min: float = 0.9, tol: float = 0.05) -> Verdict:
    """Lemma 5.4 on ``R`` seeds: pre-trained filters ``W`` (R, 2m, d), their split
    ``W_split`` (R, 2, m, d), the signal ``mu`` (R, d). Holds when (i) the filters are
    pre-trained, mean ``|cos(w, mu)| >= align_min`` in every seed (Theorem 5.3's level);
    (ii) the halves are a split of them; (iii) both halves hold both signs in at least
    ``WHP`` of the seeds (lower end of the 95% interval); (iv) the fraction of + filters in
    each half is within ``tol`` of 1/2."""
    R, _, m, _ = W_split.shape
    al = alignment(W, mu).mean(1).numpy()
    part = _partition(W, W_split)
    pos = (torch.einsum("rjmd,rd->rjm", W_split, mu) > 0).sum(-1).numpy()     # (R, 2)
    both = fraction(((pos > 0) & (pos < m)).all(1))
    frac = pos.mean(0) / m
    ok = [al.min() >= align_min, part.all(), both.lo >= WHP,
          bool(np.all(np.abs(frac - 0.5) <= tol))]
    return verdict("Lemma 5.4",
                   f"pre-trained filters (|cos| >= {align_min}), split into two halves that "
                   f"each hold both signs w.h.p. (>= {WHP} of seeds, 95% interval); + fraction "
                   f"per half within {tol} of 1/2",
                   f"min |cos| {al.min():.3f}; a split in {part.mean():.2f} of seeds; both "
                   f"signs in {both} of {R} seeds; + fraction {frac[0]:.3f}, {frac[1]:.3f}",
                   all(ok), "l54_", both=both.value, both_lo=both.lo, align=float(al.min()))


def head_start(W0: torch.Tensor, train) -> np.ndarray:
    """Per run ``max |<w, mu>| / max |<w, xi_i>|`` for a start (R, 2, m, d)."""
    s = torch.einsum("rjmd,rd->rjm", W0, train.mu).abs().amax((1, 2))
    x = torch.einsum("rjmd,rnd->rjmn", W0, train.noise * train.mask[..., None]).abs()
    return (s / x.amax((1, 2, 3))).numpy()


class SplitStudy:
    """The random split on many cheap seeds: ``W`` (R, 2m, d) the pre-trained filters,
    ``W_split`` (R, 2, m, d) their split, ``mu`` (R, d) the signal and ``kept`` (R, 2m)
    whether each filter kept the sign of <w_r(0), mu> (``checks.pretraining.kept_signs``)."""

    def __init__(self, W, W_split, mu, kept):
        self.W, self.W_split, self.mu, self.kept = W, W_split, mu, kept


def split_study(seeds: Sequence[int], data: DataConfig, pre: PretrainConfig,
                snr: float | None = None, memory_gb: float = 0.05) -> SplitStudy:
    """Pre-train every seed and split its filters, exactly as ``run_simclr_finetune`` does
    (``run_pretrain`` then ``split_start``), for Lemma 5.4. Seeds run in chunks that fit
    ``memory_gb`` (``chunks.run_bytes``), and of each chunk only the filters, the split, the
    signal and the kept signs are kept, not the samples and views (memory O(chunk n0 d) +
    O(seeds m d)); a run's result does not depend on its batch-mates."""
    from .pretraining import kept_signs
    seeds = list(seeds)
    k = runs_within(memory_gb, run_bytes("alignment", data, pre.n0, pre=pre),
                    draw_bytes(pre.n0, data.d))
    parts = []
    for i in range(0, len(seeds), k):
        ss = seeds[i:i + k]
        res = run_pretrain(ss, data, pre, snr=snr)
        parts.append((res.W, split_start(res, ss), res.data.mu, kept_signs(res)))
        del res
    W, W_split, mu, kept = zip(*parts)
    return SplitStudy(torch.cat(W), torch.cat(W_split), torch.cat(mu), np.concatenate(kept))


class Experiment:
    """The chapter's runs: ``ft[n]`` and ``sup[n]`` map metric -> (seeds, T) for SimCLR +
    fine-tuning and direct training on the same labels; ``W_split`` (seeds, 2, m, d) the split
    encoders; ``align`` (seeds,) their pre-training alignment; ``head`` the head start per
    pipeline (n, seeds); ``one_class`` (n, seeds) seeds whose labels are all one class;
    ``steps`` the recorded steps."""

    def __init__(self):
        self.ft, self.sup, self.head = {}, {}, {"pre-trained": [], "Gaussian": []}
        self.W_split, self.align, self.one_class, self.steps = [], [], [], None


def seeds_per_chunk(data: DataConfig, pre: PretrainConfig, ft: SupervisedConfig,
                    ns: Sequence[int], memory_gb: float) -> int:
    """How many seeds :func:`experiment` runs at once within ``memory_gb`` (at least 1): a
    seed's working set is the larger of its pre-training (``chunks.run_bytes``) and its
    ``len(ns)`` fine-tuning runs (each with its own test set) plus one run's draw."""
    per_seed = max(run_bytes("alignment", data, pre.n0, pre=pre),
                   len(ns) * run_bytes("supervised", data, max(ns), cfg=ft))
    return runs_within(memory_gb, per_seed, draw_bytes(max(pre.n0, ft.n_test), data.d))


def experiment(seeds: Sequence[int], data: DataConfig, pre: PretrainConfig,
               ft: SupervisedConfig, ns: Sequence[int], chunk: int | None = None,
               memory_gb: float = 0.1) -> Experiment:
    """Pre-train each seed (``run_pretrain``), split its filters as ``run_simclr_finetune``
    does, fine-tune it on every ``n`` in ``ns`` and train directly on the same labels.
    Runs ``chunk`` seeds at a time (default: as many as :func:`seeds_per_chunk` fits in
    ``memory_gb``, at least one) and keeps only the recorded metrics, so memory is
    O(chunk). A run's results do not depend on its batch-mates, so the chunking changes
    nothing but the memory (tests/test_checks_finetuning.py)."""
    chunk = (seeds_per_chunk(data, pre, ft, ns, memory_gb) if chunk is None
             else check_int("chunk", chunk))
    ex, K = Experiment(), len(ns)
    parts: dict = {"ft": [], "sup": []}
    for i in range(0, len(seeds), chunk):
        ss = list(seeds[i:i + chunk])
        res = run_pretrain(ss, data, pre)
        W_split = split_start(res, ss)
        ex.W_split.append(W_split)
        ex.align.append(res.history.last("align_mean"))
        del res
        run_n = [n for n in ns for _ in ss]
        for key, name in (("ft", "pre-trained"), ("sup", "Gaussian")):
            if key == "ft":
                h = run_finetune(W_split.repeat(K, 1, 1, 1), ss * K, data, ft, n=run_n)
                y = h.train.y.reshape(K, len(ss), -1)
                ex.one_class.append((y.abs().sum(-1) == y.sum(-1).abs()).numpy())
            else:
                h = run_supervised(ss * K, data, ft, n=run_n)
            ex.head[name].append(head_start(h.W0, h.train).reshape(K, len(ss)))
            parts[key].append(by_n(h, ns, len(ss)))
            ex.steps = h.steps
            del h
    for key in ("ft", "sup"):
        setattr(ex, key, {n: {m: np.concatenate([p[n][m] for p in parts[key]])
                              for m in parts[key][0][n]} for n in ns})
    ex.W_split = torch.cat(ex.W_split)
    ex.align = np.concatenate(ex.align)
    ex.one_class = np.concatenate(ex.one_class, 1)
    ex.head = {k: np.concatenate(v, 1) for k, v in ex.head.items()}
    return ex


def _final(h: dict, name: str) -> np.ndarray:
    return np.asarray(h[name])[:, -1]


def theorem_5_5(ft: dict, loss_max: float = 0.02, gamma_min: float = 1.0,
                rho_max: float = 1.0) -> Verdict:
    """Theorem 5.5 on fine-tuning runs (``ft``: metric -> (seeds, T)): in at least ``WHP`` of
    the seeds, ``L_S <= loss_max``, ``gamma_max >= gamma_min`` (signal learned, order one)
    and ``rho_bar_max < rho_max`` (noise coefficients stay below order one)."""
    ls, g, r = _final(ft, "train_loss"), _final(ft, "gamma_max"), _final(ft, "rho_bar_max")
    f = {"fit": fraction(ls <= loss_max), "gamma": fraction(g >= gamma_min),
         "rho": fraction(r < rho_max)}
    return verdict("Theorem 5.5",
                   f"from the pre-trained start, in >= {WHP} of seeds: L_S <= {loss_max}, "
                   f"gamma_max >= {gamma_min} and rho_bar_max < {rho_max}",
                   f"fraction of {ls.size} seeds: L_S {f['fit']}; gamma {f['gamma']}; "
                   f"rho_bar {f['rho']} (rho_bar_max {r.min():.2f}-{r.max():.2f})",
                   all(v.value >= WHP for v in f.values()), "t55_",
                   rho_ok=f["rho"].value, rho_lo=float(r.min()), rho_hi=float(r.max()),
                   gamma_min=float(g.min()), rho_frac=int((r >= rho_max).sum()))


def gaussian_start(sup: dict, loss_max: float = 0.02, gamma_max: float = 0.01,
                   rho_min: float = 1.0) -> Verdict:
    """The Gaussian start on the same labels (Cao et al.'s special case, harmful regime): in
    at least ``WHP`` of seeds ``L_S <= loss_max`` while ``gamma_max <= gamma_max`` and
    ``rho_bar_max >= rho_min`` (noise memorised instead of the signal)."""
    ls, g, r = _final(sup, "train_loss"), _final(sup, "gamma_max"), _final(sup, "rho_bar_max")
    f = [fraction(ls <= loss_max), fraction(g <= gamma_max), fraction(r >= rho_min)]
    return verdict("Theorem 5.5 (Gaussian start)",
                   f"in >= {WHP} of seeds: L_S <= {loss_max}, gamma_max <= {gamma_max}, "
                   f"rho_bar_max >= {rho_min}",
                   f"fractions of {ls.size} seeds: {f[0]}; {f[1]}; {f[2]} (gamma_max <= "
                   f"{g.max():.4f})", all(v.value >= WHP for v in f), "t55g_",
                   gamma=float(g.max()), ls_max=float(ls.max()),
                   unfit=int((ls > loss_max).sum()), seeds=int(ls.size))


def theorem_4_2(ft: dict[int, dict], ns: Sequence[int], eps: float) -> Verdict:
    """Theorem 4.2 at every ``n`` in ``ns``: in at least ``WHP`` of the seeds some recorded
    step has ``L_S <= eps`` and ``L_D <= 6 eps``. Prints per n the fraction with its
    interval, and the final test loss and error."""
    fr = {}
    print(f"{'n':>4}  {'bound met (95% interval)':<26}{'final L_D (max)':>16}"
          f"{'test error (max)':>18}")
    for n in ns:
        h = ft[n]
        fr[n] = fraction(bound_met(h, eps))
        print(f"{n:>4}  {str(fr[n]):<26}{_final(h, 'test_loss').max():>16.3f}"
              f"{_final(h, 'test_error').max():>18.3f}")
    seeds = len(bound_met(ft[ns[0]], eps))
    return verdict("Theorem 4.2",
                   f"some t with L_S <= {eps} and L_D <= 6 eps in >= {WHP} of seeds at every "
                   f"n in {list(ns)}",
                   "; ".join(f"n = {n}: {fr[n]}" for n in ns) + f" ({seeds} seeds)",
                   all(f.value >= WHP for f in fr.values()), "t42_",
                   **{f"met{n}": int(round(f.value * seeds)) for n, f in fr.items()},
                   seeds=seeds)


def labels_vs_direct(err_ft: np.ndarray, err_sup: np.ndarray, ns: Sequence[int],
                     chance: float = 0.35, good: float = 0.02, n_max: int = 16) -> Verdict:
    """Test error (len(ns), seeds): direct training stays >= ``chance`` (seed mean) at every
    n, SimCLR + fine-tuning reaches a seed mean <= ``good`` at some n <= ``n_max``."""
    mf, ms = err_ft.mean(1), err_sup.mean(1)
    ok_n = [n for n, e in zip(ns, mf) if e <= good]
    n_ft = min(ok_n) if ok_n else float("nan")
    return verdict("Theorem 4.2 vs 4.3",
                   f"direct training: mean test error >= {chance} at every n <= {max(ns)}; "
                   f"SimCLR + FT: <= {good} with some n <= {n_max}",
                   f"direct min {ms.min():.3f} (seeds {err_sup.min():.3f}-"
                   f"{err_sup.max():.3f}); SimCLR + FT <= {good} from n = {n_ft}",
                   bool(ms.min() >= chance and n_ft <= n_max), "cmp_", n_ft=n_ft,
                   sup_min=float(ms.min()), good=good, chance=chance)
