"""``python -m simclr_lib``: the sweeps of :mod:`simclr_lib.sweeps` from the command line.

    python -m simclr_lib supervised --ns 4 16 64 --snrs 0.05 0.1 0.2 --seeds 0:8 --out sup.npz
    python -m simclr_lib simclr     --ns 2 4 8 --snrs 0.1 0.2 --seeds 0:8 --out simclr.json
    python -m simclr_lib alignment  --n0s 25 100 400 --snrs 0.1 0.2 --seeds 0:4 --out al.npz

The result is written to ``--out`` (``.npz`` or ``.json``) with the full configuration. Finished
chunks are kept in ``--cache-dir`` (default ``OUT.chunks/``), keyed by a hash of everything that
determines them, so rerunning an interrupted (or finished) sweep recomputes nothing that is done.
``--scheduler tcp://host:8786`` spreads the chunks over a Dask cluster.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from .config import DataConfig, PretrainConfig, SupervisedConfig
from .results import SweepResult, save_sweep
from .sweeps import alignment_grid, simclr_grid, supervised_grid

__all__ = ["main", "build_parser", "save_result"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _seeds(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0:8"`` -> [0, ..., 7]."""
    try:
        if ":" in text:
            a, b = text.split(":")
            return list(range(int(a), int(b)))
        return [int(text)]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seed must be an integer or a range a:b, got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simclr_lib", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sweep", required=True, metavar="{supervised,simclr,alignment}")
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("grid and runs")
    g.add_argument("--snrs", type=float, nargs="+", required=True, help="SNR grid")
    g.add_argument("--seeds", type=_seeds, nargs="+", default=[[0]],
                   help="seeds: integers and ranges a:b (default 0)")
    g.add_argument("--d", type=int, default=DataConfig.d, help="patch dimension (default %(default)s)")
    g.add_argument("--m", type=int, default=SupervisedConfig.m, help="filters per sign (default %(default)s)")
    g.add_argument("--sigma-p", type=float, default=DataConfig.sigma_p, help="noise std (default %(default)s)")
    g.add_argument("--p", type=float, default=DataConfig.p, help="label-flip probability (default %(default)s)")
    e = common.add_argument_group("execution")
    e.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'cuda:N' (default cpu)")
    e.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    e.add_argument("--memory-gb", type=float, default=1.0, help="memory budget per chunk (default 1)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    e.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:8786): run chunks on that cluster")
    o = common.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="result file, .npz or .json")
    o.add_argument("--cache-dir", type=Path, default=None,
                   help="finished chunks (default: OUT.chunks next to --out)")
    o.add_argument("--no-cache", action="store_true", help="do not read or write finished chunks")
    o.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    def ft_args(sp, steps_help):
        f = sp.add_argument_group("supervised training (eq. 3.2)")
        f.add_argument("--ns", type=int, nargs="+", required=True, help="labeled sample sizes")
        f.add_argument("--steps", type=int, default=SupervisedConfig.steps, help=steps_help)
        f.add_argument("--q", type=float, default=SupervisedConfig.q, help="activation power (default 3)")
        f.add_argument("--lr", type=float, default=None, help="GD step (default m / (sigma_p^2 d))")
        f.add_argument("--n-test", type=int, default=SupervisedConfig.n_test, help="test samples per run")
        f.add_argument("--method", choices=["auto", "weight", "coefficient"], default="auto")

    def pre_args(sp, steps_flag):
        r = sp.add_argument_group("SimCLR pre-training (Section 3.2)")
        r.add_argument(steps_flag, dest="pre_steps", type=int, default=PretrainConfig.steps,
                       help="maximum pre-training steps (default %(default)s)")
        r.add_argument("--tau", type=float, default=PretrainConfig.tau)
        r.add_argument("--sigma0", type=float, default=PretrainConfig.sigma0)
        r.add_argument("--lam", type=float, default=PretrainConfig.lam)
        r.add_argument("--stop", choices=["linear_phase", "steps"], default=PretrainConfig.stop)
        r.add_argument("--loss", choices=["infonce", "ntxent"], default=PretrainConfig.loss)

    sp = sub.add_parser("supervised", parents=[common], help="direct supervised training (Thm 4.3)")
    ft_args(sp, "GD steps (default %(default)s)")
    sp = sub.add_parser("simclr", parents=[common], help="SimCLR + fine-tuning (Thm 4.2)")
    ft_args(sp, "fine-tuning GD steps (default %(default)s)")
    pre_args(sp, "--pretrain-steps")
    sp.add_argument("--n0-snr2", type=float, default=16.0, help="n0 = n0_snr2 / snr^2 (default 16)")
    sp.add_argument("--n0", type=int, default=None, help="a fixed n0 instead of --n0-snr2")
    sp = sub.add_parser("alignment", parents=[common], help="alignment after pre-training (Thm 5.3)")
    sp.add_argument("--n0s", type=int, nargs="+", required=True, help="unlabeled sample sizes")
    pre_args(sp, "--steps")
    return p


def _configs(a: argparse.Namespace):
    data = DataConfig(d=a.d, sigma_p=a.sigma_p, p=a.p)
    ft = pre = None
    if a.sweep in ("supervised", "simclr"):
        ft = SupervisedConfig(m=a.m, q=a.q, lr=a.lr, steps=a.steps, n_test=a.n_test,
                              method=a.method, record_every=a.steps)
    if a.sweep in ("simclr", "alignment"):
        pre = PretrainConfig(m=a.m, tau=a.tau, sigma0=a.sigma0, lam=a.lam, steps=a.pre_steps,
                             stop=a.stop, loss=a.loss, n0=a.n0 if getattr(a, "n0", None) else 400)
    return data, ft, pre


def save_result(res: SweepResult, path: Path, config: dict) -> None:
    """Write a sweep to ``.npz`` or ``.json`` with ``config`` (see ``results.save_sweep``)."""
    save_sweep(res, path, config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.out.suffix not in (".npz", ".json"):
        parser.error(f"--out must end in .npz or .json, got {str(a.out)!r}")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    seeds = [s for group in a.seeds for s in group]
    try:
        data, ft, pre = _configs(a)
    except ValueError as err:
        parser.error(str(err))
    cache = None if a.no_cache else (a.cache_dir or a.out.with_name(a.out.name + ".chunks"))
    client = executor = None
    if a.scheduler:
        from distributed import Client   # only needed for a cluster
        client = Client(a.scheduler)
        executor = client.get_executor()
    kw = dict(executor=executor, memory_gb=a.memory_gb, device=a.device, dtype=_DTYPES[a.dtype],
              cache_dir=cache, progress=not a.no_progress)
    t0 = time.perf_counter()
    try:
        if a.sweep == "supervised":
            res = supervised_grid(a.ns, a.snrs, seeds, data, ft, **kw)
        elif a.sweep == "simclr":
            res = simclr_grid(a.ns, a.snrs, seeds, data, pre, ft,
                              n0_snr2=None if a.n0 else a.n0_snr2, **kw)
        else:
            res = alignment_grid(a.n0s, a.snrs, seeds, data, pre, **kw)
    except ValueError as err:
        parser.error(str(err))
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - t0
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    args["seeds"] = seeds
    config = {"sweep": a.sweep, "argv": list(sys.argv[1:] if argv is None else argv), "args": args,
              **res.config, "seconds": round(seconds, 3)}
    save_result(res, a.out, config)
    c = res.chunks
    print(f"simclr_lib {a.sweep}: {c['total']} chunks, {c['computed']} computed, {c['cached']} "
          f"from cache, {seconds:.1f} s -> {a.out}", file=sys.stderr)
    return 0
