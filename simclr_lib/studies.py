"""The grid studies of the supervised and label-complexity chapters, their result files and
the command line that regenerates those files under ``book/data/``::

    python -m simclr_lib.studies supervised --q 3 --ns 2 4 8 --snrs 0.3 0.5 \\
        --seeds 0:8 --out book/data/boundary_q3.npz
    python -m simclr_lib.studies simclr --ns 2 4 8 --snrs 0.05 0.1 \\
        --n0-snr2 16 --seeds 0:8 --out book/data/simclr_nstar.npz

(Files written before the command line moved here record it as ``python -m
simclr_lib.checks.supervised``, which still runs and forwards to this module.)

A study holds ``train_loss``, ``test_loss``, ``test_error`` and ``excess_error`` (test error
minus the test set's own label-flip rate), each ``(d, r, n, snr, seed)``: ``d`` the patch
dimensions, ``r`` the unlabeled budgets ``n0 SNR^2`` (one entry for direct training). Cells
are drawn independently (``sl.cell_seed(seed, i_d, i_r, i_n, i_snr)``) unless
``pairing="paired"``. The checks that read studies are in :mod:`simclr_lib.checks.supervised`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._validate import check_choice, check_float, check_int, check_seeds
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .data import cell_seed, stream
from .models import split_filters
from .pipelines import run_finetune, run_pretrain, run_supervised

__all__ = ["Study", "supervised_study", "simclr_study", "save_study", "load_study", "DATA_DIR",
           "METRICS", "build_parser", "run", "main"]

METRICS = ("train_loss", "test_loss", "test_error", "excess_error")


@dataclass
class Study:
    """Metrics ``(d, r, n, snr, seed)`` of a grid of runs and the configuration behind them."""

    metrics: dict[str, np.ndarray]
    ds: list[int]
    rs: list[float]                       # n0 SNR^2 budgets; [0.0] for direct training
    ns: list[int]
    snrs: np.ndarray                      # (d, snr): the SNRs run at each d
    seeds: list[int]
    config: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics[name]

    def kappa(self, q: float) -> np.ndarray:
        """``n SNR^q`` per cell, ``(d, n, snr)``."""
        return np.asarray(self.ns, float)[None, :, None] * self.snrs[:, None, :] ** q


def _grid(name, values, kind):
    values = list(values)
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence")
    if kind == "int":
        return [check_int(name, v) for v in values]
    return [check_float(name, v, low=0.0, low_open=True) for v in values]


def _snr_table(snrs, ds, snr_d_power):
    """The SNRs at each d: ``snr * (ds[0] / d) ** snr_d_power`` (power 0: the same grid)."""
    return np.array([[s * (ds[0] / d) ** snr_d_power for s in snrs] for d in ds])


def _seed(seed, key, pairing):
    return seed if pairing == "paired" else cell_seed(seed, *key)


class _Part:
    """The runs ``part`` of a history (the metrics :func:`_record` reads)."""

    def __init__(self, hist, part):
        self.test = hist.test.__class__(*(getattr(hist.test, f)[part] for f in
                                          ("y", "y_true", "noise", "mu", "signal_first",
                                           "mask")))
        self._h, self._p = hist, part

    def last(self, name):
        return self._h.last(name)[self._p]


def _record(out, idx, hist):
    flips = (hist.test.y != hist.test.y_true).double().mean(1).numpy()
    for k in ("train_loss", "test_loss", "test_error"):
        out[k][idx] = hist.last(k)
    out["excess_error"][idx] = hist.last("test_error") - flips


def supervised_study(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                     data: DataConfig = DataConfig(), cfg: SupervisedConfig = SupervisedConfig(),
                     ds: Sequence[int] | None = None, snr_d_power: float = 0.0,
                     pairing: str = "independent", chunk: int = 48) -> Study:
    """Direct supervised training over ``(d, n, snr, seed)``, ``chunk`` runs per batch."""
    ns, snrs = _grid("ns", ns, "int"), _grid("snrs", snrs, "float")
    ds = _grid("ds", [data.d] if ds is None else ds, "int")
    seeds = check_seeds(seeds)
    check_choice("pairing", pairing, ("paired", "independent"))
    check_float("snr_d_power", snr_d_power, 0.0, 1.0)
    chunk = check_int("chunk", chunk)
    table = _snr_table(snrs, ds, snr_d_power)
    shape = (len(ds), 1, len(ns), len(snrs), len(seeds))
    out = {k: np.zeros(shape) for k in METRICS}
    for a, d in enumerate(ds):
        dcfg = DataConfig(d=d, sigma_p=data.sigma_p, p=data.p, signal_patch=data.signal_patch)
        cells = [(i, j, s) for i in range(len(ns)) for j in range(len(snrs))
                 for s in range(len(seeds))]
        step = max(1, chunk * 2000 // d)                 # keep a chunk's test sets small
        for c in range(0, len(cells), step):
            part = cells[c:c + step]
            hist = run_supervised([_seed(seeds[s], (a, 0, i, j), pairing) for i, j, s in part],
                                  dcfg, cfg, snr=[float(table[a, j]) for _, j, _ in part],
                                  n=[ns[i] for i, _, _ in part])
            idx = tuple(np.array(v) for v in zip(*[(a, 0, i, j, s) for i, j, s in part]))
            _record(out, idx, hist)
    config = {"kind": "supervised", "data": asdict(data), "cfg": asdict(cfg),
              "pairing": pairing, "snr_d_power": snr_d_power}
    return Study(out, ds, [0.0], ns, table, seeds, config)


def simclr_study(ns: Sequence[int], snrs: Sequence[float], seeds: Sequence[int],
                 rs: Sequence[float] = (16.0,), data: DataConfig = DataConfig(),
                 pre: PretrainConfig = PretrainConfig(),
                 ft: SupervisedConfig = SupervisedConfig(),
                 pairing: str = "independent") -> Study:
    """SimCLR + fine-tuning over ``(r, n, snr, seed)``: each ``(r, snr, seed)`` is pre-trained
    once on ``n0 = max(2, ceil(r / snr^2))`` unlabeled samples, split at random and fine-tuned
    on every ``n``. With ``pairing="independent"`` every ``(r, n, snr)`` cell draws its own
    labels and test set (the encoder is shared by the cell's ``n``)."""
    ns, snrs = _grid("ns", ns, "int"), _grid("snrs", snrs, "float")
    rs = _grid("rs", rs, "float")
    seeds = check_seeds(seeds)
    check_choice("pairing", pairing, ("paired", "independent"))
    if ft.m != pre.m:
        raise ValueError(f"ft.m ({ft.m}) must equal pre.m ({pre.m})")
    shape = (1, len(rs), len(ns), len(snrs), len(seeds))
    out = {k: np.zeros(shape) for k in METRICS}
    for b, r in enumerate(rs):
        for j, snr in enumerate(snrs):
            n0 = max(2, math.ceil(r / snr ** 2))
            pseeds = [_seed(s, (0, b, 0, j), pairing) for s in seeds]
            res = run_pretrain(pseeds, data, pre, snr=snr, n0=n0)
            W0 = split_filters(res.W, [stream(s, "split") for s in pseeds])
            del res
            fseeds = [_seed(s, (0, b, i + 1, j), pairing) for i in range(len(ns))
                      for s in seeds]
            hist = run_finetune(W0.repeat(len(ns), 1, 1, 1), fseeds, data, ft, snr=snr,
                                n=[n for n in ns for _ in seeds])
            for i in range(len(ns)):
                part = slice(i * len(seeds), (i + 1) * len(seeds))
                _record(out, (0, b, i, j, slice(None)), _Part(hist, part))
    config = {"kind": "simclr", "data": asdict(data), "pre": asdict(pre), "ft": asdict(ft),
              "pairing": pairing}
    return Study(out, [data.d], rs, ns, np.array([snrs]), seeds, config)


def save_study(study: Study, path: str | Path, command: str = "") -> None:
    """Write ``study`` to ``path`` (``.npz``) with its grid, configuration and ``command``."""
    meta = {"ds": study.ds, "rs": study.rs, "ns": study.ns, "snrs": study.snrs.tolist(),
            "seeds": study.seeds, "config": study.config, "command": command}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:                              # atomic: never half a file
        np.savez_compressed(fh, meta=np.array(json.dumps(meta)),
                            **{k: v.astype(np.float32) for k, v in study.metrics.items()})
    os.replace(tmp, path)


DATA_DIR = Path(__file__).resolve().parents[1] / "book" / "data"


def load_study(path: str | Path) -> Study:
    """A study written by :func:`save_study` (``command`` in ``config["command"]``); a bare
    file name is looked up in the book's ``book/data/``, whatever the working directory."""
    path = Path(path)
    if not path.exists() and path.parent == Path("."):
        path = DATA_DIR / path
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        metrics = {k: f[k].astype(float) for k in METRICS}
    cfg = dict(meta["config"], command=meta["command"])
    return Study(metrics, meta["ds"], meta["rs"], meta["ns"], np.array(meta["snrs"]),
                 meta["seeds"], cfg)




# ---------------------------------------------------------------------------------------------
# Command line

def _seeds(text: str) -> list[int]:
    a, _, b = text.partition(":")
    return list(range(int(a), int(b))) if b else [int(a)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simclr_lib.studies",
                                description="Studies of the supervised chapters.")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("supervised", "simclr"):
        s = sub.add_parser(kind)
        s.add_argument("--ns", type=int, nargs="+", required=True)
        s.add_argument("--snrs", type=float, nargs="+", required=True)
        s.add_argument("--seeds", type=_seeds, default=list(range(8)))
        s.add_argument("--q", type=float, default=SupervisedConfig.q)
        s.add_argument("--p", type=float, default=0.0, help="label-flip probability")
        s.add_argument("--steps", type=int, default=SupervisedConfig.steps)
        s.add_argument("--n-test", type=int, default=500)
        s.add_argument("--pairing", choices=["paired", "independent"], default="independent")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--out", type=Path, required=True)
        if kind == "supervised":
            s.add_argument("--ds", type=int, nargs="+", default=[DataConfig.d])
            s.add_argument("--snr-d-power", type=float, default=0.0,
                           help="SNR at d: snr * (ds[0] / d) ** power")
        else:
            s.add_argument("--n0-snr2", type=float, nargs="+", default=[16.0])
    return p


def run(argv: Sequence[str]) -> Study:
    a = build_parser().parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = SupervisedConfig(q=a.q, steps=a.steps, n_test=a.n_test, record_every=a.steps,
                           method="coefficient")
    data = DataConfig(p=a.p)
    if a.kind == "supervised":
        return supervised_study(a.ns, a.snrs, a.seeds, data, cfg, a.ds, a.snr_d_power,
                                a.pairing)
    return simclr_study(a.ns, a.snrs, a.seeds, a.n0_snr2, data, PretrainConfig(), cfg,
                        a.pairing)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simclr_lib.studies``: run a study and save it (``--out``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(build_parser().parse_args(argv).out)
    try:                                                     # checked before the compute
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"--out: cannot write to {str(out.parent)!r} ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise SystemExit(f"--out: cannot write to {str(out.parent)!r}")
    study = run(argv)
    study.config["argv"] = argv
    save_study(study, out, "python -m simclr_lib.studies " + " ".join(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())