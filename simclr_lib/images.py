"""Real images: SimCLR pre-training and fine-tuning of the paper's CNNs on small digit images.

Chapter 7 (:ref:`real-images`) repeats the paper's MNIST experiment (Appendix A, 200
unlabeled samples) offline, on scikit-learn's bundled 8x8 digits. An image is cut into
patches, which play the role of the paper's patches ``x^(p)`` (Definition 3.1 has two;
here there are ``P``):

* :func:`patchify` -- ``(..., H, W) -> (..., P, k*k)`` square patches.
* :func:`augment_images` -- SimCLR's views: a random translation (a crop of the zero-padded
  image) and additive Gaussian noise, batched over runs with one generator per run.
* :func:`pretrain_encoder` -- SimCLR pre-training of the linear CNN encoder
  ``[F(W, x)]_r = sum_p <w_r, x^(p)>`` (Section 3.2) with :func:`~simclr_lib.losses.infonce`
  (stopped at the end of the power-method phase, Lemma 5.1) or
  :func:`~simclr_lib.losses.nt_xent`.
* :func:`label_efficiency` -- test accuracy against the number of labels for SimCLR +
  fine-tuning (the random split of Section 3.3, then GD on eq. 3.2's CNN through
  :class:`~simclr_lib.training.WeightSpace`), direct supervised training, and a linear probe.
* :func:`load_idx`, :func:`load_mnist` -- read MNIST's IDX files (gzip-compressed or plain)
  from a path the user gives. Nothing is ever downloaded.

Every run ``seeds[r]`` draws its test split, unlabeled pool, labeled samples, augmentations,
initialisations and filter split from separate streams (:func:`simclr_lib.data.stream`).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_choice, check_float, check_int, check_positive, check_seeds
from .data import stream
from .losses import infonce, infonce_logits, nt_xent
from .models import encode, init_cnn, init_encoder, split_filters
from .training import WeightSpace, fit

__all__ = ["ImageTask", "ImageConfig", "EncoderResult", "LabelEfficiency", "load_idx",
           "load_mnist", "digits_task", "binary_task", "patchify", "augment_images",
           "pretrain_encoder", "linear_probe", "label_efficiency", "class_direction", "PIPELINES"]


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"), big-endian data.
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the format of the MNIST files), gzip-compressed or plain.

    The header is two zero bytes, a type code (``0x08`` unsigned byte, ``0x09`` signed byte,
    ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of
    dimensions, then one big-endian int32 per dimension; the data follow in C order.
    Compression is recognised from the file's first bytes, not its name.

    Parameters
    ----------
    path
        A local file, e.g. ``train-images-idx3-ubyte.gz``. Nothing is downloaded.

    Returns
    -------
    numpy.ndarray
        The array, in native byte order, with the file's shape and element type.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a well-formed IDX file (bad magic number, unknown type code,
        data shorter or longer than the header says).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path {path!r} is not a file (load_idx never downloads anything)")
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"path {path!r}: corrupt gzip data ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"path {path!r}: not an IDX file (the magic number must start with "
                         "two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"path {path!r}: unknown IDX type code {code:#04x}; must be one of "
                         f"{[hex(c) for c in _IDX_TYPES]}")
    if ndim < 1:
        raise ValueError(f"path {path!r}: the number of dimensions must be >= 1, got {ndim}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"path {path!r}: truncated header ({len(raw)} bytes, need {head})")
    shape = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - head != expected:
        raise ValueError(f"path {path!r}: the header promises {expected} data bytes for shape "
                         f"{shape}, the file holds {len(raw) - head}")
    data = np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_mnist(images_path: str | os.PathLike, labels_path: str | os.PathLike
               ) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images scaled to ``[0, 1]`` and their digit labels, from local IDX files.

    Parameters
    ----------
    images_path
        An ``idx3-ubyte`` file of ``N`` images ``H x W`` (gzip or plain).
    labels_path
        The matching ``idx1-ubyte`` file of ``N`` labels.

    Returns
    -------
    images : numpy.ndarray
        ``(N, H, W)`` float32 in ``[0, 1]``.
    labels : numpy.ndarray
        ``(N,)`` int64.

    Raises
    ------
    ValueError
        If the files do not hold ``(N, H, W)`` unsigned-byte images and ``N`` labels.
    """
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images_path must hold (N, H, W) unsigned bytes, got {images.dtype} "
                         f"{images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels_path must hold {images.shape[0]} labels, got shape {labels.shape}")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


