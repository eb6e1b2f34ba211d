"""Sweeps over the paper's grids, run as a few batched tensor programs (chapters 3, 4, 6).

Each sweep flattens its grid x seeds into runs, cuts them into chunks that fit a memory
budget, and runs every chunk as one batched program. Chunks are independent: pass any
``concurrent.futures.Executor`` (a process pool, ``dask.distributed.Client.get_executor()``)
to spread them; the default runs them in this process. Results are plain numpy arrays
together with the configuration that produced them.
"""
from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._validate import check_float, check_int, check_seeds
from .config import DataConfig, PretrainConfig, SupervisedConfig, replace
from .data import stream
from .models import split_filters
from .pipelines import run_finetune, run_pretrain, run_supervised

__all__ = ["SweepResult", "supervised_grid", "simclr_grid", "alignment_grid", "label_complexity",
           "n0_for"]


@dataclass
class SweepResult:
    """``values[i, j, s]``: the metric at ``axes[0][i]``, ``axes[1][j]`` and seed ``s``."""

    values: np.ndarray
    axes: dict[str, list]
    metric: str
    config: dict[str, Any] = field(default_factory=dict)

    def mean(self) -> np.ndarray:
        """The mean over seeds, (len(axis 0), len(axis 1))."""
        return self.values.mean(-1)


def n0_for(snr: float, n0_snr2: float) -> int:
    """The unlabeled sample size with ``n0 * snr^2 = n0_snr2`` (at least 2)."""
    return max(2, math.ceil(n0_snr2 / snr ** 2))


def _check_grid(name: str, values: Sequence, kind: str) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence")
    if kind == "int":
        return [check_int(name, v) for v in values]
    return [check_float(name, v, low=0.0, low_open=True) for v in values]


