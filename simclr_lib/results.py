"""Sweep results: :class:`SweepResult` and its files (``.npz`` or ``.json``).

:func:`save_sweep` writes a result with its configuration (atomically: temporary name, then
rename); :func:`load_sweep` reads either format back into the same object the Python API returns.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SweepResult", "save_sweep", "load_sweep"]


@dataclass
class SweepResult:
    """One sweep: ``metrics[name][i0, i1, ..., s]`` is metric ``name`` at ``axes`` values
    ``axes[0][i0]``, ``axes[1][i1]``, ... and seed ``s`` (the seed axis is last).

    ``values`` is ``metrics[metric]``, the sweep's main metric; ``config`` the configuration
    that produced it (grid, configs, pairing, dtype, seconds); ``chunks`` the chunk counts
    ``{"total", "computed", "cached"}`` of the call that returned it.
    """

    values: np.ndarray | None
    axes: dict[str, list]
    metric: str
    config: dict[str, Any] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics:
            if self.values is None:
                raise ValueError("SweepResult needs values or metrics")
            self.metrics = {self.metric: np.asarray(self.values)}
        if self.metric not in self.metrics:
            raise ValueError(f"metric must be one of {tuple(self.metrics)}, got {self.metric!r}")
        self.values = self.metrics[self.metric]

    def mean(self, metric: str | None = None) -> np.ndarray:
        """The mean over seeds of ``metric`` (default: the main one), shaped like the grid."""
        if metric is None:
            metric = self.metric
        if metric not in self.metrics:
            raise ValueError(f"metric must be one of {tuple(self.metrics)}, got {metric!r}")
        return self.metrics[metric].mean(-1)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_sweep(res: SweepResult, path: str | os.PathLike, config: dict | None = None) -> None:
    """Write ``res`` to ``path`` (``.npz``: arrays + JSON configuration; ``.json``: lists),
    with ``config`` (default ``res.config``). The file appears whole or not at all."""
    path = Path(path)
    if path.suffix not in (".npz", ".json"):
        raise ValueError(f"path must end in .npz or .json, got {str(path)!r}")
    config = res.config if config is None else config
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    head = {"metric": res.metric, "axes": res.axes, "config": config, "chunks": res.chunks}
    try:
        if path.suffix == ".npz":   # plain arrays for np.load, and the head as JSON strings
            arrays = {f"metric_{k}": v for k, v in res.metrics.items()}
            arrays.update({f"axis_{k}": np.asarray(v) for k, v in res.axes.items()})
            arrays.update(values=res.values, mean=res.mean(), metric=np.array(res.metric),
                          **{k: np.array(json.dumps(head[k])) for k in ("axes", "config", "chunks")})
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            doc = {**head, "values": res.values.tolist(), "mean": res.mean().tolist(),
                   "metrics": {k: v.tolist() for k, v in res.metrics.items()}}
            with open(tmp, "w") as fh:
                json.dump(doc, fh, indent=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_sweep(path: str | os.PathLike) -> SweepResult:
    """A sweep saved by :func:`save_sweep` or the command line (``.npz`` or ``.json``), as the
    :class:`SweepResult` the Python API returns, with its configuration."""
    path = Path(path)
    if path.suffix not in (".npz", ".json"):
        raise ValueError(f"path must end in .npz or .json, got {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    if path.suffix == ".npz":
        with np.load(path) as z:
            head = {k: json.loads(str(z[k])) for k in ("axes", "config", "chunks")}
            head["metric"] = str(z["metric"])
            metrics = {k[len("metric_"):]: z[k] for k in z.files if k.startswith("metric_")}
    else:
        head = json.loads(path.read_text())
        metrics = {k: np.asarray(v, dtype=float) for k, v in head["metrics"].items()}
    return SweepResult(None, head["axes"], head["metric"], head["config"], head["chunks"], metrics)
