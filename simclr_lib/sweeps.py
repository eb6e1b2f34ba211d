"""Sweeps over the paper's grids, run as a few batched programs (chapters 1, 3, 4, 6).

Every sweep lays its grid out as named runs (:class:`Run`: the cell's values by axis name,
its seed, its position in the result), groups them into chunks that fit a memory budget
(``memory_gb``) and hands the chunks to the engine (:mod:`simclr_lib.chunks`), which runs
them here or on any ``concurrent.futures.Executor`` (a process pool,
``dask.distributed.Client.get_executor()``) and, with ``cache_dir``, keeps each finished
chunk so an interrupted sweep resumes without recomputing (``python -m simclr_lib``).
Each chunk calls the pipelines (:mod:`simclr_lib.pipelines`); a result cell equals the run
of those parameters trained on its own.

``pairing="paired"`` (the default) runs every cell of a seed from that seed, so the cells of
a row share their data and start (differences between cells have less variance);
``pairing="independent"`` runs cell ``index`` of seed ``s`` as ``cell_seed(s, *index)``.
``progress=None`` shows a bar over the chunks in interactive sessions only
(:mod:`simclr_lib.progress`). Save and load results with ``save_sweep`` / ``load_sweep``.
"""
from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ._validate import check_choice, check_device, check_dtype, check_float, check_int, check_seeds
from .analysis import label_complexity
from .chunks import cut, draw_bytes, execute, pretrain_cost, run_bytes, supervised_cost
from .config import DataConfig, PretrainConfig, SupervisedConfig, replace
from .data import cell_seed
from .pipelines import run_finetune, run_pretrain, split_start
from .results import SweepResult, load_sweep, save_sweep
from .training import choose_method

__all__ = ["SweepResult", "supervised_grid", "simclr_grid", "alignment_grid", "label_complexity",
           "n0_for", "run_bytes", "load_sweep", "save_sweep", "Run", "PAIRINGS"]

PAIRINGS = ("paired", "independent")
SUPERVISED = ("train_loss", "test_loss", "test_error")
ALIGNMENT = ("align_mean", "align_min")


def n0_for(snr: float, n0_snr2: float) -> int:
    """The unlabeled sample size with ``n0 * snr^2 = n0_snr2`` (at least 2)."""
    return max(2, math.ceil(n0_snr2 / snr ** 2))


# ---------------------------------------------------------------------------------------------
# The grid API: validation, named runs, and the one helper every sweep ends in.

def _grid(name: str, values: Any, kind: str, low: float = 0.0, low_open: bool = True) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a non-empty sequence, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence")
    if kind == "int":
        return [check_int(name, v, low=max(1, int(low))) for v in values]
    return [check_float(name, float(v) if isinstance(v, np.floating) else v, low=low,
                        low_open=low_open) for v in values]


def _memory(memory_gb: Any) -> float:
    """A budget in GB, ``> 0``; ``math.inf`` is no budget (every block in one chunk)."""
    ok = isinstance(memory_gb, (int, float, np.floating)) and not isinstance(memory_gb, bool)
    if not ok or math.isnan(memory_gb) or memory_gb <= 0 or memory_gb == -math.inf:
        raise ValueError(f"memory_gb must be a number in (0, inf], got {memory_gb!r}")
    return float(memory_gb)


def _common(seeds, memory_gb, device, dtype, executor, pairing) -> tuple:
    """Validate the arguments every sweep shares; ``(seeds, memory_gb, device, dtype)``."""
    if seeds is None:
        raise ValueError("seeds must be a non-empty sequence of integers >= 0, got None")
    seeds = check_seeds(seeds)
    memory_gb = _memory(memory_gb)
    device, dtype = str(check_device(device)), check_dtype(dtype)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ValueError("executor must be None or a concurrent.futures.Executor (with .submit), "
                         f"got {type(executor).__name__}")
    check_choice("pairing", pairing, PAIRINGS)
    return seeds, memory_gb, device, dtype


def _check_type(name: str, value: Any, cls: type) -> None:
    if not isinstance(value, cls):
        raise ValueError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its cell's values by axis name, its seed and its result position."""

    at: dict[str, Any]         # e.g. {"n": 16, "snr": 0.1}
    index: tuple[int, ...]     # the cell's index over the grid axes (without the seed)
    seed: int                  # the seed the run draws from
    pos: int                   # flat position in the result arrays (grid axes, then seed)


