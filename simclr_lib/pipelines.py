"""The paper's three pipelines, each a batch of independent runs (one per seed).

* :func:`run_supervised` -- direct supervised training from a Gaussian start (Theorem 4.3).
* :func:`run_pretrain` -- SimCLR pre-training of the linear encoder (Lemma 5.1, Theorem 5.3).
* :func:`run_simclr_finetune` -- pre-training, the random split (Section 3.3, Lemma 5.4)
  and fine-tuning on the labels (Theorem 5.5, Theorem 4.2).

Run ``r`` draws its labeled, test, unlabeled, augmentation, initialisation and split samples from
separate streams of ``seeds[r]``, so the two pipelines see the *same* labels for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._validate import check_device, check_dtype, check_instance, check_int, check_seeds, per_run
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .data import Dataset, augment, make_dataset, stream, views
from .diagnostics import _low_rank
from .models import init_cnn, init_encoder, split_filters
from .pretraining import PretrainResult, pretrain
from .training import History, fit, make_stepper

__all__ = ["run_supervised", "run_finetune", "run_pretrain", "run_simclr_finetune", "SimCLRResult",
           "pretrain_views", "split_start"]

Floats = float | Sequence[float] | None
Ints = int | Sequence[int] | None


def _check_configs(**named) -> None:
    """Each ``name=(value, class)``: a wrong config type fails here with its name, before compute."""
    for name, (value, cls) in named.items():
        check_instance(name, value, cls)


def run_finetune(W0: torch.Tensor, seeds: int | Sequence[int], data: DataConfig = DataConfig(),
                 cfg: SupervisedConfig = SupervisedConfig(), snr: Floats = None, n: Ints = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> History:
    """GD training of eq. 3.2's CNN from a given start ``W0`` (R, 2, m, d) (Theorem 5.5).

    Run ``r`` trains on the labeled samples and is tested on the test samples of ``seeds[r]``.
    """
    seeds = check_seeds(seeds)
    device, dtype = check_device(device), check_dtype(dtype)
    _check_configs(data=(data, DataConfig), cfg=(cfg, SupervisedConfig))
    if not isinstance(W0, torch.Tensor):
        raise ValueError(f"W0 must be a torch.Tensor (runs, 2, m, d), got {type(W0).__name__}")
    if W0.shape != (len(seeds), 2, cfg.m, data.d):
        raise ValueError(f"W0 must have shape (runs={len(seeds)}, 2, m={cfg.m}, d={data.d}), "
                         f"got {tuple(W0.shape)}")
    if not bool(torch.isfinite(W0).all()):
        raise ValueError("W0 contains non-finite values (NaN or inf): give a finite start")
    if cfg.method == "gram":
        raise ValueError("method='gram' draws its own start; use run_supervised (fine-tuning "
                         "from a given W0 needs 'weight' or 'coefficient')")
    W0 = W0.to(device=device, dtype=dtype)
    train = make_dataset(data, cfg.n if n is None else n, seeds, "train", snr, device, dtype)
    test = make_dataset(data, cfg.n_test, seeds, "test", snr, device, dtype)
    lr = cfg.step_size(data)
    stepper = make_stepper(cfg.method, W0, train, test, cfg.q, lr)
    hist = fit(stepper, test.y, train.weights(), cfg.steps, cfg.record_every)
    hist.train, hist.test, hist.W0, hist.lr = train, test, W0, lr
    return hist


def run_supervised(seeds: int | Sequence[int], data: DataConfig = DataConfig(),
                   cfg: SupervisedConfig = SupervisedConfig(), snr: Floats = None, n: Ints = None,
                   device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> History:
    """Direct supervised training of eq. 3.2's CNN from ``N(0, sigma0^2 I)`` (Theorem 4.3).

    ``snr`` and ``n`` override the configs, one value for all runs or one per run.
    Used in chapters 3, 5 and 6.
    """
    _check_configs(data=(data, DataConfig), cfg=(cfg, SupervisedConfig))
    if cfg.method == "gram":            # d-independent, equal in distribution (simclr_lib.gram)
        from .gram import run_supervised as run_gram
        return run_gram(seeds, data, cfg, snr, n, device, dtype)
    seeds = check_seeds(seeds)
    device, dtype = check_device(device), check_dtype(dtype)
    gens = [stream(s, "init") for s in seeds]
    W0 = init_cnn(gens, cfg.m, data.d, cfg.init_std(data), dtype, device)
    return run_finetune(W0, seeds, data, cfg, snr, n, device, dtype)


def pretrain_views(seeds: list[int], data: DataConfig, cfg: PretrainConfig, snr: Floats,
                   n0: Ints, device, dtype) -> tuple[Dataset, Dataset]:
    """The unlabeled samples of each run and their positive views (Section 3.2)."""
    if n0 is not None:   # a per-run override obeys PretrainConfig's rule, under its own name
        n0 = [check_int("n0", k, low=2) for k in per_run("n0", n0, len(seeds))]
    unl = make_dataset(data, cfg.n0 if n0 is None else n0, seeds, "unlabeled", snr, device, dtype)
    return unl, augment(unl, seeds, data.sigma_p, cfg.aug_rho)


def run_pretrain(seeds: int | Sequence[int], data: DataConfig = DataConfig(),
                 cfg: PretrainConfig = PretrainConfig(), snr: Floats = None, n0: Ints = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
                 ) -> PretrainResult:
    """SimCLR pre-training of the 2m-filter linear encoder (Lemma 5.1, Theorem 5.3). Chapter 4."""
    seeds = check_seeds(seeds)
    device, dtype = check_device(device), check_dtype(dtype)
    _check_configs(data=(data, DataConfig), cfg=(cfg, PretrainConfig))
    unl, view = pretrain_views(seeds, data, cfg, snr, n0, device, dtype)
    W0 = init_encoder([stream(s, "pretrain_init") for s in seeds], cfg.m, data.d, cfg.sigma0,
                      dtype, device)
    draw = None
    if cfg.fresh_views:   # the "augment" stream continued: its first draw is `view` above
        draw = _view_drawer(unl, seeds, data.sigma_p, cfg.aug_rho)
        view = draw()
    if cfg.lr is None and cfg.lr_from == "data":   # lambda_1(A) = lam, from the pairs alone
        lr = torch.tensor([cfg.lam / _top_eig(unl, view, cfg.tau, r) for r in range(unl.runs)],
                          dtype=dtype, device=device)
    else:
        mu_norms = unl.mu.norm(dim=1).tolist()
        lr = torch.tensor([cfg.step_size(a) for a in mu_norms], dtype=dtype, device=device)
    res = pretrain(W0, unl, view, cfg.tau, lr, cfg.steps, cfg.loss, cfg.stop, cfg.logit_stop,
                   cfg.record_every, draw)
    res.data, res.view, res.W0, res.lr = unl, view, W0, lr
    return res


def split_start(res: PretrainResult, seeds: Sequence[int]) -> torch.Tensor:
    """The fine-tuning start (R, 2, m, d) of pre-trained encoders: the random split of
    Section 3.3 (Lemma 5.4), drawn from each run's own stream (``seeds[r]``)."""
    return split_filters(res.W, [stream(s, "split") for s in check_seeds(seeds)])


