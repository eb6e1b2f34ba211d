"""The sweeps of :mod:`simclr_lib.sweeps` from the command line: ``simclr-sweep`` (installed by
``pip install -e .``, ``make install``) or ``python -m simclr_lib``; ``--help`` tells how.

Every error exits non-zero with one line naming the option, before any compute. A finished
chunk is kept as soon as it is done, so an interrupted (Ctrl-C: exit 130) or failed run
resumes where it stopped. A rerun of a finished sweep whose result file is up to date (same
options, same library source) only records its own time (``rerun_seconds``) and needs
neither torch nor any compute.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Sequence

from .config import DataConfig, PretrainConfig, SupervisedConfig

__all__ = ["main", "build_parser", "save_result"]

HELP = """\
Large sweeps of the paper's grids, resumable, saved with their configuration.

examples:
  %(prog)s supervised --ns 4 16 64 --snrs 0.05 0.1 0.2 --seeds 0:8 --out sup.npz
  %(prog)s supervised --ns 20 --ds 100 400 --mu-norms 0 1 2 4 --seeds 0:10 --out k.npz
  %(prog)s simclr --ns 2 4 8 --snrs 0.1 0.2 --seeds 0:8 --out simclr.json
  %(prog)s alignment --n0s 25 100 400 --snrs 0.1 0.2 --seeds 0:4 --out al.npz

The result goes to --out (.npz or .json) with its configuration. Open it in Python:
  import simclr_lib as sl; res = sl.load_sweep("sup.npz"); res.mean()
