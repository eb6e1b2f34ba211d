"""The finite-d study (chapter ``finite_d``): every deviation the book attributes to a finite
dimension, measured at several ``d`` with everything else fixed, and a verdict on its trend.

* :func:`study` runs, for each ``d`` and seed, the fine-tuning chapter's pipeline (SNR 0.1,
  ``n0 SNR^2 = 16``, pre-training stopped at the end of the power-method phase, the random
  split, GD fine-tuning on ``n`` labels) and Lemma 5.2's spectrum at ``n0 SNR^2 = 4``; it
  records, per run, whether Theorem 4.2's bound is met, the largest noise coefficient
  ``rho_bar``, the signal coefficient, the fraction of filters whose sign flips, and the
  eigenvalue bias.
* :func:`trend` fits the slope of a per-seed quantity against ``log2 d`` with a bootstrap
  interval over seeds; :func:`shrinks` is the verdict "it shrinks as d grows".

The full study is too slow for the book's budget, so it runs from the command line
(``python -m simclr_lib.checks.finite_d --out book/data/finite_d.json``) and the chapter loads
the file; ``tests/test_checks_finite_d.py`` re-runs a reduced version and checks the file's
configuration.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import analysis
from ..config import DataConfig, PretrainConfig, SupervisedConfig
from ..diagnostics import spectrum
from ..models import split_filters
from ..pipelines import run_finetune, run_pretrain
from ..data import stream
from ..report import Verdict, verdict
from .._validate import check_int, check_seeds
from .finetuning import bound_met

__all__ = ["study", "trend", "shrinks", "load", "main", "DS", "QUANTITIES"]

DS = (1000, 2000, 4000, 8000, 16000)     # the dimensions of the study
# name -> what it measures (per run), as the chapter prints it
QUANTITIES = {
    "t42_fail": "Theorem 4.2's bound missed at n = 16",
    "rho_bar": "largest noise coefficient rho_bar after fine-tuning (n = 16)",
    "flip": "fraction of the 2m filters whose sign of <w, mu> flips (n0 SNR^2 = 16)",
    "flip4": "fraction of the 2m filters whose sign flips (n0 SNR^2 = 4)",
    "bias": "lambda_1 / (2 eta ||mu||^2 / tau) - 1 at n0 SNR^2 = 4",
}


def _flip(W0: torch.Tensor, W: torch.Tensor, mu: torch.Tensor) -> np.ndarray:
    """Per run: the fraction of filters with sign <w, mu> != sign <w0, mu>."""
    a = torch.einsum("rkd,rd->rk", W0, mu)
    b = torch.einsum("rkd,rd->rk", W, mu)
    return ((a * b) < 0).double().mean(1).numpy()


def study(ds: Sequence[int] = DS, seeds: Sequence[int] = range(8), snr: float = 0.1,
          n0_snr2: float = 16.0, ns: Sequence[int] = (8, 16, 32), eps: float = 0.01,
          spec_snr: float = 0.25, spec_n0_snr2: float = 4.0,
          pre: PretrainConfig = PretrainConfig(), ft: SupervisedConfig = SupervisedConfig(
              record_every=10), progress: bool = False) -> dict:
    """Run the study; returns ``{"config": ..., "values": {name: [[per seed] per d]}}``.

    Runs one seed at a time (memory stays ~O(n0 d)); ``pre.n0`` is replaced by
    ``n0_snr2 / snr^2``.
    """
    ds = [check_int("d", d, low=2) for d in ds]
    seeds = check_seeds(list(seeds))
    ns = [check_int("n", n) for n in ns]
    n0 = round(n0_snr2 / snr ** 2)
    spec_n0 = round(spec_n0_snr2 / spec_snr ** 2)
    check_int("n0", n0, low=2)
    check_int("spec_n0", spec_n0, low=2)
    pre = PretrainConfig(**{**asdict(pre), "n0": n0})
    vals: dict[str, list] = {k: [] for k in ("met", "rho_bar", "gamma", "align", "flip",
                                              "flip4", "bias", "bias_refined", "stop")}
    for d in ds:
        data = DataConfig(d=d, snr=snr)
        row = {k: [] for k in vals}
        for s in seeds:
            t0 = time.time()
            res = run_pretrain([s], data, pre)
            W_split = split_filters(res.W, [stream(s, "split")])
            h = run_finetune(W_split.repeat(len(ns), 1, 1, 1), [s] * len(ns), data, ft, n=ns)
            row["met"].append(bound_met(h, eps).tolist())                    # (len(ns),)
            row["rho_bar"].append(h.last("rho_bar_max").tolist())
            row["gamma"].append(h.last("gamma_max").tolist())
            row["align"].append(float(res.history.last("align_mean")[0]))
            row["flip"].append(float(_flip(res.W0, res.W, res.data.mu)[0]))
            row["stop"].append(int(res.stop_step[0]))
            # Lemma 5.2 and the sign flips at n0 SNR^2 = 4 (float64, as in the pre-training chapter)
            sp = run_pretrain([s], data, PretrainConfig(**{**asdict(pre), "n0": spec_n0}),
                              snr=spec_snr, dtype=torch.float64)
            lr = float(sp.lr[0])
            lam = 2 * lr * float(sp.data.mu[0].norm()) ** 2 / pre.tau
            ev, _ = spectrum(sp.data, sp.view, pre.tau, lr, run=0, k=1)
            row["bias"].append(float(ev[0]) / lam - 1)
            row["bias_refined"].append(float(ev[0]) / (lam * (1 + 1 / (2 * spec_n0_snr2))) - 1)
            row["flip4"].append(float(_flip(sp.W0, sp.W, sp.data.mu)[0]))
            if progress:
                print(f"d = {d}, seed {s}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
        for k in vals:
            vals[k].append(row[k])
    config = {"ds": ds, "seeds": seeds, "snr": snr, "n0": n0, "n0_snr2": n0_snr2, "ns": ns,
              "eps": eps, "spec_snr": spec_snr, "spec_n0": spec_n0,
              "spec_n0_snr2": spec_n0_snr2, "pre": asdict(pre), "ft": asdict(ft)}
    return {"config": config, "values": vals}


def arrays(result: dict, n: int = 16) -> dict[str, np.ndarray]:
    """The study's per-run quantities as (len(ds), seeds) arrays (:data:`QUANTITIES`), at
    ``n`` labels for the fine-tuning ones."""
    v, cfg = result["values"], result["config"]
    i = cfg["ns"].index(n)
    met = np.asarray(v["met"], bool)[..., i]
    return {"t42_fail": (~met).astype(float), "rho_bar": np.asarray(v["rho_bar"])[..., i],
            "gamma": np.asarray(v["gamma"])[..., i], "flip": np.asarray(v["flip"]),
            "flip4": np.asarray(v["flip4"]), "bias": np.asarray(v["bias"]),
            "bias_refined": np.asarray(v["bias_refined"]), "align": np.asarray(v["align"])}


def trend(ds: Sequence[float], Y: np.ndarray, boot: int = 2000,
          rng: np.random.Generator | None = None) -> analysis.Interval:
    """Slope of the seed mean of ``Y`` (len(ds), seeds) against ``log2 d`` (change per
    doubling of d), with a 95% percentile bootstrap interval over seeds."""
    x = np.log2(np.asarray(ds, float))
    Y = np.asarray(Y, float)
    if Y.ndim != 2 or Y.shape[0] != x.size:
        raise ValueError(f"Y must be (len(ds)={x.size}, seeds), got shape {Y.shape}")
    if x.size < 2:
        raise ValueError("a trend needs at least two dimensions d")
    rng = np.random.default_rng(0) if rng is None else rng
    point = float(np.polyfit(x, Y.mean(1), 1)[0])
    S = Y.shape[1]
    reps = [np.polyfit(x, Y[:, rng.integers(0, S, S)].mean(1), 1)[0] for _ in range(boot)]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return analysis.Interval(point, float(lo), float(hi))


def shrinks(result: str, name: str, ds: Sequence[float], Y: np.ndarray,
            glue_as: str | None = None) -> Verdict:
    """Verdict: quantity ``name`` shrinks as d grows, i.e. the 95% interval of its slope per
    doubling of d lies below 0. Prints the seed means at the smallest and largest d."""
    Y = np.asarray(Y, float)
    ci = trend(ds, Y)
    first, last = Y[0].mean(), Y[-1].mean()
    return verdict(result, f"{QUANTITIES.get(name, name)} shrinks as d grows "
                           f"(slope per doubling of d < 0, 95% interval)",
                   f"{first:.3g} at d = {ds[0]}, {last:.3g} at d = {ds[-1]} "
                   f"({Y.shape[1]} seeds); slope {ci}",
                   ci.hi < 0, glue_as, first=float(first), last=float(last), slope=ci.value,
                   lo=ci.lo, hi=ci.hi)


DATA_FILE = Path(__file__).resolve().parents[2] / "book" / "data" / "finite_d.json"


def load(path: str | Path = DATA_FILE) -> dict:
    """A study written by ``python -m simclr_lib.checks.finite_d`` (default: the book's
    ``book/data/finite_d.json``)."""
    return json.loads(Path(path).read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simclr_lib.checks.finite_d",
                                description="The book's finite-d study (chapter finite_d).")
    p.add_argument("--ds", type=int, nargs="+", default=list(DS), help="dimensions d")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per d (default 8)")
    p.add_argument("--out", required=True, help="result file (.json)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.threads < 1 or min(a.ds) < 2:
        p.error("--seeds and --threads must be >= 1 and every --ds >= 2")
    torch.set_num_threads(a.threads)
    t0 = time.time()
    res = study(a.ds, range(a.seeds), progress=True)
    res["command"] = ("python -m simclr_lib.checks.finite_d --ds " + " ".join(map(str, a.ds))
                      + f" --seeds {a.seeds} --out {a.out}")
    res["seconds"] = round(time.time() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