def _view_drawer(unl: Dataset, seeds: list[int], sigma_p: float, rho: float):
    """Fresh positive views on every call, from each run's "augment" stream (the first call
    returns exactly ``augment(unl, seeds, sigma_p, rho)``)."""
    gens = [stream(s, "augment") for s in seeds]
    return lambda: views(unl, gens, sigma_p, rho)


def _top_eig(unl: Dataset, view: Dataset, tau: float, run: int) -> float:
    """lambda_1 of Lemma 5.1's M (A with eta = 1) for one run, by Lanczos on its low-rank form:
    a statistic of the unlabeled pairs only (no ||mu||)."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    U, K = _low_rank(unl, view, tau, 1.0, run)
    U, K = U.double().cpu().numpy(), K.double().cpu().numpy()
    op = LinearOperator((U.shape[1],) * 2, matvec=lambda v: U.T @ (K @ (U @ v)), dtype=float)
    v0 = np.ones(U.shape[1]) / np.sqrt(U.shape[1])
    return float(eigsh(op, k=1, which="LA", v0=v0, tol=1e-6)[0][0])


@dataclass
class SimCLRResult:
    """The pre-training result, the split start and the fine-tuning history of the same runs."""

    pretrain: PretrainResult
    finetune: History
    W_split: torch.Tensor | None = None     # (R, 2, m, d): the random split (Lemma 5.4)


def run_simclr_finetune(seeds: int | Sequence[int], data: DataConfig = DataConfig(),
                        pre: PretrainConfig = PretrainConfig(),
                        ft: SupervisedConfig = SupervisedConfig(), snr: Floats = None,
                        n: Ints = None, n0: Ints = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> SimCLRResult:
    """SimCLR pre-training, the random split of Section 3.3, then GD fine-tuning (Theorem 4.2).

    The encoder has ``2 pre.m`` filters; fine-tuning uses ``ft.m = pre.m`` per output.
    Chapters 1, 5 and 6.
    """
    seeds = check_seeds(seeds)
    _check_configs(data=(data, DataConfig), pre=(pre, PretrainConfig), ft=(ft, SupervisedConfig))
    if ft.m != pre.m:
        raise ValueError(f"ft.m ({ft.m}) must equal pre.m ({pre.m}): the 2m pre-trained filters "
                         "are split into two halves of m")
    res = run_pretrain(seeds, data, pre, snr, n0, device, dtype)
    W0 = split_start(res, seeds)
    hist = run_finetune(W0, seeds, data, ft, snr, n, device, dtype)
    return SimCLRResult(res, hist, W0)
