"""The two-patch data model (Definition 3.1) and SimCLR augmentations (Section 3.2).

A batch holds ``R`` independent runs; run ``r`` draws from its own generators
(:func:`stream`), so a batch equals the same runs drawn one at a time.
``mu = ||mu|| e_1`` (the model is rotation invariant), so noise orthogonal to ``mu``
is exactly Gaussian noise on coordinates ``2..d``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from ._validate import check_device, check_dtype, check_float, check_int, check_seeds, per_run
from .config import DataConfig

__all__ = ["Dataset", "stream", "cell_seed", "make_dataset", "draw_run", "augment", "views",
           "STREAMS"]

# Independent random streams of one run: a test set never shares draws with a training set.
STREAMS = {"train": 0, "test": 1, "init": 2, "augment": 3, "split": 4, "unlabeled": 5,
           "pretrain_init": 6}


# torch's CPU generator state (CPUGeneratorImplState, torch 2.x): a uint64 seed, two ints and a
# uint64 at bytes 0-23, then the 624 Mersenne-Twister words, each stored as a uint64.
_MT_N, _MT_OFFSET, _STATE_BYTES = 624, 24, 5056


def stream(seed: int, name: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for the named stream of run ``seed``.

    The generator's whole Mersenne-Twister state (624 words) is filled from
    ``numpy.random.SeedSequence([seed, id])``, so different names and different seeds give
    statistically independent draws. (``torch.Generator.manual_seed`` keeps only the low 32
    bits of a seed, which made distinct (seed, stream) pairs collide.)
    """
    if name not in STREAMS:
        raise ValueError(f"stream name must be one of {tuple(STREAMS)}, got {name!r}")
    check_int("seed", seed, low=0)
    words = np.random.SeedSequence([seed, STREAMS[name]]).generate_state(_MT_N, dtype=np.uint32)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(0)                   # left = 1, next = 0: the first draw twists the state
    state = gen.get_state().numpy().copy()
    if state.size != _STATE_BYTES:
        raise RuntimeError(f"unexpected torch CPU generator state of {state.size} bytes "
                           f"(expected {_STATE_BYTES}); torch=={torch.__version__} is not supported")
    state[_MT_OFFSET:_MT_OFFSET + 8 * _MT_N] = words.astype(np.uint64).view(np.uint8)
    gen.set_state(torch.from_numpy(state))
    return gen


def cell_seed(seed: int, *key: int) -> int:
    """A seed for one cell of a grid drawn independently of the other cells: a 63-bit integer
    hashed (``SeedSequence``) from ``seed`` and the cell's integer ``key`` (e.g. its indices).
    A grid with ``pairing="independent"`` runs cell ``key`` of seed ``s`` as ``cell_seed(s, *key)``."""
    check_int("seed", seed, low=0)
    key = [check_int("key", k, low=0) for k in key]
    hi, lo = np.random.SeedSequence([seed, 2 ** 32 - 1, *key]).generate_state(2, dtype=np.uint32)
    return (int(hi) << 31) ^ int(lo)


@dataclass
class Dataset:
    """``R`` runs of samples from Definition 3.1, padded to a common size ``n``.

    Attributes
    ----------
    y : (R, n) observed labels in {-1, +1} (after label flipping; 0 on padding).
    y_true : (R, n) clean labels that set the signal patch ``y_true * mu``.
    noise : (R, n, d) noise patches xi, orthogonal to mu (zero on padding).
    mu : (R, d) the signal vector of each run.
    signal_first : (R, n) bool, True where the signal is patch 1.
    mask : (R, n) bool, False on padding (runs may differ in sample size).
    """

    y: torch.Tensor
    y_true: torch.Tensor
    noise: torch.Tensor
    mu: torch.Tensor
    signal_first: torch.Tensor
    mask: torch.Tensor

    @property
    def runs(self) -> int:
        return self.y.shape[0]

    @property
    def n(self) -> int:
        return self.y.shape[1]

    @property
    def d(self) -> int:
        return self.mu.shape[1]

    def signal(self) -> torch.Tensor:
        """(R, n, d) the signal patches ``y_true * mu`` (zero on padding)."""
        return self.y_true[..., None] * self.mu[:, None, :]

    def patches(self) -> torch.Tensor:
        """(R, n, 2, d) the two patches ``[x1, x2]`` of every sample."""
        s, xi = self.signal(), self.noise
        first = self.signal_first[..., None]
        return torch.stack([torch.where(first, s, xi), torch.where(first, xi, s)], dim=2)

    def patch_sum(self) -> torch.Tensor:
        """(R, n, d) ``x1 + x2``, the input of the linear encoder."""
        return self.signal() + self.noise

    def weights(self) -> torch.Tensor:
        """(R, n) per-sample weights ``mask / n_r``: averages over each run's own samples."""
        m = self.mask.to(self.noise.dtype)
        return m / m.sum(1, keepdim=True)

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(*(t.to(device) for t in (self.y, self.y_true, self.noise, self.mu,
                                                self.signal_first, self.mask)))


