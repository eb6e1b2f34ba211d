"""The chunk engine of the sweeps: cost model, cutting, running, cache.

A sweep (:mod:`simclr_lib.sweeps`) turns its grid into *jobs*: a chunk function and its
arguments, plus the flat positions of the runs it computes. This module estimates what a run
costs (memory: :func:`run_bytes`; flops per GD step: ``supervised_cost``, ``pretrain_cost``),
cuts runs into chunks that fit a memory budget (:func:`cut`), runs the chunks in this process
or on any ``concurrent.futures.Executor`` (:func:`execute`) and keeps every finished chunk on
disk under a hash of the library's source and of everything that determines the chunk
(:func:`chunk_key`), so an interrupted sweep resumes without recomputing.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Executor, as_completed
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._validate import check_choice, check_float
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .progress import enabled, quiet

# torch is imported only where a tensor is made: planning a sweep and reading its cache do not
# pay for it (python -m simclr_lib on a finished sweep).

__all__ = ["run_bytes", "runs_within", "draw_bytes", "supervised_cost", "pretrain_cost", "cut",
           "chunk_key", "source_hash", "execute", "Job"]

# ---------------------------------------------------------------------------------------------
# Memory: the peak working set of one run, in bytes. Each term names the tensors it counts;
# bench/memory.py measures the peak RSS of real chunks against these numbers.


def _bytes(dtype) -> int:
    return dtype.itemsize                      # torch.float32: 4, torch.float64: 8


def _supervised_floats(n: int, d: int, m: int, n_test: int, method: str) -> float:
    """Floats one supervised run holds at its peak (``n`` is the padded training size)."""
    if method == "coefficient":
        # train and test noise (n + n_test) d; the Gram matrices G, G_test; <w0, xi> and the
        # (2, m, n_test) test pre-activations; W0 and the weights of History.final
        return d * (n + n_test) + n * (n + n_test) + 2 * m * (3 * n + 3 * n_test) + 6 * m * d
    # weight space: Dataset.patches() of the test set peaks at 6 n_test d (noise, signal, the two
    # torch.where and their stack) on top of the train patches and noise (3 n d)
    return 3 * n * d + 7 * n_test * d + 2 * m * 2 * (n + n_test) * 3 + 6 * m * d


def _pretrain_floats(n0: int, d: int, m: int) -> float:
    """Floats one pre-training run holds at its peak: augment() holds five (n0, d) arrays at
    once, pretrain() four (noise, view noise and U = [Z; Z~]) and a few blocks of logits
    (at most ~3 * 2^18 per chunk)."""
    return max(7 * n0 * d, 5 * n0 * d + 3 * min(n0 * n0, 3 * 2 ** 18) + 6 * m * n0) + 4 * 2 * m * d


SLACK = 1.1   # freed blocks the allocator keeps resident: measured peaks are 0-20% above live bytes


def run_bytes(kind: str, data: DataConfig, size: int, cfg: SupervisedConfig | None = None,
              pre: PretrainConfig | None = None, ns: Sequence[int] = (),
              dtype=None) -> float:
    """Peak bytes of one run of a sweep chunk whose runs are padded to ``size``.

    ``kind`` is ``"supervised"`` (``size = n``), ``"alignment"`` (``size = n0``) or
    ``"simclr"`` (``size = n0``; the run is pre-trained once, then fine-tuned on each n in
    ``ns``). ``dtype`` is a torch dtype (default float32). Used by the sweeps to cut chunks
    that fit ``memory_gb``.
    """
    from .training import choose_method
    check_choice("kind", kind, ("supervised", "alignment", "simclr"))
    b, d = SLACK * (4 if dtype is None else _bytes(dtype)), data.d
    if kind == "supervised":
        return b * _supervised_floats(size, d, cfg.m, cfg.n_test, choose_method(cfg.method, size, d))
    pre_f = _pretrain_floats(size, d, pre.m)
    if kind == "alignment":
        return b * pre_f
    n = max(ns)
    ft = len(ns) * _supervised_floats(n, d, cfg.m, cfg.n_test, choose_method(cfg.method, n, d))
    return b * max(pre_f, ft)


def runs_within(memory_gb: float, per_run: float, fixed: float = 0.0) -> int:
    """How many runs of ``per_run`` bytes fit ``memory_gb`` beside ``fixed`` bytes (at least
    one: a single run always goes)."""
    memory_gb = check_float("memory_gb", memory_gb, low=0.0, low_open=True)
    return max(1, int((memory_gb * 2 ** 30 - fixed) // per_run))


def draw_bytes(size: int, d: int, dtype=None) -> float:
    """Bytes a chunk holds besides its runs while it draws one run's samples: two (size, d)
    blocks (``data.views``: a zero-filled block and the Gaussian draw copied in;
    ``make_dataset`` now holds only the draw, so for it this is an overestimate)."""
    return SLACK * 2 * size * d * (4 if dtype is None else _bytes(dtype))


# Compute: the cost of one GD step, in flops per run; a batched program also pays a fixed
# per-step overhead (Python and small-kernel launches, of the order of 3e6 flops).
OVERHEAD = 3e6


def supervised_cost(n: int, d: int, m: int, method: str) -> float:
    """Flops of one supervised GD step of one run."""
    return 4 * m * n * n + 40 * m * n if method == "coefficient" else 16 * m * n * d


def pretrain_cost(n0: int, d: int, m: int) -> float:
    """Flops of one pre-training GD step of one run."""
    return 16 * n0 * d * m + 12 * n0 * n0 * m


def cut(sizes: Sequence[int], nbytes: Callable[[int], float], memory_gb: float,
        cost: Callable[[int], float], fixed: float = 0.0) -> list[list[int]]:
    """Cut runs into chunks, each one batched program with its runs padded to its largest size.

    Sizes are taken in increasing order; the runs of the next size join the current chunk when
    padding the chunk's runs up to it costs less than a program of its own
    (``runs * (cost(new) - cost(old)) <= OVERHEAD``), and while the chunk's working set
    ``fixed + runs * nbytes(size)`` fits ``memory_gb`` (a single run always goes).
    Returns the positions (into ``sizes``) of each chunk's runs.
    """
    budget = memory_gb * 2 ** 30 - fixed
    by_size: dict[int, list[int]] = {}
    for i in sorted(range(len(sizes)), key=lambda i: sizes[i]):
        by_size.setdefault(sizes[i], []).append(i)
    chunks: list[list[int]] = []
    pad = None
    for size, cells in by_size.items():
        cur = chunks[-1] if chunks else None
        if cur is None or len(cur) * (cost(size) - cost(pad)) > OVERHEAD:
            cur = None                                               # padding costs more
        for i in cells:
            if cur is None or (len(cur) + 1) * nbytes(size) > budget:
                cur = []
                chunks.append(cur)
            cur.append(i)
        pad = size
    return chunks


# ---------------------------------------------------------------------------------------------
# The cache: a finished chunk is stored under a hash of the library's source and its arguments.

@lru_cache(maxsize=1)
def source_hash() -> str:
    """A hash of every ``.py`` file of the installed library: editing the library invalidates
    every cached chunk (results may have changed)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _jsonable(x: Any) -> Any:
    if type(x).__module__ == "torch":                # torch.dtype, torch.device
        return str(x)
    if hasattr(x, "__dataclass_fields__"):
        return {"__type__": type(x).__name__, **asdict(x)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def chunk_key(kind: str, args: Sequence) -> str:
    """A hash of everything that determines a chunk's result: the library's source
    (:func:`source_hash`) and the chunk's arguments (runs, configurations, device, dtype)."""
    blob = json.dumps([kind, source_hash(), _jsonable(list(args))], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save(path: Path, metrics: dict[str, np.ndarray]) -> None:
    """Write a finished chunk to a temporary name, then rename it: a killed run never leaves
    half a chunk under the real name (``os.replace`` is atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **metrics)
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# Running chunks: in process or on an executor.

Job = tuple[list[int], tuple]   # (flat positions of the chunk's runs, the chunk function's args)


def execute(kind: str, fn: Callable[..., dict[str, np.ndarray]], jobs: Sequence[Job],
            out: dict[str, np.ndarray], executor: Executor | None = None,
            cache_dir: str | os.PathLike | None = None,
            progress: bool | None = None) -> dict[str, int]:
    """Run ``fn(*args)`` for every job and scatter each metric it returns (one value per run,
    in the order of the job's positions) into the flat arrays ``out[metric][positions]``.

    Cached chunks are loaded, not run; a chunk is written to the cache as soon as it finishes,
    so an interrupted sweep keeps its finished chunks (an exception leaving here carries
    ``chunks_saved`` and ``chunks_total``). ``progress``: see :mod:`simclr_lib.progress`.
    Returns the chunk counts ``{"total", "computed", "cached"}``.
    """
    cache = None if cache_dir is None else Path(cache_dir)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    paths = [None if cache is None else cache / f"{kind}-{chunk_key(kind, args)}.npz"
             for _, args in jobs]

    def scatter(k: int, metrics: dict[str, np.ndarray]) -> None:
        for name, value in metrics.items():
            out[name][jobs[k][0]] = np.asarray(value).reshape(-1)

    todo = []
    for k, path in enumerate(paths):
        if path is not None and path.exists():
            scatter(k, _load(path))
        else:
            todo.append(k)
    counts = {"total": len(jobs), "computed": 0, "cached": len(jobs) - len(todo)}
    bar = None
    if todo and enabled(progress):              # one bar for the chunks (progress.py)
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), initial=counts["cached"], desc=kind, unit="chunk",
                   dynamic_ncols=True)

    def done(k: int, metrics: dict[str, np.ndarray]) -> None:
        metrics = {name: np.asarray(v, dtype=float).reshape(-1) for name, v in metrics.items()}
        scatter(k, metrics)
        if paths[k] is not None:
            _save(paths[k], metrics)
        counts["computed"] += 1
        if bar is not None:
            bar.update(1)

    try:
        if executor is None:
            with quiet():                      # no step bars inside a chunk
                for k in todo:
                    done(k, fn(*jobs[k][1]))
        else:
            futures = {executor.submit(fn, *jobs[k][1]): k for k in todo}
            try:
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
            finally:
                for fut in futures:
                    fut.cancel()
    except BaseException as err:           # tell the caller how much is saved (cli: Ctrl-C)
        err.chunks_saved = counts["cached"] + counts["computed"] if cache is not None else 0
        err.chunks_total = len(jobs)
        raise
    finally:
        if bar is not None:
            bar.close()
    return counts
