"""The label-efficiency study on real images (chapter 7, :ref:`real-images`, and Appendix A):
test accuracy against the number of labels for SimCLR + fine-tuning (the random split of
Section 3.3, then GD on eq. 3.2's CNN through :class:`~simclr_lib.training.WeightSpace`),
direct supervised training, and a linear probe.

The pieces it runs are in :mod:`simclr_lib.images` (pre-training, probe, settings) and
:mod:`simclr_lib.image_data` (tasks, patches). Every run ``seeds[r]`` draws its test split,
unlabeled pool, labeled samples, augmentations, initialisations and filter split from
separate streams (:func:`simclr_lib.data.stream`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ._validate import check_choice, check_device, check_dtype, check_int, check_seeds
from .data import stream
from .image_data import ImageTask, patchify
from .images import ImageConfig, linear_probe, pretrain_encoder
from .models import encode, init_cnn, split_filters
from .pretraining import PretrainResult
from .training import WeightSpace, fit

__all__ = ["PIPELINES", "LabelEfficiency", "label_efficiency"]


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
    pretrain : ~simclr_lib.pretraining.PretrainResult
        The pre-training of each seed (shared by ``"simclr"`` and ``"probe"``), from
        :func:`~simclr_lib.images.pretrain_encoder`.
    config : dict
        The :class:`~simclr_lib.images.ImageConfig` and the task's name.
    """

    ns: list[int]
    seeds: list[int]
    accuracy: dict[str, np.ndarray]
    pretrain: PretrainResult
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
                     cfg: ImageConfig = ImageConfig(), dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu") -> LabelEfficiency:
    """Test accuracy against labels for SimCLR + fine-tuning, direct training and a linear probe.

    For every seed: a random test split of ``cfg.n_test`` images; ``cfg.n0`` unlabeled images
    from the rest (the pool) for pre-training (:func:`~simclr_lib.images.pretrain_encoder`);
    and, for each ``n`` in ``ns``, ``n / 2`` labeled images of each class from the pool
    (nested: the labels of a smaller ``n`` are among those of a larger one). Then

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
        Images and ``{-1, +1}`` labels, e.g. :func:`~simclr_lib.image_data.digits_task`.
    ns
        Even label counts ``>= 2``.
    seeds
        One run per seed.
    cfg
        Patches, augmentations, pre-training, fine-tuning and probe settings.
    dtype
        ``torch.float32`` or ``torch.float64``.
    device
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the runs compute (random draws are made on
        the CPU from the seeds' streams, so a seed gives the same runs on every device).

    Notes
    -----
    Deviations from the synthetic pipelines (stated in chapter 7). The labeled images are
    class-balanced (``n / 2`` per class; synthetic labels are drawn at random), and the
    pre-trained filters are rescaled to the norm of a Gaussian start before fine-tuning.
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
    dtype, device = check_dtype(dtype), check_device(device)
    H, W_img = task.images.shape[1:]
    patchify(torch.zeros(1, H, W_img), cfg.patch, cfg.stride)   # validate the patch geometry
    K, S, n_max, d, m = len(ns), len(seeds), max(ns), cfg.patch ** 2, cfg.m
    X = torch.as_tensor(task.images, dtype=dtype).to(device)
    Y = torch.as_tensor(task.labels, dtype=dtype).to(device)
    splits = [_split(task, s, cfg.n0, cfg.n_test, n_max) for s in seeds]
    test_idx, unl_idx, lab_idx = (np.stack(a) for a in zip(*splits))    # (S, .)

    unl = X[unl_idx]                                                     # (S, n0, H, W)
    mean = unl.mean(1)                                                   # (S, H, W)

    def patches(idx: np.ndarray) -> torch.Tensor:                        # (S, k, P, d), centred
        return patchify(X[idx] - mean[:, None], cfg.patch, cfg.stride)

    x_lab, x_test, x_unl = patches(lab_idx), patches(test_idx), patches(unl_idx)
    y_lab, y_test = Y[lab_idx], Y[test_idx]                              # (S, n_max), (S, n_test)

    # runs are (k, s) flattened k-major: run k * S + s trains on the first ns[k] labels of seed s
    mask = torch.stack([torch.arange(n_max, device=device) < n for n in ns])[:, None, :]
    mask = mask.expand(K, S, n_max)
    mask = mask.reshape(K * S, n_max)
    wts = mask.to(dtype) / mask.sum(1, keepdim=True).to(dtype)
    x_run = x_lab.repeat(K, 1, 1, 1) * mask[:, :, None, None]
    y_run = y_lab.repeat(K, 1) * mask
    xt_run, yt_run = x_test.repeat(K, 1, 1, 1), y_test.repeat(K, 1)

    pre = pretrain_encoder(unl, mean, seeds, cfg)
    W_ft = split_filters(pre.W, [stream(s, "split") for s in seeds])     # (S, 2, m, d)
    W_ft = W_ft / W_ft.norm(dim=-1, keepdim=True) * (cfg.sigma0 * math.sqrt(d))
    W_sup = init_cnn([stream(s, "init") for s in seeds], m, d, cfg.sigma0, dtype, device)

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
    acc["probe"] = probe.reshape(K, S).cpu().numpy()
    return LabelEfficiency(ns, seeds, acc, pre, {"task": task.name, "cfg": asdict(cfg)})
