"""Sweeps over the paper's grids, run as a few batched tensor programs (chapters 3, 4, 6).

Each sweep flattens its grid x seeds into runs, sorts them by sample size and cuts them into
chunks that fit a memory budget (``memory_gb``, estimated per run by :func:`run_bytes`, checked
against measured peak RSS in ``bench/memory.py``); every chunk is one batched program.
Chunks are independent: pass any ``concurrent.futures.Executor`` (a process pool,
``dask.distributed.Client.get_executor()``) to spread them; the default runs them in this
process. With ``cache_dir`` every finished chunk is stored under a hash of everything that
determines it, so an interrupted sweep resumes without recomputing (``python -m simclr_lib``).
Results are plain numpy arrays together with the configuration that produced them.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from concurrent.futures import Executor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ._validate import check_choice, check_dtype, check_float, check_int, check_seeds
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .data import Dataset, make_dataset, stream
from .models import init_cnn, split_filters
from .pipelines import run_pretrain
from .training import choose_method, fit, make_stepper

__all__ = ["SweepResult", "supervised_grid", "simclr_grid", "alignment_grid", "label_complexity",
           "n0_for", "run_bytes"]


@dataclass
class SweepResult:
    """``values[i, j, s]``: the metric at ``axes[0][i]``, ``axes[1][j]`` and seed ``s``."""

    values: np.ndarray
    axes: dict[str, list]
    metric: str
    config: dict[str, Any] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)   # {"total", "computed", "cached"}

    def mean(self) -> np.ndarray:
        """The mean over seeds, (len(axis 0), len(axis 1))."""
        return self.values.mean(-1)


def n0_for(snr: float, n0_snr2: float) -> int:
    """The unlabeled sample size with ``n0 * snr^2 = n0_snr2`` (at least 2)."""
    return max(2, math.ceil(n0_snr2 / snr ** 2))


def _check_grid(name: str, values: Sequence, kind: str) -> list:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a non-empty sequence, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence")
    if kind == "int":
        return [check_int(name, v) for v in values]
    return [check_float(name, v, low=0.0, low_open=True) for v in values]


# ---------------------------------------------------------------------------------------------
# Memory: the peak working set of one run, in bytes. Each term names the tensors it counts;
# bench/memory.py measures the peak RSS of real chunks against these numbers.

def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _supervised_floats(n: int, d: int, m: int, n_test: int, method: str) -> float:
    """Floats one supervised run holds at its peak (``n`` is the padded training size)."""
    # (a chunk also holds one shared test draw per seed: the ``fixed`` term of _cut)
    if method == "coefficient":
        # train and test noise (n + n_test) d; the Gram matrices G, G_test; <w0, xi> and the
        # (2, m, n_test) test pre-activations; W0 and the weights of History.final
        return d * (n + n_test) + n * (n + n_test) + 2 * m * (3 * n + 3 * n_test) + 6 * m * d
    # weight space: Dataset.patches() of the test set peaks at 6 n_test d (noise, signal, the two
    # torch.where and their stack; measured 6.6) on top of the train patches and noise (3 n d)
    return 3 * n * d + 7 * n_test * d + 2 * m * 2 * (n + n_test) * 3 + 6 * m * d


def _pretrain_floats(n0: int, d: int, m: int) -> float:
    """Floats one pre-training run holds at its peak: augment() holds five (n0, d) arrays at
    once (measured: 5.4 to 6.6 with the allocator's free blocks), pretrain() four (noise, view
    noise and U = [Z; Z~]) and a few blocks of logits (at most ~3 * 2^18 per chunk)."""
    return max(7 * n0 * d, 5 * n0 * d + 3 * min(n0 * n0, 3 * 2 ** 18) + 6 * m * n0) + 4 * 2 * m * d


_SLACK = 1.1   # freed blocks the allocator keeps resident: measured peaks are 0-20% above live bytes


def run_bytes(kind: str, data: DataConfig, size: int, cfg: SupervisedConfig | None = None,
              pre: PretrainConfig | None = None, ns: Sequence[int] = (),
              dtype: torch.dtype = torch.float32) -> float:
    """Peak bytes of one run of a sweep chunk whose runs are padded to ``size``.

    ``kind`` is ``"supervised"`` (``size = n``), ``"alignment"`` (``size = n0``) or
    ``"simclr"`` (``size = n0``; the run is pre-trained once, then fine-tuned on each n in
    ``ns``, batched). Used by the sweeps to cut chunks that fit ``memory_gb``; a supervised
    chunk also holds one test draw per seed (``n_test * d`` numbers each).
    """
    check_choice("kind", kind, ("supervised", "alignment", "simclr"))
    b, d = _SLACK * _bytes(dtype), data.d
    if kind == "supervised":
        return b * _supervised_floats(size, d, cfg.m, cfg.n_test, choose_method(cfg.method, size, d))
    pre_f = _pretrain_floats(size, d, pre.m)
    if kind == "alignment":
        return b * pre_f
    n = max(ns)
    ft = len(ns) * _supervised_floats(n, d, cfg.m, cfg.n_test, choose_method(cfg.method, n, d))
    return b * max(pre_f, ft + cfg.n_test * d)          # + the seed's shared test draw


# Compute: the cost of one GD step, in flops per run; a batched program also pays a fixed
# per-step overhead (~0.3 ms of Python and small-kernel launches, ~3e6 flops at ~10 GFLOP/s).
_OVERHEAD = 3e6


def _supervised_cost(n: int, d: int, m: int, method: str) -> float:
    return 4 * m * n * n + 40 * m * n if method == "coefficient" else 16 * m * n * d


def _pretrain_cost(n0: int, d: int, m: int) -> float:
    return 16 * n0 * d * m + 12 * n0 * n0 * m


def _supervised_fixed(data: DataConfig, cfg: SupervisedConfig, seeds: int, dtype) -> float:
    """Bytes a supervised chunk holds besides its runs: one shared test draw per seed, and the
    float64 noise of the one test set being drawn (make_dataset draws in float64, 16 n_test d B)."""
    return _SLACK * cfg.n_test * data.d * (seeds * _bytes(dtype) + 16)


def _cut(sizes: Sequence[int], nbytes: Callable[[int], float], memory_gb: float,
         cost: Callable[[int], float], fixed: float = 0.0) -> list[list[int]]:
    """Cut cells into chunks, each one batched program with its runs padded to its largest size.

    Sizes are taken in increasing order; the cells of the next size join the current chunk when
    padding the chunk's runs up to it costs less than a program of its own
    (``runs * (cost(new) - cost(old)) <= _OVERHEAD``), and while the chunk's working set
    ``fixed + runs * nbytes(size)`` fits ``memory_gb`` (a single run always goes).
    """
    budget = memory_gb * 2 ** 30 - fixed
    by_size: dict[int, list[int]] = {}
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i]):
        by_size.setdefault(sizes[i], []).append(i)
    chunks: list[list[int]] = []
    pad = None
    for size, cells in by_size.items():
        cur = chunks[-1] if chunks else None
        if cur is None or len(cur) * (cost(size) - cost(pad)) > _OVERHEAD:
            cur = None                                               # padding costs more
        for i in cells:
            if cur is None or (len(cur) + 1) * nbytes(size) > budget:
                cur = []
                chunks.append(cur)
            cur.append(i)
        pad = size
    return chunks


# ---------------------------------------------------------------------------------------------
# Running chunks: in process or on an executor, with an optional on-disk cache of finished chunks.

def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.dtype):
        return str(x)
    if isinstance(x, torch.device):
        return str(x)
    if hasattr(x, "__dataclass_fields__"):
        return {"__type__": type(x).__name__, **asdict(x)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x


def chunk_key(kind: str, args: tuple) -> str:
    """A hash of everything that determines a chunk's result (its runs, configs, device, dtype)."""
    from . import __version__
    blob = json.dumps([kind, __version__, _jsonable(list(args))], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save(path: Path, value: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, value)
    os.replace(tmp, path)                      # atomic: a killed run never leaves half a chunk


def _execute(kind: str, fn: Callable, jobs: list[tuple[list[int], tuple]], out: np.ndarray,
             executor: Executor | None, cache_dir: str | os.PathLike | None,
             progress: bool) -> dict[str, int]:
    """Run ``fn(*args)`` for every ``(cells, args)`` job and scatter its result (..., len(cells))
    into ``out[..., cells]``. Cached chunks are loaded, not run. Returns chunk counts."""
    from tqdm.auto import tqdm
    cache = None if cache_dir is None else Path(cache_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    paths = [None if cache is None else cache / f"{kind}-{chunk_key(kind, args)}.npy"
             for _, args in jobs]
    todo = []
    for k, ((cells, _), path) in enumerate(zip(jobs, paths)):
        if path is not None and path.exists():
            out[..., cells] = np.load(path)
        else:
            todo.append(k)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=kind, unit="chunk",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)

    def done(k: int, value: np.ndarray) -> None:
        value = np.asarray(value)
        out[..., jobs[k][0]] = value
        if paths[k] is not None:
            _save(paths[k], value)
        bar.update(1)

    try:
        if executor is None:
            for k in todo:
                done(k, fn(*jobs[k][1]))
        else:
            futures = {executor.submit(fn, *jobs[k][1]): k for k in todo}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    finally:
        bar.close()
    return {"total": len(jobs), "computed": len(todo), "cached": len(jobs) - len(todo)}


def _common(seeds, memory_gb, device, dtype) -> tuple[list[int], float, str, torch.dtype]:
    seeds = check_seeds(seeds)
    memory_gb = check_float("memory_gb", memory_gb, low=0.0, low_open=True)
    return seeds, memory_gb, str(device), check_dtype(dtype)


# ---------------------------------------------------------------------------------------------
# The three sweeps. A chunk function is module level (picklable for process pools and Dask).

def _test_sets(base: Dataset, uniq: list[int], data: DataConfig, seeds: list[int],
               snrs: list[float]) -> Dataset:
    """The test sets ``make_dataset(data, n_test, seeds, "test", snrs)`` from ``base``, the test
    sets of the seeds ``uniq`` drawn once.

    A run's test set depends on its SNR only through ``mu`` (labels, patch positions and noise
    come from the seed's "test" stream), so the runs of one seed share one draw.
    """
    dev, dtype = base.mu.device, base.mu.dtype
    mu = torch.zeros(len(seeds), data.d, dtype=dtype, device=dev)
    mu[:, 0] = torch.tensor([data.mu_norm(s) for s in snrs], dtype=dtype, device=dev)
    if seeds == uniq:                                                  # no copy needed
        return replace(base, mu=mu)
    idx = torch.tensor([uniq.index(s) for s in seeds], device=dev)
    return Dataset(base.y[idx], base.y_true[idx], base.noise[idx], mu, base.signal_first[idx],
                   base.mask[idx])


def _finetune(W0: torch.Tensor, seeds: list[int], snrs: list[float], ns: list[int],
              data: DataConfig, cfg: SupervisedConfig, device, dtype) -> np.ndarray:
    """Final test error of each run: ``run_finetune(W0, seeds, data, cfg, snrs, ns)``, with
    runs of similar n batched together and each seed's test set drawn once."""
    out = np.zeros(len(seeds))
    d, lr = data.d, cfg.step_size(data)
    uniq = sorted(set(seeds))
    base = make_dataset(data, cfg.n_test, uniq, "test", 1.0, device, dtype)
    cost = lambda n: _supervised_cost(n, d, cfg.m, choose_method(cfg.method, n, d))  # noqa: E731
    for g in _cut(ns, lambda n: 0.0, math.inf, cost):
        train = make_dataset(data, [ns[i] for i in g], [seeds[i] for i in g], "train",
                             [snrs[i] for i in g], device, dtype)
        test = _test_sets(base, uniq, data, [seeds[i] for i in g], [snrs[i] for i in g])
        stepper = make_stepper(cfg.method, W0[g].to(device=device, dtype=dtype), train, test, cfg.q, lr)
        out[g] = fit(stepper, test.y, train.weights(), cfg.steps, cfg.record_every).last("test_error")
        del train, test, stepper
    return out


def _supervised_chunk(seeds, snrs, ns, data, cfg, device, dtype) -> np.ndarray:
    """``run_supervised(seeds, data, cfg, snrs, ns).last("test_error")`` (tests/test_sweeps.py)."""
    W0 = init_cnn([stream(s, "init") for s in seeds], cfg.m, data.d, cfg.init_std(data), dtype, device)
    return _finetune(W0, seeds, snrs, ns, data, cfg, device, dtype)


def supervised_grid(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                    data: DataConfig = DataConfig(), cfg: SupervisedConfig = SupervisedConfig(),
                    executor: Executor | None = None, memory_gb: float = 1.0,
                    device: str = "cpu", dtype: torch.dtype = torch.float32, *,
                    cache_dir: str | os.PathLike | None = None,
                    progress: bool = False) -> SweepResult:
    """Test error of direct supervised training over an ``(n, snr)`` grid (Theorem 4.3).

    The cells go into a few batched programs: runs of similar n share one (padded to its
    largest n) while padding is cheaper than another program, within ``memory_gb``; runs of one
    seed share one test-set draw. Returns ``values[i_n, i_snr, i_seed]``. Used in chapters 3 and 6.
    """
    ns, snrs = _check_grid("ns", ns, "int"), _check_grid("snrs", snrs, "float")
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype)
    cells = [(n, s, seed) for n in ns for s in snrs for seed in seeds]
    nbytes = lambda n: run_bytes("supervised", data, n, cfg=cfg, dtype=dtype)  # noqa: E731
    cost = lambda n: _supervised_cost(n, data.d, cfg.m, choose_method(cfg.method, n, data.d))  # noqa: E731
    groups = _cut([c[0] for c in cells], nbytes, memory_gb, cost,
                  _supervised_fixed(data, cfg, len(seeds), dtype))
    jobs = [(g, ([cells[i][2] for i in g], [cells[i][1] for i in g], [cells[i][0] for i in g],
                 data, cfg, device, dtype)) for g in groups]
    out = np.zeros(len(cells))
    stats = _execute("supervised", _supervised_chunk, jobs, out, executor, cache_dir, progress)
    return SweepResult(out.reshape(len(ns), len(snrs), len(seeds)),
                       {"n": ns, "snr": snrs, "seed": seeds}, "test_error",
                       {"data": asdict(data), "cfg": asdict(cfg), "dtype": str(dtype)}, stats)


