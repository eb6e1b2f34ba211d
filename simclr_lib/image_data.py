"""Real images, the data side (chapter 7, :ref:`real-images`): MNIST's IDX files, the bundled
8x8 digits as a binary task, patches and SimCLR's image augmentations.

* :func:`load_idx`, :func:`load_mnist` -- read MNIST's IDX files (gzip-compressed or plain)
  from a path the user gives. Nothing is ever downloaded.
* :func:`digits_task`, :func:`binary_task` -- a two-class task with labels in {-1, +1}.
* :func:`patchify` -- ``(..., H, W) -> (..., P, k*k)`` square patches, the paper's ``x^(p)``
  (Definition 3.1 has two; here there are ``P``).
* :func:`augment_images` -- SimCLR's views: a random translation (a crop of the zero-padded
  image) and additive Gaussian noise, batched over runs with one generator per run.

The training side is :mod:`simclr_lib.images`; the label-efficiency study,
:mod:`simclr_lib.image_study`.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import check_float, check_int, check_positive

__all__ = ["ImageTask", "load_idx", "load_mnist", "digits_task", "binary_task", "patchify",
           "augment_images", "class_direction"]

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


