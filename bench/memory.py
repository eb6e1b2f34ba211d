"""Measured peak memory of sweep chunks against the estimates the sweeps chunk by.

Every measurement runs one chunk function in a fresh subprocess and reads the peak resident set
size (``resource.getrusage(...).ru_maxrss``) minus the resident size just before the chunk (after
imports and a tiny warm-up). Two batch sizes give the measured bytes per run (the slope) and the
fixed overhead. Prints a table; ``bench/run.py --memory`` adds it to bench/results/latest.json.

    .venv/bin/python bench/memory.py            # all cases (about a minute)
"""
from __future__ import annotations

import json
import os
import resource
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
    from simclr_lib import sweeps
    torch.set_num_threads(1)
    data, cfg, pre = _configs(kind, over)
    seeds = list(range(runs))
    tiny = sl.DataConfig(d=50)
    sweeps._supervised_chunk([0], [0.5], [4], tiny, sl.SupervisedConfig(steps=2, n_test=10), "cpu",
                             torch.float32)
    sweeps._alignment_chunk([0], [0.5], [4], tiny, sl.PretrainConfig(steps=2, stop="steps"), "cpu",
                            torch.float32)
    base = _rss()
    if kind == "supervised":
        sweeps._supervised_chunk(seeds, [0.1] * runs, [size] * runs, data, cfg, "cpu", torch.float32)
        est = sweeps.run_bytes("supervised", data, size, cfg=cfg)
    elif kind == "alignment":
        sweeps._alignment_chunk(seeds, [0.1] * runs, [size] * runs, data, pre, "cpu", torch.float32)
        est = sweeps.run_bytes("alignment", data, size, pre=pre)
    else:
        sweeps._simclr_chunk(seeds, [0.2] * runs, [size] * runs, NS, data, pre, cfg, "cpu",
                             torch.float32)
        est = sweeps.run_bytes("simclr", data, size, cfg=cfg, pre=pre, ns=NS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"runs": runs, "peak_bytes": peak, "estimate_per_run": est}


def measure(name: str) -> dict:
    kind, size, over = CASES[name]
    out = []
    for runs in BATCH[kind]:
        cmd = [sys.executable, __file__, "--one", kind, str(size), json.dumps(over), str(runs)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    (r1, p1), (r2, p2) = [(o["runs"], o["peak_bytes"]) for o in out]
    slope = (p2 - p1) / (r2 - r1)
    est = out[0]["estimate_per_run"]
    return {"case": name, "estimate_per_run_mb": est / 2 ** 20, "measured_per_run_mb": slope / 2 ** 20,
            "fixed_mb": (p1 - slope) / 2 ** 20, "ratio_estimate_over_measured": est / slope,
            "peaks_mb": {str(r): p / 2 ** 20 for r, p in [(r1, p1), (r2, p2)]}}


def main() -> list[dict]:
    rows = [measure(name) for name in CASES]
    print(f"{'case':34s} {'estimate MB/run':>16s} {'measured MB/run':>16s} {'est/meas':>9s} {'fixed MB':>9s}")
    for r in rows:
        print(f"{r['case']:34s} {r['estimate_per_run_mb']:16.1f} {r['measured_per_run_mb']:16.1f} "
              f"{r['ratio_estimate_over_measured']:9.2f} {r['fixed_mb']:9.1f}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]),
                                     int(sys.argv[5]))))
    else:
        main()