def _alignment_chunk(seeds, snrs, n0s, data, pre, device, dtype) -> np.ndarray:
    res = run_pretrain(seeds, data, pre, snr=snrs, n0=n0s, device=device, dtype=dtype)
    return res.history.last("align_mean")


def alignment_grid(n0s: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                   data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                   executor: Executor | None = None, memory_gb: float = 1.0,
                   device: str = "cpu", dtype: torch.dtype = torch.float32, *,
                   cache_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> SweepResult:
    """Mean ``|cos(w_r, mu)|`` after pre-training over an ``(n0, snr)`` grid (Theorem 5.3).

    Runs with similar ``n0`` share a batched program (see ``_cut``). Returns
    ``values[i_n0, i_snr, i_seed]``. Used in chapter 4.
    """
    n0s, snrs = _check_grid("n0s", n0s, "int"), _check_grid("snrs", snrs, "float")
    for n0 in n0s:
        check_int("n0", n0, low=2)
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype)
    cells = [(n0, s, seed) for n0 in n0s for s in snrs for seed in seeds]
    nbytes = lambda n0: run_bytes("alignment", data, n0, pre=pre, dtype=dtype)  # noqa: E731
    draw = _SLACK * 16 * data.d * max(n0s)              # make_dataset's float64 draw of one run
    groups = _cut([c[0] for c in cells], nbytes, memory_gb, lambda n0: _pretrain_cost(n0, data.d, pre.m),
                  draw)
    jobs = [(g, ([cells[i][2] for i in g], [cells[i][1] for i in g], [cells[i][0] for i in g],
                 data, pre, device, dtype)) for g in groups]
    out = np.zeros(len(cells))
    stats = _execute("alignment", _alignment_chunk, jobs, out, executor, cache_dir, progress)
    return SweepResult(out.reshape(len(n0s), len(snrs), len(seeds)),
                       {"n0": n0s, "snr": snrs, "seed": seeds}, "align_mean",
                       {"data": asdict(data), "pre": asdict(pre), "dtype": str(dtype)}, stats)