Finished chunks are kept in --cache-dir (default OUT.chunks/): rerunning an interrupted or
finished command recomputes nothing that is done. --scheduler tcp://host:8786 runs the
chunks on a Dask cluster.
"""

_DTYPES = ("float32", "float64")
_EXECUTION = {"out", "cache_dir", "no_cache", "progress", "threads", "scheduler"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):          # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _prog() -> str:
    return "python -m simclr_lib" if sys.argv[0].endswith("__main__.py") else "simclr-sweep"


def _seeds(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0:8"`` -> [0, ..., 7]."""
    try:
        if ":" in text:
            a, b = text.split(":")
            return list(range(int(a), int(b)))
        return [int(text)]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seed must be an integer or a range a:b, "
                                         f"got {text!r}") from err


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=_prog(), description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sweep", required=True, metavar="{supervised,simclr,alignment}",
                           parser_class=_Parser)
    common = _Parser(add_help=False)
    g = common.add_argument_group("grid and runs")
    g.add_argument("--seeds", type=_seeds, nargs="+", default=[[0]],
                   help="seeds: integers and ranges a:b (default 0)")
    g.add_argument("--pairing", choices=["paired", "independent"], default="paired",
                   help="paired: a seed's cells share its data; independent: each cell its own "
                        "seed (default paired)")
    g.add_argument("--d", type=int, default=None, help=f"patch dimension (default {DataConfig.d})")
    g.add_argument("--m", type=int, default=SupervisedConfig.m, help="filters per sign (default %(default)s)")
    g.add_argument("--sigma-p", type=float, default=DataConfig.sigma_p, help="noise std (default %(default)s)")
    g.add_argument("--p", type=float, default=DataConfig.p, help="label-flip probability (default %(default)s)")
    e = common.add_argument_group("execution")
    e.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'cuda:N' (default cpu)")
    e.add_argument("--dtype", choices=_DTYPES, default="float32")
    e.add_argument("--memory-gb", type=float, default=1.0,
                   help="memory budget per chunk, 'inf' for none (default 1)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    e.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:8786): run chunks on that cluster")
    o = common.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="result file, .npz or .json")
    o.add_argument("--cache-dir", type=Path, default=None,
                   help="finished chunks (default: OUT.chunks next to --out)")
    o.add_argument("--no-cache", action="store_true", help="do not read or write finished chunks")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")

    def ft_args(sp, steps_help):
        f = sp.add_argument_group("supervised training (eq. 3.2)")
        f.add_argument("--ns", type=int, nargs="+", required=True, help="labeled sample sizes")
        f.add_argument("--steps", type=int, default=SupervisedConfig.steps, help=steps_help)
        f.add_argument("--q", type=float, default=SupervisedConfig.q,
                       help="activation power (default %(default)s)")
        f.add_argument("--lr", type=float, default=None, help="GD step (default m / (sigma_p^2 d))")
        f.add_argument("--n-test", type=int, default=SupervisedConfig.n_test,
                       help="test samples per run (default %(default)s)")
        f.add_argument("--method", choices=["auto", "weight", "coefficient"], default="auto")

    def pre_args(sp, steps_flag):
        r = sp.add_argument_group("SimCLR pre-training (Section 3.2)")
        r.add_argument(steps_flag, dest="pre_steps", type=int, default=PretrainConfig.steps,
                       help="maximum pre-training steps (default %(default)s)")
        r.add_argument("--tau", type=float, default=PretrainConfig.tau)
        r.add_argument("--sigma0", type=float, default=PretrainConfig.sigma0,
                       help="encoder init std (default %(default)s)")
        r.add_argument("--lam", type=float, default=PretrainConfig.lam)
        r.add_argument("--stop", choices=["linear_phase", "steps"], default=PretrainConfig.stop)
        r.add_argument("--loss", choices=["infonce", "ntxent"], default=PretrainConfig.loss)

    sp = sub.add_parser("supervised", parents=[common], help="direct supervised training (Thm 4.3)",
                        description="Direct supervised training over n x (d x) SNR or ||mu||.")
    ft_args(sp, "GD steps (default %(default)s)")
    grp = sp.add_argument_group("signal, dimension and start")
    sig = grp.add_mutually_exclusive_group(required=True)
    sig.add_argument("--snrs", type=float, nargs="+", help="SNR grid (>= 0)")
    sig.add_argument("--mu-norms", type=float, nargs="+", help="||mu|| grid (>= 0; 0: no signal)")
    grp.add_argument("--ds", type=int, nargs="+", default=None,
                     help="a grid of patch dimensions (instead of --d)")
    grp.add_argument("--sigma0", type=float, default=None, help="init std (default 0.5 / sqrt(d))")
    sp = sub.add_parser("simclr", parents=[common], help="SimCLR + fine-tuning (Thm 4.2)",
                        description="SimCLR pre-training + fine-tuning over n x SNR.")
    ft_args(sp, "fine-tuning GD steps (default %(default)s)")
    sp.add_argument("--snrs", type=float, nargs="+", required=True, help="SNR grid (> 0)")
    pre_args(sp, "--pretrain-steps")
    sp.add_argument("--n0-snr2", type=float, default=16.0, help="n0 = n0_snr2 / snr^2 (default 16)")
    sp.add_argument("--n0", type=int, default=None, help="a fixed n0 instead of --n0-snr2")
    sp = sub.add_parser("alignment", parents=[common], help="alignment after pre-training (Thm 5.3)",
                        description="Alignment of the pre-trained filters over n0 x SNR.")
    sp.add_argument("--n0s", type=int, nargs="+", required=True, help="unlabeled sample sizes")
    sp.add_argument("--snrs", type=float, nargs="+", required=True, help="SNR grid (> 0)")
    pre_args(sp, "--steps")
    return p


# the option that sets each checked name (the first word of a ValueError's message)
_OPTIONS = {"n": "--ns", "ns": "--ns", "snr": "--snrs", "snrs": "--snrs", "mu_norms": "--mu-norms",
            "ds": "--ds", "d": "--d", "m": "--m", "sigma_p": "--sigma-p", "p": "--p", "q": "--q",
            "sigma0": "--sigma0", "lr": "--lr", "n_test": "--n-test", "n0": "--n0",
            "n0s": "--n0s", "n0_snr2": "--n0-snr2", "tau": "--tau", "lam": "--lam",
            "memory_gb": "--memory-gb", "seed": "--seeds", "seeds": "--seeds",
            "device": "--device", "ft.m": "--m"}


class _Error(Exception):
    """A one-line command-line error."""


