"""Real images: SimCLR pre-training of the paper's linear CNN encoder on small digit images,
and a linear probe on its frozen embedding.

Chapter 7 (:ref:`real-images`) repeats the paper's MNIST experiment (Appendix A, 200
unlabeled samples) offline, on scikit-learn's bundled 8x8 digits. An image is cut into
patches, which play the role of the paper's patches ``x^(p)`` (Definition 3.1 has two;
here there are ``P``):

* :mod:`simclr_lib.image_data` -- loading (IDX files, the bundled digits), patches and
  augmentations; its functions are re-exported here.
* :class:`ImageConfig` -- patches, augmentations, pre-training, fine-tuning and probe settings.
* :func:`pretrain_encoder` -- SimCLR pre-training of the linear CNN encoder
  ``[F(W, x)]_r = sum_p <w_r, x^(p)>`` (Section 3.2): a small adapter that turns the images'
  patch sums into a :class:`~simclr_lib.data.Dataset` and calls the library's one
  pre-training loop, :func:`~simclr_lib.pretraining.pretrain`.
* :func:`linear_probe` -- logistic regression on frozen embeddings, batched over runs.

The experiment that uses them, test accuracy against the number of labels, is
:mod:`simclr_lib.image_study`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_choice, check_float, check_int, check_positive, check_seeds
from .data import Dataset, stream
from .diagnostics import power_matrix
from .image_data import (ImageTask, augment_images, binary_task, class_direction, digits_task,
                         load_idx, load_mnist, patchify)
from .models import init_encoder
from .pretraining import PretrainResult, pretrain

__all__ = ["ImageTask", "ImageConfig", "load_idx", "load_mnist", "digits_task", "binary_task",
           "patchify", "augment_images", "class_direction", "pretrain_encoder", "example_views",
           "linear_probe"]


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageConfig:
    """Everything :func:`simclr_lib.image_study.label_efficiency` needs besides the task, the
    label counts and seeds."""

    # patches and splits
    patch: int = 6                 # patch side: 8x8 digits -> P = 4 patches of d = 36 pixels
    stride: int = 2                # stride < patch: overlapping patches, each sees most of a digit
    n0: int = 200                  # unlabeled images for pre-training (the paper's MNIST count)
    n_test: int = 150              # held-out test images per seed
    # augmentation
    max_shift: int = 1             # random translation by up to this many pixels
    aug_noise: float = 0.1         # additive Gaussian pixel noise (pixels lie in [0, 1])
    # pre-training (Section 3.2): encoder with 2m filters
    m: int = 10                    # 2m encoder filters; m per output of the fine-tuned CNN
    tau: float = 1.0               # temperature
    loss: str = "infonce"          # "infonce" (paper) or "ntxent" (cosine, symmetric)
    sigma0_pre: float = 1e-4       # small Gaussian start of the encoder (Lemma 5.1)
    lam: float = 0.2               # GD step sets the top eigenvalue of A = eta M to lam
    pre_steps: int = 400           # maximum pre-training steps
    logit_stop: float = 1.0        # infonce: stop when max |<h_i, h~_j>| / tau passes this
    # fine-tuning and direct training (eq. 3.2)
    q: float = 3.0                 # activation max(0, z)^q
    sigma0: float = 0.1            # Gaussian init std of direct training; pre-trained filters
                                   # are rescaled to its expected filter norm sigma0 sqrt(d)
    lr: float = 1.0                # GD step size
    steps: int = 400               # GD steps
    # linear probe
    probe_c: float = 1.0           # inverse L2 strength of the logistic regression

    def __post_init__(self) -> None:
        check_int("patch", self.patch)
        check_int("stride", self.stride)
        check_int("n0", self.n0, low=2)
        check_int("n_test", self.n_test)
        check_int("max_shift", self.max_shift, low=0)
        check_float("aug_noise", self.aug_noise, low=0.0)
        check_int("m", self.m)
        check_positive("tau", self.tau)
        check_choice("loss", self.loss, ("infonce", "ntxent"))
        check_positive("sigma0_pre", self.sigma0_pre)
        check_positive("lam", self.lam)
        check_int("pre_steps", self.pre_steps)
        check_positive("logit_stop", self.logit_stop)
        check_float("q", self.q, low=1.0)
        check_positive("sigma0", self.sigma0)
        check_positive("lr", self.lr)
        check_int("steps", self.steps)
        check_positive("probe_c", self.probe_c)

    def n_patches(self, height: int, width: int) -> int:
        """The number ``P`` of patches of a ``height x width`` image (validates the geometry)."""
        return patchify(torch.zeros(height, width), self.patch, self.stride).shape[0]


# ----------------------------------------------------------------------------------------------
# Pre-training
# ----------------------------------------------------------------------------------------------

def _as_dataset(z: torch.Tensor, direction: torch.Tensor | None) -> Dataset:
    """Patch sums ``z`` (R, n0, d) as a :class:`~simclr_lib.data.Dataset` whose ``patch_sum()``
    is ``z``: the adapter that lets :func:`~simclr_lib.pretraining.pretrain` and
    :func:`~simclr_lib.diagnostics.power_matrix` run on images. No signal patch (``y = 0``);
    ``mu`` is the diagnostic ``direction`` the alignments are recorded against (zero: NaN)."""
    R, n0, d = z.shape
    mu = torch.zeros(R, d, dtype=z.dtype, device=z.device) if direction is None \
        else direction.to(dtype=z.dtype, device=z.device).expand(R, d).clone()
    zero = torch.zeros(R, n0, dtype=z.dtype, device=z.device)
    ones = torch.ones(R, n0, dtype=torch.bool, device=z.device)
    return Dataset(zero, zero.clone(), z, mu, ones, ones.clone())


def pretrain_encoder(unlabeled: torch.Tensor, mean: torch.Tensor, seeds: Sequence[int],
                     cfg: ImageConfig = ImageConfig(),
                     direction: torch.Tensor | None = None) -> PretrainResult:
    """SimCLR pre-training of the linear CNN encoder on images, batched over runs.

    Each image gets two augmented views (:func:`~simclr_lib.image_data.augment_images`, stream
    ``"augment"``), drawn once and kept fixed, as the synthetic pipeline's views are; they are
    centred by ``mean`` and summed over patches, ``z = sum_p x^(p)``, the encoder's input. The
    pairs then go through the library's one pre-training loop,
    :func:`~simclr_lib.pretraining.pretrain` (same stop rule, same
    :class:`~simclr_lib.training.DivergenceError`), from ``N(0, sigma0_pre^2 I)`` (stream
    ``"pretrain_init"``) with step ``eta = lam / lambda_1(M)``, ``M`` the matrix of Lemma 5.1
    (:func:`~simclr_lib.diagnostics.power_matrix`). With ``loss="infonce"`` a run stops at the
    end of the power-method phase (largest ``|logit|`` past ``logit_stop``); with ``"ntxent"``
    it runs ``pre_steps``. Chapter 7 and Appendix A.

    Parameters
    ----------
    unlabeled
        ``(R, n0, H, W)`` raw images of each run (labels unused).
    mean
        ``(R, H, W)`` the per-run centring image (the mean of that run's unlabeled images).
    seeds
        One seed per run.
    cfg
        Patches, augmentation and pre-training settings.
    direction
        Optional ``(d,)`` diagnostic direction (e.g. :func:`class_direction`): the history's
        ``align_mean`` and ``align_min`` are ``|cos(w_r, direction)|`` (NaN without one).

    Returns
    -------
    ~simclr_lib.pretraining.PretrainResult
        ``W`` (R, 2m, d), ``stop_step``, the history (every step), the views as ``data`` and
        ``view``, the start ``W0`` and the step sizes ``lr``.
    """
    seeds = check_seeds(seeds)
    if unlabeled.ndim != 4 or unlabeled.shape[0] != len(seeds):
        raise ValueError(f"unlabeled must have shape (runs={len(seeds)}, n0, H, W), "
                         f"got {tuple(unlabeled.shape)}")
    if mean.shape != (unlabeled.shape[0], *unlabeled.shape[2:]):
        raise ValueError("mean must have shape (runs, H, W) = "
                         f"{(unlabeled.shape[0], *unlabeled.shape[2:])}, got {tuple(mean.shape)}")
    dtype, device = unlabeled.dtype, unlabeled.device
    gens = [stream(s, "augment") for s in seeds]

    def view() -> Dataset:                                               # (R, n0, d) patch sums
        v = augment_images(unlabeled, gens, cfg.max_shift, cfg.aug_noise) - mean[:, None]
        return _as_dataset(patchify(v, cfg.patch, cfg.stride).sum(-2), direction)

    data, views = view(), view()
    lam1 = torch.stack([torch.linalg.eigvalsh(
        power_matrix(data, views, cfg.tau, 1.0, r).double())[-1] for r in range(len(seeds))])
    if not bool((lam1 > 0).all()):
        raise ValueError("the views share no positive direction (lambda_1(M) <= 0); "
                         "use weaker augmentations (max_shift, aug_noise)")
    lr = (cfg.lam / lam1).to(dtype=dtype, device=device)
    W0 = init_encoder([stream(s, "pretrain_init") for s in seeds], cfg.m, cfg.patch ** 2,
                      cfg.sigma0_pre, dtype, device)
    stop = "linear_phase" if cfg.loss == "infonce" else "steps"
    res = pretrain(W0, data, views, cfg.tau, lr, cfg.pre_steps, cfg.loss, stop, cfg.logit_stop,
                   record_every=1)
    res.data, res.view, res.W0, res.lr = data, views, W0, lr
    if direction is None:               # nothing to align with: not applicable, not "0"
        for k in ("align_mean", "align_min"):
            res.history.metrics[k] = np.full_like(res.history.metrics[k], np.nan)
    return res


def example_views(task: ImageTask, cfg: ImageConfig = ImageConfig(), seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first image of each class, two SimCLR views of each and their patch sums, for a
    figure: ``images`` (2, H, W), ``views`` (2 views, 2, H, W), ``patch_sum`` (2, s, s) with
    ``s = cfg.patch`` (positive class first). Views come from stream ``"augment"`` of
    ``seed``. Chapter 7."""
    idx = [int(np.flatnonzero(task.labels > 0)[0]), int(np.flatnonzero(task.labels < 0)[0])]
    x = torch.as_tensor(task.images[idx])[None]                          # (1, 2, H, W)
    gen = [stream(check_int("seed", seed, low=0), "augment")]
    views = torch.cat([augment_images(x, gen, cfg.max_shift, cfg.aug_noise) for _ in range(2)])
    z = patchify(x[0], cfg.patch, cfg.stride).sum(-2).reshape(2, cfg.patch, cfg.patch)
    return x[0], views, z


# ----------------------------------------------------------------------------------------------
# Linear probe
# ----------------------------------------------------------------------------------------------

def linear_probe(h_train: torch.Tensor, y_train: torch.Tensor, mask: torch.Tensor,
                 h_test: torch.Tensor, y_test: torch.Tensor, c: float = 1.0,
                 iters: int = 50) -> torch.Tensor:
    """Test accuracy of L2-regularised logistic regression on frozen embeddings, batched over runs.

    Minimises ``c * sum_i log(1 + exp(-y_i (<v, h_i> + b))) + ||v||^2 / 2`` (scikit-learn's
    ``LogisticRegression(C=c)`` objective: the intercept ``b`` is not penalised) by Newton's
    method with step halving, all runs at once, in float64.

    Parameters
    ----------
    h_train
        ``(R, n, k)`` embeddings of the labeled images (rows where ``mask`` is False ignored).
    y_train
        ``(R, n)`` labels in ``{-1, +1}``.
    mask
        ``(R, n)`` bool, False on padding.
    h_test, y_test
        ``(R, n_test, k)`` and ``(R, n_test)``.
    c
        Inverse regularisation strength (``> 0``).
    iters
        Newton steps (the objective is smooth and strongly convex: a few dozen suffice).

    Returns
    -------
    torch.Tensor
        ``(R,)`` float64 test accuracies (a score of exactly 0 predicts ``-1``, as scikit-learn).
    """
    c = check_positive("c", c)
    iters = check_int("iters", iters)
    if h_train.ndim != 3 or h_test.ndim != 3 or y_train.shape != h_train.shape[:2] \
            or mask.shape != y_train.shape or y_test.shape != h_test.shape[:2]:
        raise ValueError("shapes must be h_train (R, n, k), y_train and mask (R, n), "
                         "h_test (R, n_test, k) and y_test (R, n_test)")
    f64 = torch.float64
    X = torch.cat([h_train.to(f64), torch.ones_like(h_train[..., :1], dtype=f64)], -1)
    Xt = torch.cat([h_test.to(f64), torch.ones_like(h_test[..., :1], dtype=f64)], -1)
    y, wts = y_train.to(f64), c * mask.to(f64)
    R, _, k1 = X.shape
    pen = torch.ones(k1, dtype=f64, device=X.device)
    pen[-1] = 0.0                                                        # intercept: no penalty

    def objective(w: torch.Tensor) -> torch.Tensor:                      # (R,)
        margin = y * torch.einsum("rnk,rk->rn", X, w)
        return (wts * F.softplus(-margin)).sum(1) + 0.5 * (pen * w ** 2).sum(1)

    w = torch.zeros(R, k1, dtype=f64, device=X.device)
    for _ in range(iters):
        margin = y * torch.einsum("rnk,rk->rn", X, w)
        p = torch.sigmoid(-margin)                                       # (R, n)
        grad = -torch.einsum("rn,rnk->rk", wts * p * y, X) + pen * w
        hess = torch.einsum("rn,rnk,rnl->rkl", wts * p * (1 - p), X, X) + torch.diag(pen)
        hess = hess + 1e-12 * torch.eye(k1, dtype=f64, device=X.device)
        step = torch.linalg.solve(hess, grad)                            # (R, k+1)
        t = torch.ones(R, 1, dtype=f64, device=X.device)
        f0 = objective(w)
        for _ in range(30):                                              # step halving per run
            worse = objective(w - t * step) > f0 + 1e-12
            if not bool(worse.any()):
                break
            t = torch.where(worse[:, None], t / 2, t)
        w = w - t * step
    pred = torch.where(torch.einsum("rnk,rk->rn", Xt, w) > 0, 1.0, -1.0).to(f64)
    return (pred == y_test.to(f64)).to(f64).mean(1)