def _simclr_chunk(seeds, snrs, n0s, ns, data, pre, ft, device, dtype) -> np.ndarray:
    """Pre-train once per (snr, seed), then fine-tune that encoder on every n in ``ns``: (len(ns), runs).

    Pre-training is one program per distinct n0 (never padded); fine-tuning batches all the
    chunk's encoders together, grouped by n."""
    W0 = [None] * len(seeds)
    for n0 in sorted(set(n0s)):
        idx = [i for i, k in enumerate(n0s) if k == n0]
        res = run_pretrain([seeds[i] for i in idx], data, pre, snr=[snrs[i] for i in idx], n0=n0,
                           device=device, dtype=dtype)
        for i, w in zip(idx, split_filters(res.W, [stream(seeds[i], "split") for i in idx])):
            W0[i] = w                                                  # (2, m, d)
        del res
    W0 = torch.stack(W0)                                               # (R, 2, m, d)
    k = len(ns)
    err = _finetune(W0.repeat(k, 1, 1, 1), seeds * k, snrs * k, [n for n in ns for _ in seeds],
                    data, ft, device, dtype)
    return err.reshape(k, len(seeds))


def simclr_grid(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                data: DataConfig = DataConfig(), pre: PretrainConfig = PretrainConfig(),
                ft: SupervisedConfig = SupervisedConfig(), n0_snr2: float | None = 16.0,
                executor: Executor | None = None, memory_gb: float = 1.0,
                device: str = "cpu", dtype: torch.dtype = torch.float32, *,
                cache_dir: str | os.PathLike | None = None,
                progress: bool = False) -> SweepResult:
    """Test error of SimCLR + fine-tuning over an ``(n, snr)`` grid (Theorem 4.2).

    Each ``(snr, seed)`` is pre-trained once on ``n0 = n0_snr2 / snr^2`` unlabeled samples
    (``pre.n0`` when ``n0_snr2`` is None) and fine-tuned for every ``n``. A chunk pre-trains
    each of its n0 in one program and fine-tunes all its encoders together (runs of similar n
    batched, one test-set draw per seed), within ``memory_gb``.
    Returns ``values[i_n, i_snr, i_seed]``. Used in chapters 1 and 6.
    """
    ns, snrs = _check_grid("ns", ns, "int"), _check_grid("snrs", snrs, "float")
    seeds, memory_gb, device, dtype = _common(seeds, memory_gb, device, dtype)
    if n0_snr2 is not None:
        check_float("n0_snr2", n0_snr2, low=0.0, low_open=True)
    if ft.m != pre.m:
        raise ValueError(f"ft.m ({ft.m}) must equal pre.m ({pre.m}): the 2m pre-trained filters "
                         "are split into two halves of m")
    n0 = {s: (pre.n0 if n0_snr2 is None else n0_for(s, n0_snr2)) for s in snrs}
    cells = [(s, seed) for s in snrs for seed in seeds]
    nbytes = lambda k: run_bytes("simclr", data, k, cfg=ft, pre=pre, ns=ns, dtype=dtype)  # noqa: E731
    draw = _SLACK * 16 * data.d * max(ft.n_test, *n0.values())   # one run's float64 draw
    # a chunk pre-trains each n0 in a program of its own, so cells of different n0 share a chunk
    # (and its fine-tuning programs) at no padding cost: chunks are cut by memory only
    groups = _cut([n0[c[0]] for c in cells], nbytes, memory_gb, lambda k: 0.0, draw)
    jobs = [(g, ([cells[i][1] for i in g], [cells[i][0] for i in g], [n0[cells[i][0]] for i in g],
                 ns, data, pre, ft, device, dtype)) for g in groups]
    out = np.zeros((len(ns), len(cells)))
    stats = _execute("simclr", _simclr_chunk, jobs, out, executor, cache_dir, progress)
    return SweepResult(out.reshape(len(ns), len(snrs), len(seeds)),
                       {"n": ns, "snr": snrs, "seed": seeds}, "test_error",
                       {"data": asdict(data), "pre": asdict(pre), "ft": asdict(ft),
                        "n0": [n0[s] for s in snrs], "dtype": str(dtype)}, stats)


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