def _option_error(err: ValueError, steps: str = "--steps") -> _Error:
    name = re.split(r"[\s(]", str(err), maxsplit=1)[0]
    option = steps if name == "steps" else _OPTIONS.get(name)
    return _Error(f"{option}: {err}" if option else str(err))


def _configs(a: argparse.Namespace):
    """The configurations of the command (ValueError -> one line naming the option)."""
    data_kw = {} if a.d is None else {"d": a.d}
    try:
        data = DataConfig(sigma_p=a.sigma_p, p=a.p, **data_kw)
    except ValueError as err:
        raise _option_error(err) from None
    ft = pre = None
    if a.sweep in ("supervised", "simclr"):
        try:
            ft = SupervisedConfig(m=a.m, q=a.q, lr=a.lr, steps=a.steps, n_test=a.n_test,
                                  method=a.method, record_every=a.steps,
                                  sigma0=getattr(a, "sigma0", None) if a.sweep == "supervised" else None)
        except ValueError as err:
            raise _option_error(err) from None
    if a.sweep in ("simclr", "alignment"):
        n0 = {} if getattr(a, "n0", None) is None else {"n0": a.n0}   # --n0 0 is an error, not unset
        flag = "--pretrain-steps" if a.sweep == "simclr" else "--steps"
        try:
            pre = PretrainConfig(m=a.m, tau=a.tau, sigma0=a.sigma0, lam=a.lam, steps=a.pre_steps,
                                 stop=a.stop, loss=a.loss, **n0)
        except ValueError as err:
            raise _option_error(err, flag) from None
    return data, ft, pre


def _check_device(device: str) -> None:
    if device == "cpu":
        return                                  # no torch needed to know that
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise _Error(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    from ._validate import check_device
    try:
        check_device(device)
    except ValueError as err:
        raise _Error(f"--device: {err}") from None


def _writable_dir(path: Path) -> str | None:
    """Why a directory could not be made or written at ``path`` (None: it can), making nothing."""
    if path.exists():
        return None if path.is_dir() and os.access(path, os.W_OK) else "not a writable directory"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(parent)!r} is a file"
    return None if os.access(parent, os.W_OK) else f"{str(parent)!r} is not writable"


def _check_paths(out: Path, cache: Path | None) -> None:
    """--out and --cache-dir must be writable: checked before the sweep, not after it."""
    if out.suffix not in (".npz", ".json"):
        raise _Error(f"--out must end in .npz or .json, got {str(out)!r}")
    if out.is_dir():
        raise _Error(f"--out {str(out)!r} is a directory")
    why = _writable_dir(out.parent)
    if why is None and out.parent.exists():     # really write there (a read-only mount, ...)
        probe = out.with_name(f".{out.name}.{os.getpid()}.probe")
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            why = err.strerror or str(err)
    if why is not None:
        raise _Error(f"--out {str(out)!r} is not writable: {why}")
    if cache is None:
        return
    if cache.exists() and not cache.is_dir():
        raise _Error(f"--cache-dir {str(cache)!r} exists and is not a directory")
    why = _writable_dir(cache)
    if why is not None:
        raise _Error(f"--cache-dir {str(cache)!r} is not writable: {why}")


def _key(a: argparse.Namespace) -> str:
    """A hash of everything that determines the result: the options (not where or how it runs)
    and the library's source."""
    from .chunks import source_hash
    opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(a).items())
            if k not in _EXECUTION}
    return hashlib.sha256(json.dumps([opts, source_hash()]).encode()).hexdigest()[:24]


def save_result(res, path: Path, config: dict) -> None:
    """Write a sweep to ``.npz`` or ``.json`` with ``config`` (see ``results.save_sweep``)."""
    from .results import save_sweep
    save_sweep(res, path, config)


