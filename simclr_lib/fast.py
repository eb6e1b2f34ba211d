"""The supervised cells of a sweep: every seed of a block at every signal strength.

:func:`supervised_cells` is the one computation behind ``sweeps.supervised_grid``; it trains
through the pipeline (:func:`~simclr_lib.pipelines.run_supervised`), all runs of the block in
one batched program.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from .config import DataConfig, SupervisedConfig
from .pipelines import run_supervised

__all__ = ["supervised_cells", "METRICS"]

METRICS = ("train_loss", "test_loss", "test_error")


def supervised_cells(seeds: Sequence[int], mu_norms: Sequence[float], n: int, data: DataConfig,
                     cfg: SupervisedConfig, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """Final ``train_loss``, ``test_loss`` and ``test_error``, each (len(mu_norms), len(seeds)):
    entry ``[j, s]`` is ``run_supervised(seeds[s], replace(data, snr=mu), replace(cfg, n=n))``
    at ``mu = mu_norms[j]`` (``snr = mu / (sigma_p sqrt(d))``, ``d = data.d``)."""
    seeds, mu_norms = list(seeds), list(mu_norms)
    scale = data.sigma_p * math.sqrt(data.d)
    snrs = [mu / scale for mu in mu_norms for _ in seeds]
    # recording only the last step changes no value (recording never changes training)
    cfg = replace(cfg, n=n, record_every=cfg.steps)
    hist = run_supervised(seeds * len(mu_norms), replace(data, snr=snrs[0]), cfg, snr=snrs,
                          device=device, dtype=dtype)
    shape = (len(mu_norms), len(seeds))
    return {k: hist.last(k).reshape(shape) for k in METRICS}