def _chunks(total: int, per_run_bytes: float, memory_gb: float) -> list[slice]:
    """Cut ``total`` runs into contiguous chunks whose working set fits ``memory_gb``."""
    size = max(1, int(memory_gb * 2 ** 30 // max(per_run_bytes, 1.0)))
    return [slice(a, min(a + size, total)) for a in range(0, total, size)]


def _map(fn: Callable, jobs: list[tuple], executor: Executor | None) -> list:
    if executor is None:
        return [fn(*job) for job in jobs]
    return [f.result() for f in [executor.submit(fn, *job) for job in jobs]]


def _supervised_chunk(seeds, snrs, ns, data, cfg, device, dtype) -> np.ndarray:
    return run_supervised(seeds, data, cfg, snr=snrs, n=ns, device=device, dtype=dtype).last("test_error")


def supervised_grid(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                    data: DataConfig = DataConfig(), cfg: SupervisedConfig = SupervisedConfig(),
                    executor: Executor | None = None, memory_gb: float = 1.0,
                    device: str = "cpu", dtype: torch.dtype = torch.float32) -> SweepResult:
    """Test error of direct supervised training over an ``(n, snr)`` grid (Theorem 4.3).

    Returns ``values[i_n, i_snr, i_seed]``. Used in chapters 3 and 6.
    """
    ns, snrs = _check_grid("ns", ns, "int"), _check_grid("snrs", snrs, "float")
    seeds = check_seeds(seeds)
    memory_gb = check_float("memory_gb", memory_gb, low=0.0, low_open=True)
    cells = [(n, s, seed) for n in ns for s in snrs for seed in seeds]
    per_run = 4 * data.d * (cfg.n_test + 4 * max(ns) + 4 * cfg.m) * (2 if cfg.method == "weight" else 1)
    jobs = [([c[2] for c in cells[sl]], [c[1] for c in cells[sl]], [c[0] for c in cells[sl]],
             data, cfg, device, dtype) for sl in _chunks(len(cells), per_run, memory_gb)]
    out = np.concatenate(_map(_supervised_chunk, jobs, executor))
    return SweepResult(out.reshape(len(ns), len(snrs), len(seeds)),
                       {"n": ns, "snr": snrs, "seed": seeds}, "test_error",
                       {"data": asdict(data), "cfg": asdict(cfg)})


def _alignment_chunk(seeds, snrs, n0s, data, pre, device, dtype) -> np.ndarray:
    res = run_pretrain(seeds, data, pre, snr=snrs, n0=n0s, device=device, dtype=dtype)
    return res.history.last("align_mean")


def alignment_grid(n0s: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                   data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                   executor: Executor | None = None, memory_gb: float = 1.0,
                   device: str = "cpu", dtype: torch.dtype = torch.float32) -> SweepResult:
    """Mean ``|cos(w_r, mu)|`` after pre-training over an ``(n0, snr)`` grid (Theorem 5.3).

    Returns ``values[i_n0, i_snr, i_seed]``. Used in chapter 4.
    """
    n0s, snrs = _check_grid("n0s", n0s, "int"), _check_grid("snrs", snrs, "float")
    seeds = check_seeds(seeds)
    memory_gb = check_float("memory_gb", memory_gb, low=0.0, low_open=True)
    cells = [(n0, s, seed) for n0 in n0s for s in snrs for seed in seeds]
    cells.sort(key=lambda c: c[0])   # similar n0 share a chunk: little padding
    order = {c: i for i, c in enumerate(cells)}
    per_run = 4 * (8 * max(n0s) * data.d + 3 * max(n0s) ** 2 + 8 * pre.m * data.d)
    jobs = [([c[2] for c in cells[sl]], [c[1] for c in cells[sl]], [c[0] for c in cells[sl]],
             data, pre, device, dtype) for sl in _chunks(len(cells), per_run, memory_gb)]
    flat = np.concatenate(_map(_alignment_chunk, jobs, executor))
    grid = [(n0, s, seed) for n0 in n0s for s in snrs for seed in seeds]
    out = np.array([flat[order[c]] for c in grid])
    return SweepResult(out.reshape(len(n0s), len(snrs), len(seeds)),
                       {"n0": n0s, "snr": snrs, "seed": seeds}, "align_mean",
                       {"data": asdict(data), "pre": asdict(pre)})


def _simclr_chunk(seeds, snrs, n0s, ns, data, pre, ft, device, dtype) -> np.ndarray:
    """Pre-train once per (snr, seed), then fine-tune that encoder on every n in ``ns``."""
    res = run_pretrain(seeds, data, pre, snr=snrs, n0=n0s, device=device, dtype=dtype)
    W0 = split_filters(res.W, [stream(s, "split") for s in seeds])     # (R, 2, m, d)
    k = len(ns)
    hist = run_finetune(W0.repeat(k, 1, 1, 1), seeds * k, data, ft, snr=snrs * k,
                        n=[n for n in ns for _ in seeds], device=device, dtype=dtype)
    return hist.last("test_error").reshape(k, len(seeds))


def simclr_grid(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                ft: SupervisedConfig = SupervisedConfig(), n0_snr2: float | None = 16.0,
                executor: Executor | None = None, memory_gb: float = 1.0,
                device: str = "cpu", dtype: torch.dtype = torch.float32) -> SweepResult:
    """Test error of SimCLR + fine-tuning over an ``(n, snr)`` grid (Theorem 4.2).

    Each ``(snr, seed)`` is pre-trained once on ``n0 = n0_snr2 / snr^2`` unlabeled samples
    (``pre.n0`` when ``n0_snr2`` is None) and fine-tuned for every ``n``.
    Returns ``values[i_n, i_snr, i_seed]``. Used in chapters 1 and 6.
    """
    ns, snrs = _check_grid("ns", ns, "int"), _check_grid("snrs", snrs, "float")
    seeds = check_seeds(seeds)
    memory_gb = check_float("memory_gb", memory_gb, low=0.0, low_open=True)
    if n0_snr2 is not None:
        check_float("n0_snr2", n0_snr2, low=0.0, low_open=True)
    n0 = {s: (pre.n0 if n0_snr2 is None else n0_for(s, n0_snr2)) for s in snrs}
    cells = [(s, seed) for s in sorted(snrs, key=lambda s: n0[s]) for seed in seeds]
    big = max(n0.values())
    per_run = 4 * (8 * big * data.d + 3 * big ** 2) + 4 * data.d * len(ns) * (ft.n_test + 4 * max(ns))
    out = np.zeros((len(ns), len(snrs), len(seeds)))
    slices = _chunks(len(cells), per_run, memory_gb)
    jobs = [([c[1] for c in cells[sl]], [c[0] for c in cells[sl]], [n0[c[0]] for c in cells[sl]],
             ns, data, pre, ft, device, dtype) for sl in slices]
    for sl, vals in zip(slices, _map(_simclr_chunk, jobs, executor)):
        for col, (s, seed) in enumerate(cells[sl]):
            out[:, snrs.index(s), seeds.index(seed)] = vals[:, col]
    return SweepResult(out, {"n": ns, "snr": snrs, "seed": seeds}, "test_error",
                       {"data": asdict(data), "pre": asdict(pre), "ft": asdict(ft),
                        "n0": [n0[s] for s in snrs]})


def label_complexity(result: SweepResult, threshold: float = 0.1) -> np.ndarray:
    """``n*(snr)``: the smallest ``n`` of the grid whose mean test error is below ``threshold``
    (NaN where none is), one per SNR of an ``(n, snr)`` sweep. Chapter 6."""
    check_float("threshold", threshold, 0.0, 1.0, low_open=True)
    if list(result.axes)[:2] != ["n", "snr"]:
        raise ValueError("label_complexity needs an (n, snr) sweep")
    ns = np.array(result.axes["n"], float)
    below = result.mean() < threshold                                 # (len(ns), len(snrs))
    order = np.argsort(ns)
    out = np.full(below.shape[1], np.nan)
    for j in range(below.shape[1]):
        hit = np.nonzero(below[order, j])[0]
        if hit.size:
            out[j] = ns[order][hit[0]]
    return out