def grid_runs(axes: dict[str, list], seeds: list[int], pairing: str) -> list[Run]:
    """Every run of a grid, in C order of ``(*axes, seed)``; with ``pairing="independent"``
    the run of cell ``index`` and seed ``s`` draws from ``cell_seed(s, *index)``."""
    runs = []
    names = list(axes)
    cells = itertools.product(*(range(len(v)) for v in axes.values()))
    for index in cells:
        at = {k: axes[k][i] for k, i in zip(names, index)}
        for s in seeds:
            seed = s if pairing == "paired" else cell_seed(s, *index)
            runs.append(Run(at, index, seed, len(runs)))
    return runs


def _sweep(kind: str, fn, jobs, axes: dict[str, list], seeds: list[int], metrics: Sequence[str],
           metric: str, config: dict, executor, cache_dir, progress) -> SweepResult:
    """Run the jobs and assemble the result arrays, shaped ``(*axes, seed)``."""
    shape = (*(len(v) for v in axes.values()), len(seeds))
    out = {k: np.full(math.prod(shape), np.nan) for k in metrics}
    stats = execute(kind, fn, jobs, out, executor, cache_dir, progress)
    return SweepResult(None, {**axes, "seed": seeds}, metric, config, stats,
                       {k: v.reshape(shape) for k, v in out.items()})