def _noise_tail(gen: torch.Generator, n: int, d: int, sigma_p: float, dtype: torch.dtype
                ) -> torch.Tensor:
    """(n, d - 1) the noise patches' coordinates 2..d (coordinate 1, along mu, is zero)."""
    return torch.randn(n, d - 1, generator=gen, dtype=dtype).mul_(sigma_p)


def _noise(gen: torch.Generator, n: int, d: int, sigma_p: float, dtype: torch.dtype) -> torch.Tensor:
    xi = torch.zeros(n, d, dtype=dtype)
    xi[:, 1:] = _noise_tail(gen, n, d, sigma_p, dtype)
    return xi


def draw_run(cfg: DataConfig, k: int, gen: torch.Generator, dtype: torch.dtype = torch.float32
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One run's ``k`` samples from ``gen``, in the order :func:`make_dataset` draws them:
    clean labels ``y_true``, observed labels ``y``, ``signal_first`` (k,) and the noise
    patches' coordinates ``2..d`` (k, d - 1) (coordinate 1, along ``mu``, is zero). Not
    validated: ``make_dataset`` and ``fast.supervised_cells`` call it."""
    yt = torch.randint(0, 2, (k,), generator=gen).to(dtype) * 2 - 1
    flip = torch.rand(k, generator=gen, dtype=torch.float64) < cfg.p
    pos = torch.randint(0, 2, (k,), generator=gen) == 0
    first = pos if cfg.signal_patch == "random" else torch.ones(k, dtype=torch.bool)
    return yt, torch.where(flip, -yt, yt), first, _noise_tail(gen, k, cfg.d, cfg.sigma_p, dtype)


def make_dataset(cfg: DataConfig, n: int | Sequence[int], seeds: int | Sequence[int],
                 split: str = "train", snr: float | Sequence[float] | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Dataset:
    """Sample ``n`` points per run from Definition 3.1.

    Parameters
    ----------
    cfg : data model (``d``, ``snr``, ``sigma_p``, label-flip ``p``, signal position).
    n : sample size, one for all runs or one per run (runs are padded and masked).
    seeds : one seed per run.
    split : which random stream to draw from: ``"train"``, ``"test"`` or ``"unlabeled"``.
    snr : overrides ``cfg.snr``, one for all runs or one per run.
    """
    seeds = check_seeds(seeds)
    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"split must be one of ('train', 'test', 'unlabeled'), got {split!r}")
    ns = [check_int("n", k) for k in per_run("n", n, len(seeds))]
    snrs = [check_float("snr", s, low=0.0)
            for s in per_run("snr", cfg.snr if snr is None else snr, len(seeds))]
    check_dtype(dtype)
    device = check_device(device)
    R, n_max, d = len(seeds), max(ns), cfg.d
    y_true = torch.zeros(R, n_max, dtype=dtype)
    y = torch.zeros(R, n_max, dtype=dtype)
    noise = torch.zeros(R, n_max, d, dtype=dtype)
    first = torch.ones(R, n_max, dtype=torch.bool)
    mask = torch.zeros(R, n_max, dtype=torch.bool)
    for r, (seed, k) in enumerate(zip(seeds, ns)):   # one generator per run: batch == one-at-a-time
        y_true[r, :k], y[r, :k], first[r, :k], noise[r, :k, 1:] = draw_run(
            cfg, k, stream(seed, split), dtype)
        mask[r, :k] = True
    mu = torch.zeros(R, d, dtype=dtype)
    mu[:, 0] = torch.tensor([cfg.mu_norm(s) for s in snrs], dtype=dtype)
    return Dataset(y, y_true, noise, mu, first, mask).to(device)


def augment(data: Dataset, seeds: int | Sequence[int], sigma_p: float, rho: float = 0.0) -> Dataset:
    """The positive views ``x~_i`` of SimCLR (Section 3.2).

    The signal patch ``y_i mu`` is kept and the noise patch becomes
    ``rho * xi_i + sqrt(1 - rho^2) * xi'_i`` with fresh ``xi'_i``; ``rho = 0`` is the
    paper's ideal augmentation ``x~_i ~ P(x | y = y_i)``, ``rho = 1`` copies the sample.
    """
    seeds = check_seeds(seeds)
    if len(seeds) != data.runs:
        raise ValueError(f"seeds has {len(seeds)} entries but the data set has {data.runs} runs")
    rho = check_float("rho", rho, 0.0, 1.0)
    sigma_p = check_float("sigma_p", sigma_p, low=0.0, low_open=True)
    return views(data, [stream(s, "augment") for s in seeds], sigma_p, rho)


def views(data: Dataset, gens: Sequence[torch.Generator], sigma_p: float, rho: float) -> Dataset:
    """:func:`augment` with the fresh noise drawn from ``gens`` (one generator per run, not
    checked): each call advances them, so repeated calls give fresh views each time."""
    fresh = torch.zeros_like(data.noise, device="cpu")
    sizes = data.mask.sum(1).tolist()      # each run's own n: a batch == the runs one at a time
    for r, (g, k) in enumerate(zip(gens, sizes)):
        fresh[r, :k] = _noise(g, k, data.d, sigma_p, data.noise.dtype)
    fresh = fresh.to(data.noise.device) * data.mask[..., None]
    return replace(data, noise=rho * data.noise + math.sqrt(1.0 - rho ** 2) * fresh)
