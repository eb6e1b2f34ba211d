"""Measured peak memory of sweep chunks against the estimates the sweeps chunk by.

Every measurement runs one chunk function in a fresh subprocess and reads its peak resident set
size (``VmHWM`` in /proc/self/status) minus the resident size just before the chunk (after
imports and a tiny warm-up), for a small and a larger chunk, next to the chunk's estimate
(``sweeps.run_bytes`` per run, plus a supervised chunk's shared test draws). Prints a table.

    .venv/bin/python bench/memory.py            # all cases (about a minute)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

CASES = {   # name: (kind, size, overrides) -- chapter-scale runs at d = 2000, float32
    "supervised n=64 (coefficient)": ("supervised", 64, {}),
    "supervised n=64 (weight)": ("supervised", 64, {"method": "weight"}),
    "alignment n0=400": ("alignment", 400, {}),
    "alignment n0=1600": ("alignment", 1600, {}),
    "simclr n0=400, ns=2..64": ("simclr", 400, {}),
}
BATCH = {"supervised": (1, 16), "alignment": (1, 4), "simclr": (1, 4)}
NS = [2, 4, 8, 16, 32, 64]


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    """This process's peak RSS (VmHWM): unlike ru_maxrss it starts afresh at exec."""
    with open("/proc/self/status") as fh:
        return int(next(ln for ln in fh if ln.startswith("VmHWM")).split()[1]) * 1024


def _configs(kind: str, over: dict):
    import simclr_lib as sl
    data = sl.DataConfig(d=2000)
    cfg = sl.SupervisedConfig(steps=20, record_every=10, **over)
    pre = sl.PretrainConfig(steps=10, stop="steps", record_every=5)
    return data, cfg, pre


def measure_one(kind: str, size: int, over: dict, runs: int) -> dict:
    """Run in this (fresh) process: the peak RSS growth of one chunk of ``runs`` runs."""
    import torch
    import simclr_lib as sl
    from simclr_lib import chunks, sweeps
    torch.set_num_threads(1)
    data, cfg, pre = _configs(kind, over)
    seeds = list(range(runs))
    tiny = sl.DataConfig(d=50)
    sweeps._supervised_chunk([0], [0.5], 4, tiny, sl.SupervisedConfig(steps=2, n_test=10), "cpu",
                             torch.float32)
    sweeps._alignment_chunk([0], [0.5], [4], tiny, sl.PretrainConfig(steps=2, stop="steps"), "cpu",
                            torch.float32)
    base = _rss()
    if kind == "supervised":   # a block of seeds x two signal strengths (fast.supervised_cells)
        mus = [data.mu_norm(0.1), data.mu_norm(0.2)] if runs > 1 else [data.mu_norm(0.1)]
        seeds = list(range(max(1, runs // len(mus))))
        sweeps._supervised_chunk(seeds, mus, size, data, cfg, "cpu", torch.float32)
        est = len(seeds) * len(mus) * sweeps.run_bytes("supervised", data, size, cfg=cfg) \
            + chunks.draw_bytes(max(size, cfg.n_test), data.d)        # one run's draw
    elif kind == "alignment":
        sweeps._alignment_chunk(seeds, [0.1] * runs, [size] * runs, data, pre, "cpu", torch.float32)
        est = runs * sweeps.run_bytes("alignment", data, size, pre=pre) + chunks.draw_bytes(size, 2000)
    else:
        units = [{"seed": s, "snr": 0.2, "n0": size} for s in seeds]
        sweeps._simclr_chunk(units, [{"unit": u, "n": n} for u in range(runs) for n in NS], data,
                             pre, cfg, "cpu", torch.float32)
        est = runs * sweeps.run_bytes("simclr", data, size, cfg=cfg, pre=pre, ns=NS) \
            + chunks.draw_bytes(max(size, cfg.n_test), 2000)          # one run's draw
    peak = _hwm() - base
    return {"runs": runs, "peak_bytes": peak, "estimate_bytes": est}


def measure(name: str) -> list[dict]:
    kind, size, over = CASES[name]
    rows = []
    for runs in BATCH[kind]:
        cmd = [sys.executable, __file__, "--one", kind, str(size), json.dumps(over), str(runs)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append({"case": name, "runs": runs, "estimate_mb": out["estimate_bytes"] / 2 ** 20,
                     "measured_mb": out["peak_bytes"] / 2 ** 20,
                     "ratio": out["estimate_bytes"] / out["peak_bytes"]})
    return rows


def main() -> list[dict]:
    rows = [r for name in CASES for r in measure(name)]
    print(f"{'chunk':34s} {'runs':>5s} {'estimate MB':>12s} {'measured MB':>12s} {'est/meas':>9s}")
    for r in rows:
        print(f"{r['case']:34s} {r['runs']:5d} {r['estimate_mb']:12.1f} {r['measured_mb']:12.1f} "
              f"{r['ratio']:9.2f}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]),
                                     int(sys.argv[5]))))
    else:
        main()