def _split(runs: int, per_run: float, budget: float) -> int:
    """How many runs of ``per_run`` bytes fit ``budget`` (at least 1, at most ``runs``)."""
    return runs if budget == math.inf else max(1, min(runs, int(budget // per_run)))


# ---------------------------------------------------------------------------------------------
# Chunk functions: module level, so process pools and Dask can pickle them.

def _supervised_chunk(seeds, mu_norms, n, data, cfg, device, dtype) -> dict[str, np.ndarray]:
    """``fast.supervised_cells``: (len(mu_norms), len(seeds)) per metric, flattened."""
    from . import fast
    return {k: np.asarray(v).reshape(-1)
            for k, v in fast.supervised_cells(seeds, mu_norms, n, data, cfg, device, dtype).items()}


def supervised_grid(ns: Sequence[int], snrs: Sequence[float] | None = None,
                    seeds: Sequence[int] | None = None, data: DataConfig = DataConfig(),
                    cfg: SupervisedConfig = SupervisedConfig(), executor: Executor | None = None,
                    memory_gb: float = 1.0, device: str = "cpu", dtype: torch.dtype = torch.float32,
                    *, ds: Sequence[int] | None = None, mu_norms: Sequence[float] | None = None,
                    pairing: str = "paired", cache_dir: str | os.PathLike | None = None,
                    progress: bool | None = None) -> SweepResult:
    """Direct supervised training over a grid of n, (d,) and SNR or ||mu|| (Theorem 4.3).

    Give ``snrs`` or ``mu_norms`` (``||mu|| >= 0``; 0 is no signal, error at chance), and
    optionally ``ds`` (patch dimensions; default ``data.d``). The axes are ``n``, ``d`` (only
    with ``ds``), ``snr`` or ``mu_norm``, then ``seed``. Metrics ``train_loss``, ``test_loss``
    and ``test_error`` (the main one) at the last step. Every ``(n, d)`` block of seeds and
    signal strengths is one call of ``fast.supervised_cells``, cut to ``memory_gb``.
    Chapters 1, 3 and 6.
    """
    _check_type("data", data, DataConfig)
    _check_type("cfg", cfg, SupervisedConfig)
    if (snrs is None) == (mu_norms is None):
        raise ValueError("give exactly one of snrs and mu_norms")
    ns = _grid("ns", ns, "int")
    ds = None if ds is None else _grid("ds", ds, "int", low=2)
    if snrs is not None:
        strength, values = "snr", _grid("snrs", snrs, "float", low_open=False)
    else:
        strength, values = "mu_norm", _grid("mu_norms", mu_norms, "float", low_open=False)
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype, executor, pairing)
    axes = {"n": ns, **({} if ds is None else {"d": ds}), strength: values}
    blocks: dict[tuple, list[Run]] = {}
    for run in grid_runs(axes, seeds, pairing):
        key = (run.at["n"], run.at.get("d", data.d))
        blocks.setdefault(key if pairing == "paired" else (*key, run.index[-1]), []).append(run)
    jobs = []
    for (n, d, *_), runs in blocks.items():
        block_data = replace(data, d=d)
        budget = memory_gb * 2 ** 30 - draw_bytes(max(n, cfg.n_test), d, dtype)
        # the block's runs are in (signal strength, seed) order
        by_seed = [r.seed for r in runs[:len(seeds)]]
        mus = [data.sigma_p * math.sqrt(d) * r.at["snr"] if strength == "snr" else r.at["mu_norm"]
               for r in runs[::len(seeds)]]
        pos = {(j, s): runs[j * len(by_seed) + s].pos
               for j in range(len(mus)) for s in range(len(by_seed))}
        b = run_bytes("supervised", block_data, n, cfg=cfg, dtype=dtype)
        k = _split(len(by_seed), len(mus) * b, budget)           # seeds per chunk
        kmu = len(mus) if k > 1 or len(mus) * b <= budget else _split(len(mus), b, budget)
        for a in range(0, len(by_seed), k):
            for c in range(0, len(mus), kmu):
                S, J = range(a, min(a + k, len(by_seed))), range(c, min(c + kmu, len(mus)))
                jobs.append(([pos[j, s] for j in J for s in S],
                             ([by_seed[s] for s in S], [mus[j] for j in J], n, block_data, cfg,
                              device, dtype)))
    config = {"sweep": "supervised", "grid": {**axes, "seed": seeds}, "pairing": pairing,
              "data": _drop(asdict(data), "snr", *(() if ds is None else ("d",))),
              "cfg": _drop(asdict(cfg), "n"), "dtype": str(dtype)}
    return _sweep("supervised", _supervised_chunk, jobs, axes, seeds, SUPERVISED, "test_error",
                  config, executor, cache_dir, progress)


def _drop(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _alignment_chunk(seeds, snrs, n0s, data, pre, device, dtype) -> dict[str, np.ndarray]:
    """``run_pretrain(seeds, data, pre, snrs, n0s)``: the last recorded alignment of each run."""
    hist = run_pretrain(seeds, data, pre, snr=snrs, n0=n0s, device=device, dtype=dtype).history
    return {k: hist.last(k) for k in ALIGNMENT}


def alignment_grid(n0s: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                   data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                   executor: Executor | None = None, memory_gb: float = 1.0,
                   device: str = "cpu", dtype: torch.dtype = torch.float32, *,
                   pairing: str = "paired", cache_dir: str | os.PathLike | None = None,
                   progress: bool | None = None) -> SweepResult:
    """Alignment ``|cos(w_r, mu)|`` after pre-training over an ``(n0, snr)`` grid (Theorem 5.3).

    Metrics ``align_mean`` (the main one) and ``align_min`` over the 2m filters. Runs of
    similar ``n0`` share a batched program (``chunks.cut``). Chapter 4.
    """
    _check_type("data", data, DataConfig)
    _check_type("pre", pre, PretrainConfig)
    n0s, snrs = _grid("n0s", n0s, "int", low=2), _grid("snrs", snrs, "float")
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype, executor, pairing)
    axes = {"n0": n0s, "snr": snrs}
    runs = grid_runs(axes, seeds, pairing)
    nbytes = lambda n0: run_bytes("alignment", data, n0, pre=pre, dtype=dtype)  # noqa: E731
    groups = cut([r.at["n0"] for r in runs], nbytes, memory_gb,
                 lambda n0: pretrain_cost(n0, data.d, pre.m), draw_bytes(max(n0s), data.d, dtype))
    jobs = [([runs[i].pos for i in g], ([runs[i].seed for i in g], [runs[i].at["snr"] for i in g],
                                        [runs[i].at["n0"] for i in g], data, pre, device, dtype))
            for g in groups]
    config = {"sweep": "alignment", "grid": {**axes, "seed": seeds}, "pairing": pairing,
              "data": _drop(asdict(data), "snr"), "pre": _drop(asdict(pre), "n0"),
              "dtype": str(dtype)}
    return _sweep("alignment", _alignment_chunk, jobs, axes, seeds, ALIGNMENT, "align_mean",
                  config, executor, cache_dir, progress)


def _simclr_chunk(units, runs, data, pre, ft, device, dtype) -> dict[str, np.ndarray]:
    """Pre-train each unit ``{"seed", "snr", "n0"}`` once (one program per n0), split it
    (``pipelines.split_start``), then fine-tune run ``{"unit", "n"}`` on its unit's encoder
    (``pipelines.run_finetune``, runs of similar n batched). One value per run and metric."""
    W0 = [None] * len(units)
    for n0 in sorted({u["n0"] for u in units}):
        idx = [i for i, u in enumerate(units) if u["n0"] == n0]
        seeds = [units[i]["seed"] for i in idx]
        res = run_pretrain(seeds, data, pre, snr=[units[i]["snr"] for i in idx], n0=n0,
                           device=device, dtype=dtype)
        for i, w in zip(idx, split_start(res, seeds)):
            W0[i] = w                                                  # (2, m, d)
        del res
    out = {k: np.zeros(len(runs)) for k in SUPERVISED}
    cost = lambda n: supervised_cost(n, data.d, ft.m, choose_method(ft.method, n, data.d))  # noqa: E731
    for g in cut([r["n"] for r in runs], lambda n: 0.0, math.inf, cost):
        us = [units[runs[i]["unit"]] for i in g]
        hist = run_finetune(torch.stack([W0[runs[i]["unit"]] for i in g]), [u["seed"] for u in us],
                            data, ft, snr=[u["snr"] for u in us], n=[runs[i]["n"] for i in g],
                            device=device, dtype=dtype)
        for k in SUPERVISED:
            out[k][g] = hist.last(k)
        del hist
    return out


def simclr_grid(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                ft: SupervisedConfig = SupervisedConfig(), n0_snr2: float | None = 16.0,
                executor: Executor | None = None, memory_gb: float = 1.0,
                device: str = "cpu", dtype: torch.dtype = torch.float32, *,
                pairing: str = "paired", cache_dir: str | os.PathLike | None = None,
                progress: bool | None = None) -> SweepResult:
    """SimCLR pre-training + fine-tuning over an ``(n, snr)`` grid (Theorem 4.2).

    Pre-training uses ``n0 = n0_snr2 / snr^2`` unlabeled samples (``pre.n0`` when ``n0_snr2``
    is None). Paired: each ``(snr, seed)`` is pre-trained once and fine-tuned for every ``n``;
    independent: every cell is pre-trained from its own seed. Metrics ``train_loss``,
    ``test_loss`` and ``test_error`` (the main one) of fine-tuning. Chapters 1 and 6.
    """
    _check_type("data", data, DataConfig)
    _check_type("pre", pre, PretrainConfig)
    _check_type("ft", ft, SupervisedConfig)
    ns, snrs = _grid("ns", ns, "int"), _grid("snrs", snrs, "float")
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype, executor, pairing)
    if n0_snr2 is not None:
        check_float("n0_snr2", n0_snr2, low=0.0, low_open=True)
    if ft.m != pre.m:
        raise ValueError(f"ft.m ({ft.m}) must equal pre.m ({pre.m}): the 2m pre-trained filters "
                         "are split into two halves of m")
    n0 = {s: (pre.n0 if n0_snr2 is None else n0_for(s, n0_snr2)) for s in snrs}
    axes = {"n": ns, "snr": snrs}
    # a pre-training unit: one (seed, snr) shared by the n of a row (paired), or one per run
    units: dict[tuple, list[Run]] = {}
    for run in grid_runs(axes, seeds, pairing):
        units.setdefault((run.seed, run.at["snr"]), []).append(run)
    keys = list(units)
    ft_ns = ns if pairing == "paired" else [max(ns)]
    nbytes = lambda k: run_bytes("simclr", data, k, cfg=ft, pre=pre, ns=ft_ns, dtype=dtype)  # noqa: E731
    # a chunk pre-trains each n0 in a program of its own, so units of different n0 share a chunk
    # (and its fine-tuning programs) at no padding cost: chunks are cut by memory only
    jobs = []
    draw = draw_bytes(max(ft.n_test, *n0.values()), data.d, dtype)
    for g in cut([n0[snr] for _, snr in keys], nbytes, memory_gb, lambda k: 0.0, draw):
        us = [{"seed": keys[i][0], "snr": keys[i][1], "n0": n0[keys[i][1]]} for i in g]
        rs = [(u, run) for u, i in enumerate(g) for run in units[keys[i]]]
        jobs.append(([run.pos for _, run in rs],
                     (us, [{"unit": u, "n": run.at["n"]} for u, run in rs], data, pre, ft,
                      device, dtype)))
    config = {"sweep": "simclr", "grid": {**axes, "seed": seeds}, "pairing": pairing,
              "data": _drop(asdict(data), "snr"),
              "pre": _drop(asdict(pre), *(() if n0_snr2 is None else ("n0",))),
              "ft": _drop(asdict(ft), "n"), "n0_snr2": n0_snr2, "n0": [n0[s] for s in snrs],
              "dtype": str(dtype)}
    return _sweep("simclr", _simclr_chunk, jobs, axes, seeds, SUPERVISED, "test_error",
                  config, executor, cache_dir, progress)