def _up_to_date(out: Path, key: str, t0: float, sweep: str) -> bool:
    """A finished result of the same command: record this rerun's time beside the original."""
    from .results import load_sweep
    if not out.is_file():
        return False
    try:
        res = load_sweep(out)
    except (ValueError, KeyError, OSError, json.JSONDecodeError):
        return False
    if res.config.get("key") != key:
        return False
    seconds = round(time.perf_counter() - t0, 3)
    save_result(res, out, {**res.config, "rerun_seconds": seconds})
    total = res.chunks.get("total", 0)
    print(f"simclr_lib {sweep}: {total} chunks, 0 computed, {total} from cache (result up to "
          f"date), {seconds:.2f} s -> {out}", file=sys.stderr)
    return True


def _run(a: argparse.Namespace, data, ft, pre, seeds, cache):
    import torch
    from .sweeps import alignment_grid, simclr_grid, supervised_grid
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    client = executor = None
    if a.scheduler:
        from distributed import Client   # only needed for a cluster
        client = Client(a.scheduler)
        executor = client.get_executor()
    kw = dict(executor=executor, memory_gb=a.memory_gb, device=a.device,
              dtype=getattr(torch, a.dtype), cache_dir=cache, progress=a.progress,
              pairing=a.pairing)
    try:
        if a.sweep == "supervised":
            return supervised_grid(a.ns, a.snrs, seeds, data, ft, ds=a.ds, mu_norms=a.mu_norms, **kw)
        if a.sweep == "simclr":
            return simclr_grid(a.ns, a.snrs, seeds, data, pre, ft,
                               n0_snr2=None if a.n0 is not None else a.n0_snr2, **kw)
        return alignment_grid(a.n0s, a.snrs, seeds, data, pre, **kw)
    finally:
        if client is not None:
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0, 1 on a failed run, 2 on a bad option,
    130 when interrupted)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    t0 = time.perf_counter()
    prog = parser.prog
    cache = None if a.no_cache else (a.cache_dir or a.out.with_name(a.out.name + ".chunks"))
    seeds = [s for group in a.seeds for s in group]
    try:
        if a.threads is not None and a.threads < 1:
            raise _Error(f"--threads must be an integer >= 1, got {a.threads}")
        if a.sweep == "supervised" and a.ds is not None and a.d is not None:
            raise _Error("--d and --ds: give one (--ds sweeps the patch dimension)")
        _check_device(a.device)
        data, ft, pre = _configs(a)
        _check_paths(a.out, cache)
    except _Error as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    key = _key(a)
    if cache is not None and _up_to_date(a.out, key, t0, a.sweep):
        return 0
    where = f" in {cache}" if cache is not None else " (--no-cache)"
    try:
        res = _run(a, data, ft, pre, seeds, cache)
    except KeyboardInterrupt as err:
        saved, total = getattr(err, "chunks_saved", 0), getattr(err, "chunks_total", None)
        of = f" of {total}" if total is not None else ""
        print(f"{prog}: interrupted: {saved}{of} chunks saved{where}; rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except ValueError as err:                   # the sweeps validate before any compute
        print(f"{prog}: error: {_option_error(err)}", file=sys.stderr)
        return 2
    except Exception as err:                    # DivergenceError and other failed runs
        from .training import DivergenceError
        saved = getattr(err, "chunks_saved", 0)
        what = "a run diverged" if isinstance(err, DivergenceError) else type(err).__name__
        msg = " ".join(str(err).split())
        print(f"{prog}: error: {what}: {msg} ({saved} finished chunks kept{where})",
              file=sys.stderr)
        return 1
    seconds = round(time.perf_counter() - t0, 3)
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    args["seeds"] = seeds
    config = {**res.config, "argv": list(sys.argv[1:] if argv is None else argv), "args": args,
              "key": key, "seconds": seconds}
    try:
        save_result(res, a.out, config)
    except (OSError, ValueError) as err:
        print(f"{prog}: error: could not write --out {str(a.out)!r}: {err}; the finished "
              f"chunks are kept{where}: rerun the same command to write it", file=sys.stderr)
        return 1
    c = res.chunks
    print(f"simclr_lib {a.sweep}: {c['total']} chunks, {c['computed']} computed, {c['cached']} "
          f"from cache, {seconds:.1f} s -> {a.out}", file=sys.stderr)
    return 0