@dataclass(frozen=True)
class ImageTask:
    """A binary image classification task: images in ``[0, 1]`` and labels in ``{-1, +1}``.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` float32.
    labels : numpy.ndarray
        ``(N,)`` float32 in ``{-1, +1}``.
    name : str
        A short description, e.g. ``"digits 3 (+1) vs 8 (-1)"``.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str

    @property
    def n_images(self) -> int:
        return int(self.labels.shape[0])


def binary_task(images: np.ndarray, digits: np.ndarray, positive: Sequence[int],
                negative: Sequence[int], scale: float = 1.0, name: str | None = None) -> ImageTask:
    """Keep the images whose digit is in ``positive`` (label +1) or ``negative`` (label -1).

    Parameters
    ----------
    images
        ``(N, H, W)`` pixel values; divided by ``scale`` to lie in ``[0, 1]``.
    digits
        ``(N,)`` integer class of every image.
    positive, negative
        Disjoint, non-empty sets of classes, e.g. ``(3,)`` and ``(8,)``, or the even and the
        odd digits.
    scale
        The largest possible pixel value (16 for scikit-learn's digits, 1 for
        :func:`load_mnist`'s output).
    name
        Description of the task; built from the classes when omitted.

    Raises
    ------
    ValueError
        If the classes overlap or are empty, shapes disagree, or a class has no image.
    """
    images, digits = np.asarray(images), np.asarray(digits)
    pos, neg = [int(c) for c in positive], [int(c) for c in negative]
    if not pos or not neg:
        raise ValueError("positive and negative must each name at least one class")
    if set(pos) & set(neg):
        raise ValueError(f"positive {pos} and negative {neg} must be disjoint")
    if images.ndim != 3 or digits.shape != images.shape[:1]:
        raise ValueError(f"images must be (N, H, W) with digits (N,), got {images.shape} and "
                         f"{digits.shape}")
    scale = check_positive("scale", scale)
    for c in pos + neg:
        if not np.any(digits == c):
            raise ValueError(f"class {c} has no image")
    keep = np.isin(digits, pos + neg)
    y = np.where(np.isin(digits[keep], pos), 1.0, -1.0).astype(np.float32)
    x = (images[keep] / scale).astype(np.float32)
    if name is None:
        name = f"digits {'/'.join(map(str, pos))} (+1) vs {'/'.join(map(str, neg))} (-1)"
    return ImageTask(x, y, name)


def digits_task(positive: Sequence[int] = (3,), negative: Sequence[int] = (8,)) -> ImageTask:
    """A binary task on scikit-learn's bundled 8x8 digits (1797 images, no download).

    Parameters
    ----------
    positive, negative
        Digit classes of the two labels; the default is 3 (+1) against 8 (-1).
        Used in chapter 7.
    """
    from sklearn.datasets import load_digits   # bundled with scikit-learn: read from disk

    bunch = load_digits()
    return binary_task(bunch.images, bunch.target, positive, negative, scale=16.0)


# ----------------------------------------------------------------------------------------------
# Patches and augmentations
# ----------------------------------------------------------------------------------------------

def patchify(images: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Cut images into square patches, the CNN's ``x^(p)``: ``(..., H, W) -> (..., P, size^2)``.

    Patches are read row by row; ``stride < size`` gives overlapping patches.

    Raises
    ------
    ValueError
        If ``size`` or ``stride`` is not a positive integer, ``size`` exceeds the image, or
        the patches would leave pixels uncovered (``(H - size) % stride != 0``).
    """
    check_int("size", size)
    check_int("stride", stride)
    if images.ndim < 2:
        raise ValueError(f"images must have shape (..., H, W), got {tuple(images.shape)}")
    H, W = images.shape[-2:]
    if size > min(H, W):
        raise ValueError(f"size must be in [1, {min(H, W)}] for {H}x{W} images, got {size}")
    if (H - size) % stride or (W - size) % stride:
        raise ValueError(f"stride {stride} with size {size} leaves pixels of {H}x{W} images "
                         "uncovered: need (H - size) and (W - size) divisible by stride")
    p = images.unfold(-2, size, stride).unfold(-2, size, stride)    # (..., nH, nW, size, size)
    return p.reshape(*images.shape[:-2], -1, size * size)


def augment_images(images: torch.Tensor, gens: Sequence[torch.Generator], max_shift: int,
                   noise: float) -> torch.Tensor:
    """One SimCLR view of every image: a random translation plus Gaussian noise.

    Each image is shifted by ``(dy, dx)``, both uniform in ``{-max_shift, ..., max_shift}``
    (a random crop of the zero-padded image; pixels moved in are background), then
    ``N(0, noise^2)`` is added to every pixel.

    Parameters
    ----------
    images
        ``(R, n, H, W)``: ``n`` images for each of ``R`` runs.
    gens
        One ``torch.Generator`` per run: run ``r`` draws only from ``gens[r]``, so a batch
        equals its runs augmented one at a time.
    max_shift
        Largest translation in pixels (``>= 0``).
    noise
        Standard deviation of the additive noise (``>= 0``).

    Returns
    -------
    torch.Tensor
        ``(R, n, H, W)`` views, same dtype and device as ``images``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (R, n, H, W), got {tuple(images.shape)}")
    R, n, H, W = images.shape
    if len(gens) != R:
        raise ValueError(f"gens has {len(gens)} generators but images has {R} runs")
    max_shift = check_int("max_shift", max_shift, low=0)
    noise = check_float("noise", noise, low=0.0)
    if max_shift >= min(H, W):
        raise ValueError(f"max_shift must be in [0, {min(H, W) - 1}] for {H}x{W} images, "
                         f"got {max_shift}")
    shifts, eps = [], []
    for g in gens:                        # fixed draw order per run: shifts, then noise
        shifts.append(torch.randint(0, 2 * max_shift + 1, (n, 2), generator=g))
        eps.append(torch.randn(n, H, W, generator=g, dtype=torch.float64))
    off = torch.stack(shifts).to(images.device)                         # (R, n, 2)
    s = max_shift
    padded = F.pad(images, (s, s, s, s))                                 # (R, n, H+2s, W+2s)
    rows = off[..., 0, None] + torch.arange(H, device=images.device)    # (R, n, H)
    cols = off[..., 1, None] + torch.arange(W, device=images.device)    # (R, n, W)
    r_idx = torch.arange(R, device=images.device)[:, None, None, None]
    n_idx = torch.arange(n, device=images.device)[None, :, None, None]
    out = padded[r_idx, n_idx, rows[..., :, None], cols[..., None, :]]
    return out + noise * torch.stack(eps).to(dtype=images.dtype, device=images.device)


def class_direction(task: ImageTask, size: int, stride: int) -> torch.Tensor:
    """The difference of the class means of the patch sums, the images' analogue of ``2 mu``.

    In Definition 3.1 the patch sum is ``z = y mu + xi``, so ``E[z | y=+1] - E[z | y=-1] = 2 mu``.
    For images this direction is estimated from all of the task's images and their labels; it
    is a diagnostic (the alignment of pre-trained filters with it, as in Theorem 5.3), never an
    input of the pipelines.

    Parameters
    ----------
    task
        Images and labels.
    size, stride
        The patch geometry of :func:`patchify`.

    Returns
    -------
    torch.Tensor
        ``(size * size,)`` float64.
    """
    z = patchify(torch.as_tensor(task.images, dtype=torch.float64), size, stride).sum(-2)
    y = torch.as_tensor(task.labels)
    return z[y > 0].mean(0) - z[y < 0].mean(0)


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageConfig:
    """Everything :func:`label_efficiency` needs besides the task, the label counts and seeds."""

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


# ----------------------------------------------------------------------------------------------
# Pre-training
# ----------------------------------------------------------------------------------------------

@dataclass
class EncoderResult:
    """Pre-trained encoder filters and the trace of pre-training.

    Attributes
    ----------
    W : torch.Tensor
        ``(R, 2m, d)`` filters.
    stop_step : numpy.ndarray
        ``(R,)`` the step each run stopped at.
    lr : numpy.ndarray
        ``(R,)`` the GD step size of each run.
    loss : numpy.ndarray
        ``(R, T)`` the SimCLR loss at every step (after a run stops, its last value repeats).
    """

    W: torch.Tensor
    stop_step: np.ndarray
    lr: np.ndarray
    loss: np.ndarray


def _power_matrix(z: torch.Tensor, zt: torch.Tensor, tau: float) -> torch.Tensor:
    """The batched matrix ``M`` of Lemma 5.1 (before the step size): (R, n0, d) x 2 -> (R, d, d).

    ``M = (1/tau) (C + C^T)`` with ``C = (1/n0) sum_i z~_i z_i^T - (1/n0^2) (sum_j z~_j)(sum_i z_i)^T``.
    """
    n0 = z.shape[1]
    C = torch.bmm(zt.transpose(1, 2), z) / n0 - torch.bmm(zt.mean(1)[:, :, None], z.mean(1)[:, None, :])
    return (C + C.transpose(1, 2)) / tau


def _views(x: torch.Tensor, gens: Sequence[torch.Generator], cfg: ImageConfig,
           mean: torch.Tensor) -> torch.Tensor:
    """Patch sums ``z = sum_p x^(p)`` of one augmented, centred view: (R, n, H, W) -> (R, n, d)."""
    v = augment_images(x, gens, cfg.max_shift, cfg.aug_noise) - mean[:, None]
    return patchify(v, cfg.patch, cfg.stride).sum(-2)


def pretrain_encoder(unlabeled: torch.Tensor, mean: torch.Tensor, seeds: Sequence[int],
                     cfg: ImageConfig = ImageConfig()) -> EncoderResult:
    """SimCLR pre-training of the linear CNN encoder on images, batched over runs.

    At every step both views of every image are drawn afresh (:func:`augment_images`), centred
    by ``mean`` and cut into patches; the encoder is ``h_i = W z_i`` with ``z_i`` the sum of
    the patches (:func:`~simclr_lib.models.encode`). Full-batch GD from ``N(0, sigma0_pre^2 I)``
    with step ``eta = lam / lambda_1(M)`` (``M`` of Lemma 5.1 on the first pair of views).
    With ``loss="infonce"`` a run stops at the end of the power-method phase, when its largest
    ``|<h_i, h~_j>| / tau`` passes ``logit_stop``; with ``"ntxent"`` it runs ``pre_steps``.

    Parameters
    ----------
    unlabeled
        ``(R, n0, H, W)`` raw images of each run (labels unused).
    mean
        ``(R, H, W)`` the per-run centring image (the mean of that run's unlabeled images).
    seeds
        One seed per run; views use stream ``"augment"``, the start ``"pretrain_init"``.
    cfg
        Patches, augmentation and pre-training settings.
    """
    seeds = check_seeds(seeds)
    if unlabeled.ndim != 4 or unlabeled.shape[0] != len(seeds):
        raise ValueError(f"unlabeled must have shape (runs={len(seeds)}, n0, H, W), "
                         f"got {tuple(unlabeled.shape)}")
    if mean.shape != (unlabeled.shape[0], *unlabeled.shape[2:]):
        raise ValueError(f"mean must have shape (runs, H, W) = {(unlabeled.shape[0], *unlabeled.shape[2:])}, "
                         f"got {tuple(mean.shape)}")
    R, dtype, device = len(seeds), unlabeled.dtype, unlabeled.device
    gens = [stream(s, "augment") for s in seeds]
    d = cfg.patch ** 2
    W = init_encoder([stream(s, "pretrain_init") for s in seeds], cfg.m, d, cfg.sigma0_pre,
                     dtype, device)
    loss_fn = {"infonce": infonce, "ntxent": nt_xent}[cfg.loss]
    z, zt = _views(unlabeled, gens, cfg, mean), _views(unlabeled, gens, cfg, mean)
    lam1 = torch.linalg.eigvalsh(_power_matrix(z, zt, cfg.tau).double())[:, -1]
    if not bool((lam1 > 0).all()):
        raise ValueError("the views share no positive direction (lambda_1(M) <= 0); "
                         "use weaker augmentations (max_shift, aug_noise)")
    lr = (cfg.lam / lam1).to(dtype)
    active = torch.ones(R, dtype=torch.bool, device=device)
    stop_step = np.full(R, cfg.pre_steps)
    losses = []
    for t in range(cfg.pre_steps + 1):
        W.requires_grad_(True)
        h, ht = encode(W, z), encode(W, zt)                              # (R, n0, 2m)
        L = loss_fn(h, ht, cfg.tau)                                      # (R,)
        with torch.no_grad():
            if not torch.isfinite(L).all():
                raise RuntimeError(f"pre-training diverged at step {t}; lower lam (now {cfg.lam})")
            if cfg.loss == "infonce":
                s = infonce_logits(h, ht, cfg.tau).abs().amax((1, 2))
                ended = active & (s > cfg.logit_stop)
                stop_step[ended.cpu().numpy()] = t
                active &= ~ended
            losses.append(L.detach().cpu().numpy())
        if t == cfg.pre_steps or not bool(active.any()):
            break
        (grad,) = torch.autograd.grad(L.sum(), W)
        with torch.no_grad():
            W = W - (lr * active)[:, None, None] * grad
        z, zt = _views(unlabeled, gens, cfg, mean), _views(unlabeled, gens, cfg, mean)
    return EncoderResult(W.detach(), stop_step, lr.cpu().numpy(), np.stack(losses, 1))


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
    pen = torch.ones(k1, dtype=f64)
    pen[-1] = 0.0                                                        # intercept: no penalty

    def objective(w: torch.Tensor) -> torch.Tensor:                      # (R,)
        margin = y * torch.einsum("rnk,rk->rn", X, w)
        return (wts * F.softplus(-margin)).sum(1) + 0.5 * (pen * w ** 2).sum(1)

    w = torch.zeros(R, k1, dtype=f64)
    for _ in range(iters):
        margin = y * torch.einsum("rnk,rk->rn", X, w)
        p = torch.sigmoid(-margin)                                       # (R, n)
        grad = -torch.einsum("rn,rnk->rk", wts * p * y, X) + pen * w
        hess = torch.einsum("rn,rnk,rnl->rkl", wts * p * (1 - p), X, X) + torch.diag(pen)
        hess = hess + 1e-12 * torch.eye(k1, dtype=f64)
        step = torch.linalg.solve(hess, grad)                            # (R, k+1)
        t = torch.ones(R, 1, dtype=f64)
        f0 = objective(w)
        for _ in range(30):                                              # step halving per run
            worse = objective(w - t * step) > f0 + 1e-12
            if not bool(worse.any()):
                break
            t = torch.where(worse[:, None], t / 2, t)
        w = w - t * step
    pred = torch.where(torch.einsum("rnk,rk->rn", Xt, w) > 0, 1.0, -1.0).to(f64)
    return (pred == y_test.to(f64)).to(f64).mean(1)


# ----------------------------------------------------------------------------------------------
# The label-efficiency experiment
# ----------------------------------------------------------------------------------------------

#: The three pipelines of :func:`label_efficiency`, in the order of its tables.
PIPELINES = ("simclr", "supervised", "probe")


@dataclass
class LabelEfficiency:
    """Test accuracy of the three pipelines against the number of labels.

    Attributes
    ----------
    ns : list of int
        Label counts (balanced: ``n / 2`` per class).
    seeds : list of int
        One run per seed.
    accuracy : dict
        ``accuracy[pipeline]`` is ``(len(ns), len(seeds))`` for pipeline in
        ``("simclr", "supervised", "probe")``.
    pretrain : EncoderResult
        The pre-training of each seed (shared by ``"simclr"`` and ``"probe"``).
    config : dict
        The :class:`ImageConfig` and the task's name.
    """

    ns: list[int]
    seeds: list[int]
    accuracy: dict[str, np.ndarray]
    pretrain: EncoderResult
    config: dict[str, Any] = field(default_factory=dict)

    def mean(self, pipeline: str) -> np.ndarray:
        """Mean accuracy over seeds, ``(len(ns),)``."""
        return self.accuracy[check_choice("pipeline", pipeline, PIPELINES)].mean(1)

    def std(self, pipeline: str) -> np.ndarray:
        """Standard deviation over seeds (``ddof=0``), ``(len(ns),)``."""
        return self.accuracy[check_choice("pipeline", pipeline, PIPELINES)].std(1)

    def table(self) -> str:
        """A fixed-width text table: one row per label count, ``mean +- std`` per pipeline."""
        head = f"{'labels':>6}" + "".join(f"{p:>18}" for p in PIPELINES)
        rows = [head]
        for k, n in enumerate(self.ns):
            cells = "".join(f"{self.mean(p)[k]:>11.3f} ± {self.std(p)[k]:.3f}" for p in PIPELINES)
            rows.append(f"{n:>6}" + cells)
        return "\n".join(rows)


def _split(task: ImageTask, seed: int, n0: int, n_test: int, n_max: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Test indices, unlabeled indices and class-balanced, nested labeled indices of one run."""
    N = task.n_images
    perm = torch.randperm(N, generator=stream(seed, "test")).numpy()
    test, pool = perm[:n_test], perm[n_test:]
    unl = pool[torch.randperm(len(pool), generator=stream(seed, "unlabeled")).numpy()[:n0]]
    g = stream(seed, "train")
    by_class = []
    for label in (1.0, -1.0):
        members = pool[task.labels[pool] == label]
        if len(members) < n_max // 2:
            raise ValueError(f"ns asks for {n_max // 2} labels per class, but seed {seed}'s pool "
                             f"holds only {len(members)} images of class {label:+.0f}")
        by_class.append(members[torch.randperm(len(members), generator=g).numpy()])
    # interleave the classes so that the first n indices hold n/2 of each (nested in n)
    lab = np.stack([c[: n_max // 2] for c in by_class], 1).reshape(-1)
    return test, unl, lab


def label_efficiency(task: ImageTask, ns: Sequence[int], seeds: Sequence[int],
                     cfg: ImageConfig = ImageConfig(), dtype: torch.dtype = torch.float32
                     ) -> LabelEfficiency:
    """Test accuracy against labels for SimCLR + fine-tuning, direct training and a linear probe.

    For every seed: a random test split of ``cfg.n_test`` images; ``cfg.n0`` unlabeled images
    from the rest (the pool) for pre-training (:func:`pretrain_encoder`); and, for each ``n``
    in ``ns``, ``n / 2`` labeled images of each class from the pool (nested: the labels of a
    smaller ``n`` are among those of a larger one). Then

    * ``"simclr"``: the ``2m`` pre-trained filters are split at random into ``W_{+1}`` and
      ``W_{-1}`` (Section 3.3), each rescaled to norm ``sigma0 sqrt(d)``, and the CNN of
      eq. 3.2 is trained by GD on the ``n`` labels (:class:`~simclr_lib.training.WeightSpace`);
    * ``"supervised"``: the same CNN and GD from ``N(0, sigma0^2 I)``;
    * ``"probe"``: logistic regression on the frozen embedding ``W z`` (standardised with the
      unlabeled images' statistics).

    Images are centred by the mean of the run's unlabeled images. All ``len(ns) x len(seeds)``
    fine-tuning runs form one batch, and so do the direct-training runs. Chapter 7.

    Parameters
    ----------
    task
        Images and ``{-1, +1}`` labels, e.g. :func:`digits_task`.
    ns
        Even label counts ``>= 2``.
    seeds
        One run per seed.
    cfg
        Patches, augmentations, pre-training, fine-tuning and probe settings.
    dtype
        ``torch.float32`` or ``torch.float64``.
    """
    seeds = check_seeds(seeds)
    ns = [check_int("n", n, low=2) for n in ns]
    if not ns:
        raise ValueError("ns must be a non-empty sequence of even label counts")
    for n in ns:
        if n % 2:
            raise ValueError(f"every n must be even (n / 2 labels per class), got {n}")
    if cfg.n_test + cfg.n0 > task.n_images:
        raise ValueError(f"n_test + n0 = {cfg.n_test + cfg.n0} exceeds the task's "
                         f"{task.n_images} images")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    H, W_img = task.images.shape[1:]
    patchify(torch.zeros(1, H, W_img), cfg.patch, cfg.stride)   # validate the patch geometry
    K, S, n_max, d, m = len(ns), len(seeds), max(ns), cfg.patch ** 2, cfg.m
    X = torch.as_tensor(task.images, dtype=dtype)
    Y = torch.as_tensor(task.labels, dtype=dtype)
    splits = [_split(task, s, cfg.n0, cfg.n_test, n_max) for s in seeds]
    test_idx, unl_idx, lab_idx = (np.stack(a) for a in zip(*splits))    # (S, .)

    unl = X[unl_idx]                                                     # (S, n0, H, W)
    mean = unl.mean(1)                                                   # (S, H, W)

    def patches(idx: np.ndarray) -> torch.Tensor:                        # (S, k, P, d), centred
        return patchify(X[idx] - mean[:, None], cfg.patch, cfg.stride)

    x_lab, x_test, x_unl = patches(lab_idx), patches(test_idx), patches(unl_idx)
    y_lab, y_test = Y[lab_idx], Y[test_idx]                              # (S, n_max), (S, n_test)

    # runs are (k, s) flattened k-major: run k * S + s trains on the first ns[k] labels of seed s
    mask = torch.stack([torch.arange(n_max) < n for n in ns])[:, None, :].expand(K, S, n_max)
    mask = mask.reshape(K * S, n_max)
    wts = mask.to(dtype) / mask.sum(1, keepdim=True).to(dtype)
    x_run = x_lab.repeat(K, 1, 1, 1) * mask[:, :, None, None]
    y_run = y_lab.repeat(K, 1) * mask
    xt_run, yt_run = x_test.repeat(K, 1, 1, 1), y_test.repeat(K, 1)

    pre = pretrain_encoder(unl, mean, seeds, cfg)
    W_ft = split_filters(pre.W, [stream(s, "split") for s in seeds])     # (S, 2, m, d)
    W_ft = W_ft / W_ft.norm(dim=-1, keepdim=True) * (cfg.sigma0 * math.sqrt(d))
    W_sup = init_cnn([stream(s, "init") for s in seeds], m, d, cfg.sigma0, dtype)

    acc = {}
    for name, W0 in (("simclr", W_ft), ("supervised", W_sup)):
        stepper = WeightSpace(W0.repeat(K, 1, 1, 1), x_run, y_run, wts, xt_run, cfg.q, cfg.lr)
        hist = fit(stepper, yt_run, wts, cfg.steps, cfg.steps, coefficients=False)
        acc[name] = 1.0 - hist.last("test_error").reshape(K, S)

    # linear probe on the frozen embedding h = W z, standardised with unlabeled statistics
    def embed(x: torch.Tensor) -> torch.Tensor:
        return encode(pre.W, x.sum(-2))                                  # (S, k, 2m)

    h_unl = embed(x_unl)
    mu_h, sd_h = h_unl.mean(1, keepdim=True), h_unl.std(1, keepdim=True).clamp_min(1e-12)
    h_lab = ((embed(x_lab) - mu_h) / sd_h).repeat(K, 1, 1)              # (K * S, n_max, 2m)
    h_test = ((embed(x_test) - mu_h) / sd_h).repeat(K, 1, 1)
    probe = linear_probe(h_lab, y_run, mask, h_test, yt_run, cfg.probe_c)
    acc["probe"] = probe.reshape(K, S).numpy()
    return LabelEfficiency(ns, seeds, acc, pre, {"task": task.name, "cfg": asdict(cfg)})
