"""The performance benchmark of simclr_lib (not part of ``make test``): ``make bench``.

Measures, in one process and one run (so that every ratio compares like with like):

(a) a batched supervised sweep against a naive one-model-at-a-time loop over the same grid,
    seeds and steps, written the way public research code for this model usually is;
(b) the FLOP/s the training steps reach in their matrix products, over the FLOP/s of a
    2048 x 2048 ``torch.matmul`` in the same dtype and process;
(c) coefficient-space against weight-space GD at d = 2000, n = 64, m = 10, 64 runs in a batch;
(d) each chapter's execution time, read from the book build's jupyter-cache;
(e) Kou et al.'s 100 x 100 x 10 heatmap: the library's whole grid on 2 processes against the
    peer's loop (its committed code transcribed: data built sample by sample, one nn.Module
    per run) on a few cells, extrapolated to the grid;
(f) the d-independent Gram method: time per run at d = 1e2, 1e4, 1e6;
(g) with ``--chapters``: each book chapter's peak memory, executed as a script in a fresh
    subprocess (its ``VmHWM``).

Writes bench/results/latest.json and prints a table. See bench/README.md.

    .venv/bin/python bench/run.py [--threads 1] [--quick] [--memory] [--chapters]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import simclr_lib as sl                                   # noqa: E402
from simclr_lib import sweeps                            # noqa: E402
from simclr_lib.pipelines import pretrain_views          # noqa: E402
from simclr_lib.pretraining import pretrain  # noqa: E402
from simclr_lib.training import make_stepper  # noqa: E402

TARGETS = {"a": 20.0, "b": 0.50, "c": 10.0, "d_minutes": 8.0, "e": 2000.0, "e_wall_s": 30.0,
           "f_flat": 2.0, "g_mb": 500.0}


def best_time(fn, reps: int = 3) -> float:
    """The fastest of ``reps`` calls (after one warm-up): the least disturbed by other processes."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_flops(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / best_time(lambda: torch.matmul(a, b), reps=5)


# ---------------------------------------------------------------------------------------------
# (a) the naive reference: loops over grid cells and seeds, data built sample by sample,
#     an nn.Module trained with autograd and torch.optim, one model at a time.

class NaiveCNN(nn.Module):
    """f(W, x) = F_{+1} - F_{-1}, F_j = (1/m) sum_r sum_p relu(<w_{j,r}, x_p>)^q (eq. 3.2)."""

    def __init__(self, d: int, m: int, q: float, sigma0: float):
        super().__init__()
        self.m, self.q = m, q
        self.w_pos = nn.Parameter(torch.randn(m, d) * sigma0)
        self.w_neg = nn.Parameter(torch.randn(m, d) * sigma0)

    def forward(self, x):                                  # x (n, 2, d)
        f_pos = F.relu(x @ self.w_pos.T).pow(self.q).sum(dim=(1, 2)) / self.m
        f_neg = F.relu(x @ self.w_neg.T).pow(self.q).sum(dim=(1, 2)) / self.m
        return f_pos - f_neg


def naive_data(n: int, d: int, snr: float, sigma_p: float = 1.0):
    mu = torch.zeros(d)
    mu[0] = snr * sigma_p * math.sqrt(d)
    xs, ys = [], []
    for _ in range(n):                                     # one sample at a time
        y = 1.0 if np.random.rand() < 0.5 else -1.0
        xi = torch.randn(d) * sigma_p
        xi = xi - (xi @ mu) / (mu @ mu) * mu               # noise orthogonal to mu
        patches = [y * mu, xi] if np.random.rand() < 0.5 else [xi, y * mu]
        xs.append(torch.stack(patches))
        ys.append(y)
    return torch.stack(xs), torch.tensor(ys)


def naive_sweep(ns, snrs, seeds, d, m, q, steps, n_test) -> np.ndarray:
    out = np.zeros((len(ns), len(snrs), len(seeds)))
    for i, n in enumerate(ns):
        for j, snr in enumerate(snrs):
            for k, seed in enumerate(seeds):
                torch.manual_seed(seed)
                np.random.seed(seed)
                x, y = naive_data(n, d, snr)
                x_test, y_test = naive_data(n_test, d, snr)
                model = NaiveCNN(d, m, q, 0.5 / math.sqrt(d))
                opt = torch.optim.SGD(model.parameters(), lr=m / d)
                for t in range(steps):
                    opt.zero_grad()
                    loss = F.softplus(-y * model(x)).mean()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    margin = y_test * model(x_test)
                out[i, j, k] = ((margin < 0).float() + 0.5 * (margin == 0).float()).mean().item()
    return out


def bench_a(quick: bool) -> dict:
    ns, snrs, seeds = [8, 64], [0.1, 0.4], [0, 1, 2]
    d, m, q, steps, n_test = 2000, 10, 3.0, (500 if quick else 2000), 1000
    data = sl.DataConfig(d=d)
    cfg = sl.SupervisedConfig(m=m, q=q, steps=steps, n_test=n_test, record_every=steps)
    t = time.perf_counter()
    batched = sweeps.supervised_grid(ns, snrs, seeds, data, cfg)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    naive = naive_sweep(ns, snrs, seeds, d, m, q, steps, n_test)
    t_naive = time.perf_counter() - t
    return {"grid": {"ns": ns, "snrs": snrs, "seeds": seeds, "d": d, "m": m, "q": q, "steps": steps,
                     "n_test": n_test},
            "batched_s": t_batched, "naive_s": t_naive, "speedup": t_naive / t_batched,
            "batched_chunks": batched.chunks["total"],
            "batched_mean_error": float(batched.values.mean()), "naive_mean_error": float(naive.mean()),
            "batched_cell_means": batched.mean().tolist(), "naive_cell_means": naive.mean(-1).tolist()}


# ---------------------------------------------------------------------------------------------
# (b) FLOP/s of the training steps' matrix products

def _row(secs: float, flops: float, steps: int) -> dict:
    """Efficiency against the 2048^2 matmul measured right before and right after the workload
    (the larger of the two: a busy machine's slow moment never flatters the ratio)."""
    return {"s_per_step": secs / steps, "gflops": flops / secs / 1e9, "flops_per_step": flops / steps}


def _with_peak(fn) -> dict:
    before = matmul_flops(torch.float32)
    row = fn()
    peak = max(before, matmul_flops(torch.float32))
    row["matmul_gflops"] = peak / 1e9
    row["efficiency"] = row["gflops"] * 1e9 / peak
    return row


def bench_b(quick: bool) -> dict:
    rows = {}
    d, m = 2000, 10
    k = 2 * m
    # the ceiling: one bare skinny product of the hot path, (2m x d) @ (d x 2 n0), batched
    U, W = torch.randn(8, 800, d), torch.randn(8, k, d)
    rows["bare bmm (20 x 2000) @ (2000 x 800), 8 runs"] = _with_peak(
        lambda: _row(best_time(lambda: torch.bmm(W, U.transpose(1, 2)), reps=5), 2 * 8 * k * d * 800, 1))
    del U, W
    # SimCLR pre-training, a chapter-size chunk: 8 runs, n0 = 400 (and 1600)
    for n0, R in ([(400, 8)] if quick else [(400, 8), (1600, 4)]):
        pre = sl.PretrainConfig(n0=n0, m=m)
        seeds = list(range(R))
        unl, view = pretrain_views(seeds, sl.DataConfig(d=d), pre, 0.1, None, "cpu", torch.float32)
        W0 = sl.init_encoder([sl.stream(s, "pretrain_init") for s in seeds], m, d, pre.sigma0)
        lr = torch.full((R,), pre.step_size(unl.mu[0].norm().item()))
        fwd = R * (2 * (2 * n0) * d * k + 3 * 2 * n0 * n0 * k)   # encoder; logits, P h~, P^T h
        upd = R * 2 * k * (2 * n0) * d                           # dL/dW = dHH^T U
        run = lambda steps: pretrain(W0, unl, view, 1.0, lr, steps, "infonce", "steps",  # noqa: E731
                                     record_every=10 ** 6)

        def steps_only(s1=4, s2=24):
            # the difference of two runs: the set-up (U = [Z; Z~], masks) cancels
            t = best_time(lambda: run(s2), reps=2) - best_time(lambda: run(s1), reps=2)
            return _row(t, (s2 - s1) * (fwd + upd), s2 - s1)
        rows[f"pretrain n0={n0} R={R}"] = _with_peak(steps_only)
    # supervised weight-space GD with many samples (the "auto" path for n > 2d)
    for n, R in ([(1000, 4)] if quick else [(1000, 4), (4096, 2)]):
        seeds = list(range(R))
        data = sl.DataConfig(d=d)
        train = sl.make_dataset(data, n, seeds, "train", 0.1)
        test = sl.make_dataset(data, 10, seeds, "test", 0.1)
        W0 = sl.init_cnn([sl.stream(s, "init") for s in seeds], m, d, 0.5 / math.sqrt(d))
        st = make_stepper("weight", W0, train, test, 3.0, m / d)
        steps = 10
        flops = steps * R * 2 * (2 * k * (2 * n) * d)           # W x^T and coef x, P = 2 patches
        rows[f"weight-space GD n={n} R={R}"] = _with_peak(lambda: _row(
            best_time(lambda: [st.step() for _ in range(steps)], reps=2), flops, steps))
    return rows


# ---------------------------------------------------------------------------------------------
# (c) coefficient space against weight space, d = 2000, n = 64, m = 10, 64 runs

def bench_c(quick: bool) -> dict:
    d, n, m, R = 2000, 64, 10, 64
    n_test = 200 if quick else 1000
    seeds = list(range(R))
    data = sl.DataConfig(d=d)
    t = time.perf_counter()
    train = sl.make_dataset(data, n, seeds, "train", 0.2)
    test = sl.make_dataset(data, n_test, seeds, "test", 0.2)
    t_data = time.perf_counter() - t
    W0 = sl.init_cnn([sl.stream(s, "init") for s in seeds], m, d, 0.5 / math.sqrt(d))
    out = {"shape": {"d": d, "n": n, "m": m, "runs": R, "n_test": n_test}, "data_s": t_data}
    for method in ("weight", "coefficient"):
        t = time.perf_counter()
        st = make_stepper(method, W0, train, test, 3.0, m / d)
        setup = time.perf_counter() - t
        steps = 10 if method == "weight" else 100
        per_step = best_time(lambda: [st.step() for _ in range(steps)], reps=2) / steps
        per_eval = best_time(lambda: st.test_logits(), reps=2)
        out[method] = {"setup_s": setup, "step_s": per_step, "test_eval_s": per_eval}
        del st
    w, c = out["weight"], out["coefficient"]
    out["step_speedup"] = w["step_s"] / c["step_s"]
    # a whole default fit: 2000 steps, test evaluated every 100 steps (21 times)
    whole = lambda r: r["setup_s"] + 2000 * r["step_s"] + 21 * r["test_eval_s"]  # noqa: E731
    out["fit2000_weight_s"], out["fit2000_coefficient_s"] = whole(w), whole(c)
    out["fit2000_speedup"] = whole(w) / whole(c)
    return out


# ---------------------------------------------------------------------------------------------
# (d) the book's execution report

def bench_d(build: Path) -> dict:
    cache_dir = build / ".jupyter_cache"
    if not cache_dir.exists():
        return {"found": False, "note": f"no book build found ({cache_dir} does not exist): run "
                                        "`make book` first"}
    from jupyter_cache import get_cache
    cache = get_cache(str(cache_dir))
    chapters = {}
    for rec in cache.list_cache_records():
        secs = rec.data.get("execution_seconds")
        try:
            name = Path(rec.uri).resolve().relative_to(ROOT).as_posix()
        except ValueError:                                 # built from another checkout (a clone)
            parts = Path(rec.uri).parts
            name = Path(*parts[parts.index("book"):]).as_posix() if "book" in parts else rec.uri
        if secs is not None and (name not in chapters or rec.created.timestamp() > chapters[name][1]):
            chapters[name] = (float(secs), rec.created.timestamp())
    total = sum(s for s, _ in chapters.values())
    pages = []
    if (ROOT / "_toc.yml").exists():
        for ln in (ROOT / "_toc.yml").read_text().splitlines():
            for key in ("file:", "root:"):
                if key in ln:
                    pages.append(ln.split(key)[1].strip() + ".md")
    notebooks = [p for p in pages if (ROOT / p).exists() and "kernelspec:" in (ROOT / p).read_text()]
    missing = sorted(set(notebooks) - set(chapters))
    return {"found": True, "cache": str(cache_dir), "chapters": {k: v[0] for k, v in sorted(chapters.items())},
            "total_s": total, "total_minutes": total / 60, "notebooks_without_record": missing}


# ---------------------------------------------------------------------------------------------
# (e) Kou et al.'s heatmap: the peer's loop as committed (uclaml/Benign_ReLU_CNN,
#     syntheticrelu.py, the heatmap cell: repeats x (data built sample by sample, an
#     nn.Conv1d model with bias and PyTorch's default init, CrossEntropyLoss, SGD lr 0.1,
#     100 steps, training loss and test error at the end)), transcribed with its names

class LinearCNN(nn.Module):
    """The peer's network: Conv1d(1, 2m, d, stride d) + ReLU, mean over the 2 patches, sum
    over each class's m filters."""

    def __init__(self, input_dim, out_channel, patch_num):
        super().__init__()
        self.conv1 = nn.Conv1d(1, out_channel * 2, int(input_dim / patch_num),
                               int(input_dim / patch_num))
        self.out_channel = out_channel

    def forward(self, x):
        x = self.conv1(x)
        x = torch.pow(x, 1)
        x = torch.nn.functional.relu(x)
        x = torch.mean(x, 2)
        return torch.stack([torch.sum(x[:, :self.out_channel], 1),
                            torch.sum(x[:, self.out_channel:], 1)]).transpose(1, 0)


def peer_cell(PATCH_LEN: int, bmu: float, repeats: int = 10, DATA_NUM: int = 20,
              TEST_DATA_NUM: int = 1000, CLUSTER_NUM: int = 1, PATCH_NUM: int = 2,
              Noiselevel: float = 1.0, flip: float = 0.1, num_epochs: int = 100) -> float:
    """One cell (d = PATCH_LEN, ||mu|| = bmu) of the peer's grid loop; its mean test error."""
    test1 = 0
    train1 = 0
    for j in range(repeats):
        data = []
        labels = []
        for i in range(DATA_NUM + TEST_DATA_NUM):
            features = torch.zeros(CLUSTER_NUM, PATCH_LEN)
            pos = 0
            for p in range(CLUSTER_NUM):
                features[p, pos] = 1
                pos += 1
            y = np.random.choice([-1, 1], 1)[0]
            k = torch.randint(0, CLUSTER_NUM, (1,))
            xi = torch.tensor(np.random.normal(0, Noiselevel, size=(PATCH_LEN)))
            x = torch.stack([features[k][0] * bmu * y, xi])
            idx = torch.randperm(len(x))
            x = x[idx].flatten()
            y = np.random.choice([-1, 1], 1, p=[flip, 1 - flip])[0] * y
            data.append(x)
            labels.append(y)
        data = torch.stack(data)
        labels = torch.tensor(labels)
        labels[labels == -1] = 0
        training_data = data[:DATA_NUM].unsqueeze(1).float()
        test_data = data[DATA_NUM:].unsqueeze(1).float()
        training_labels = labels[:DATA_NUM]
        test_labels = labels[DATA_NUM:]
        my_mixture = LinearCNN(2 * PATCH_LEN, 10, PATCH_NUM)
        criterion = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(my_mixture.parameters(), lr=0.1, momentum=0, weight_decay=0)
        for epoch in range(num_epochs):                                # the peer's train()
            optimizer.zero_grad()
            loss = criterion(my_mixture(training_data), training_labels)
            loss.backward()
            optimizer.step()
        with torch.no_grad():                                          # the peer's test()
            train1 += criterion(my_mixture(training_data), training_labels)
        with torch.no_grad():                                          # the peer's test_ACC()
            predicted = torch.max(my_mixture(test_data).data, 1).indices
            correct = (predicted == test_labels).sum().item()
        test1 += 1 - correct / test_data.shape[0]
    return test1 / repeats


def bench_e(quick: bool) -> dict:
    """Row (e), measured in a fresh process of its own (rows a-d leave this one's heap and
    caches in a state that slowed both the library and the peer's loop by up to 3x)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.json"
        subprocess.run([sys.executable, __file__, "--row-e", str(out), "--threads",
                        str(torch.get_num_threads())] + (["--quick"] if quick else []),
                       check=True, cwd=ROOT)
        return json.loads(out.read_text())


def cost_floor(ds: list[int], seeds: int = 10) -> float:
    """CPU seconds of the part of the library's grid that no exact implementation of its
    algebra avoids: each run's test-noise draw (the same streams, so that the errors are the
    exact path's) and the matrix products at their shapes, at BLAS speed (one thread): per
    (seed, d) the test projections ``Xt [Xi; W0]^T`` and ``<xi_t, xi_i> sig``, and the 101
    products ``K sig`` of GD's steps. No elementwise work, no set-up, no kernel load."""
    from simclr_lib import fast
    from threadpoolctl import threadpool_limits
    n, M2, J, nt, steps = (fast.KOU["n"], 2 * fast.KOU["m"], len(fast.KOU["mu_norms"]),
                           fast.KOU["n_test"], fast.KOU["steps"])
    K, sig = np.ones((seeds, n, n), np.float32), np.ones((seeds, n, M2 * J), np.float32)
    z, zt, Gt = np.empty_like(sig), np.empty((nt, M2 * J), np.float32), np.ones((nt, n), np.float32)
    c0 = time.process_time()
    with threadpool_limits(1, user_api="blas"):
        for t, d in enumerate(ds):
            data, _ = fast.kou_configs(d)
            B = np.ones((n + M2, d - 1), np.float32)
            for s in range(seeds):
                xt = sl.data.draw_run(data, nt, sl.stream(sl.data.cell_seed(s, t), "test"))[3]
                np.matmul(xt.numpy(), B.T)
                np.matmul(Gt, sig[s], out=zt)
            for _ in range(steps + 1):
                np.matmul(K, sig, out=z)
    return time.process_time() - c0


def _bench_e(quick: bool) -> dict:
    """The library's whole grid (2 processes; wall and CPU time) and the peer's loop on
    3 cells (d = 100, 600, 1090), extrapolated linearly in d to the 10,000 cells."""
    from simclr_lib import fast
    import multiprocessing as mp
    import resource
    from concurrent.futures import ProcessPoolExecutor
    ds = fast.KOU["ds"][::10] if quick else fast.KOU["ds"]
    cpu_all = lambda: sum(sum(resource.getrusage(w)[:2])  # noqa: E731  this process + workers
                          for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cells = [(100, 0), (600, 50), (1090, 99)]     # the peer's loop first, in a fresh process
    np.random.seed(0)
    torch.manual_seed(0)
    peer_cell(100, 0.0, repeats=1)                     # warm-up (first module, first autograd)
    peer, peer_err = [], []
    for d, s in cells:
        t0, c0 = time.perf_counter(), time.process_time()
        peer_err.append(peer_cell(d, 0.1 * s, repeats=2 if quick else 10))
        peer.append({"d": d, "mu_norm": 0.1 * s, "wall_s": time.perf_counter() - t0,
                     "cpu_s": time.process_time() - c0})
    with tempfile.TemporaryDirectory() as tmp:            # the kernels' first compilation
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from simclr_lib import fast; fast._warm_kernels()"],
                       check=True, cwd=ROOT, env={**os.environ, "NUMBA_CACHE_DIR": tmp})
        compile_s = time.perf_counter() - t
    c0 = time.process_time()
    fast._warm_kernels()                 # load the compiled kernels (counted in both timings)
    load_cpu = time.process_time() - c0
    c0 = time.process_time()             # the whole grid in this one process
    alone = fast.kou_grid(ds=ds, chunks=1)
    one_cpu = time.process_time() - c0 + load_cpu
    t, c = time.perf_counter(), cpu_all()
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex:
        grid = fast.kou_grid(ds=ds, executor=ex)
    wall, cpu = time.perf_counter() - t, cpu_all() - c + load_cpu
    assert all(np.array_equal(alone[k], grid[k]) for k in fast.METRICS)   # same seeds, same grid
    floor_cpu = cost_floor(ds) * len(fast.KOU["ds"]) / len(ds)
    scale = 1 if not quick else 5                      # quick: 2 of the 10 repeats
    slope, icpt = np.polyfit([p["d"] for p in peer], [scale * p["cpu_s"] for p in peer], 1)
    all_ds = np.array(fast.KOU["ds"])
    peer_grid_cpu = float(100 * (slope * all_ds + icpt).sum())   # 100 signal strengths per d
    lib_grid_cpu = cpu * len(fast.KOU["ds"]) / len(ds)
    lib_one_cpu = one_cpu * len(fast.KOU["ds"]) / len(ds)
    ours = [float(grid["test_error"][list(ds).index(d), s].mean()) if d in ds else None
            for d, s in cells]
    return {"grid": {"ds": len(ds), "mu_norms": len(grid["mu_norms"]), "seeds": 10},
            "library_wall_s": wall, "library_cpu_s": cpu, "library_grid_cpu_s": lib_grid_cpu,
            "kernel_load_cpu_s": load_cpu, "kernel_compile_s": compile_s,
            "load_avg": os.getloadavg()[0], "peer_cells": peer,
            "peer_cell_error": peer_err, "library_cell_error": ours,
            "peer_grid_cpu_s": peer_grid_cpu, "peer_grid_hours": peer_grid_cpu / 3600,
            "speedup_cpu": peer_grid_cpu / lib_grid_cpu,
            "library_one_process_grid_cpu_s": lib_one_cpu,
            "speedup_cpu_one_process": peer_grid_cpu / lib_one_cpu,
            "floor_grid_cpu_s": floor_cpu, "speedup_cpu_at_floor": peer_grid_cpu / floor_cpu}


# ---------------------------------------------------------------------------------------------
# (f) the Gram method: time per run, independent of d

def bench_f(quick: bool) -> dict:
    from simclr_lib import fast
    seeds = list(range(10))
    out = {}
    for d in (100, 10 ** 4, 10 ** 6):
        data, cfg = fast.kou_configs(d)
        data = sl.config.replace(data, snr=3.0 / math.sqrt(d))
        row = {}
        methods = ("gram", "coefficient") if d <= 10 ** 4 else ("gram",)
        for method in methods:
            c = sl.config.replace(cfg, method=method)
            secs = best_time(lambda: sl.run_supervised(seeds, data, c), reps=1 if quick else 3)
            row[method + "_s_per_run"] = secs / len(seeds)
        out[str(d)] = row
    per = [out[k]["gram_s_per_run"] for k in out]
    out["gram_max_over_min"] = max(per) / min(per)
    out["note"] = ("n = 20, m = 10, ReLU, 100 steps, n_test = 1000, 10 runs per batch; "
                   "coefficient space at d = 1e6 would hold 1000 x 1e6 test noise (4 GB)")
    return out


# ---------------------------------------------------------------------------------------------
# (g) each chapter's peak memory: the chapter as a script (jupytext), in a fresh subprocess

_CHAPTER = """import os, runpy, sys
os.environ.setdefault("MPLBACKEND", "Agg")
os.chdir(sys.argv[2])
runpy.run_path(sys.argv[1], run_name="__main__")
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("VmHWM_kB", hwm)
"""


def bench_g(only: str | None = None) -> dict:
    import tempfile
    import jupytext
    out = {}
    pages = sorted(p for p in [*ROOT.glob("book/*.md"), *ROOT.glob("book/appendix/*.md")]
                   if "\nkernelspec:" in p.read_text() and (only is None or p.stem == only))
    with tempfile.TemporaryDirectory() as tmp:
        for page in pages:
            script = Path(tmp) / (page.stem + ".py")
            jupytext.write(jupytext.read(page), script, fmt="py:percent")
            t = time.perf_counter()
            res = subprocess.run([sys.executable, "-c", _CHAPTER, str(script), str(page.parent)],
                                 cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            name = page.relative_to(ROOT).as_posix()
            if res.returncode != 0 or "VmHWM_kB" not in res.stdout:
                out[name] = {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
                continue
            kb = int(res.stdout.split("VmHWM_kB")[-1].split()[0])
            out[name] = {"peak_rss_mb": kb / 1024, "seconds": time.perf_counter() - t}
    return out


# ---------------------------------------------------------------------------------------------

# the largest sweep a chapter runs through the library (book/intro.md): n0 = 16 / 0.1^2 = 1600
LARGEST = ["simclr", "--ns", "1", "2", "4", "8", "16", "--snrs", "0.1", "0.15", "0.2", "0.3", "0.4",
           "--seeds", "0:3", "--n-test", "500", "--n0-snr2", "16", "--no-cache", "--no-progress",
           "--threads", "1"]


_CHILD = """import sys
from simclr_lib.cli import main
main(sys.argv[1:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("VmHWM_kB", hwm)
"""


def bench_memory(out: Path) -> dict:
    """Peak RSS of a chapter-size sweep run through the CLI in a child process: the child's own
    ``VmHWM`` (ru_maxrss of a child would include this process's size before the exec)."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _CHILD, *LARGEST, "--out", str(out)], cwd=ROOT,
                         check=True, capture_output=True, text=True)
    kb = int(res.stdout.split("VmHWM_kB")[-1].split()[0])
    return {"command": "python -m simclr_lib " + " ".join(LARGEST), "seconds": time.perf_counter() - t,
            "peak_rss_mb": kb / 1024, "log": res.stderr.strip().splitlines()[-1]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a busy shared machine more threads are slower)")
    ap.add_argument("--quick", action="store_true", help="fewer steps and sizes (a smoke run)")
    ap.add_argument("--memory", action="store_true", help="also measure the largest sweep's peak RSS")
    ap.add_argument("--chapters", action="store_true",
                    help="also execute every chapter in a subprocess for its peak memory")
    ap.add_argument("--build", type=Path, default=ROOT / "_build", help="the book's build directory")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    ap.add_argument("--show", action="store_true",
                    help="measure nothing: print the table of --out and write it next to it (.txt)")
    ap.add_argument("--row-e", type=Path, help=argparse.SUPPRESS)   # bench_e's fresh process
    a = ap.parse_args(argv)
    if a.row_e:
        torch.set_num_threads(a.threads)
        a.row_e.write_text(json.dumps(_bench_e(a.quick)))
        return None
    if a.show:
        res = json.loads(a.out.read_text())
        res["summary"] = summary(res)             # recomputed: the rule may be newer than the run
        a.out.write_text(json.dumps(res, indent=1))
        write_table(res, a.out.with_suffix(".txt"))
        return res
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    peak32 = matmul_flops(torch.float32)
    res = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "matmul_gflops_float32": peak32 / 1e9},
           "quick": a.quick}
    res["a_sweep_vs_naive"] = bench_a(a.quick)
    res["b_flops"] = bench_b(a.quick)
    res["c_coefficient_vs_weight"] = bench_c(a.quick)
    res["d_book"] = bench_d(a.build)
    res["e_kou_heatmap"] = bench_e(a.quick)
    res["f_gram"] = bench_f(a.quick)
    if a.memory:
        res["memory"] = bench_memory(a.out.with_name("largest_sweep.npz"))
    if a.chapters:
        res["g_chapter_memory"] = bench_g()
    peak_after = matmul_flops(torch.float32)
    res["machine"]["matmul_gflops_float32_after"] = peak_after / 1e9
    res["seconds"] = time.perf_counter() - t0
    res["summary"] = summary(res)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    write_table(res, a.out.with_suffix(".txt"))
    print(f"\nwritten to {a.out} ({res['seconds']:.0f} s)")
    return res


def summary(res: dict) -> dict:
    """Each row's headline figure and whether it meets its target (``TARGETS``; None: the
    row was not measured)."""
    A, B, C, D = (res[k] for k in ("a_sweep_vs_naive", "b_flops", "c_coefficient_vs_weight", "d_book"))
    # (b)'s target holds for every training step measured (pre-training and weight-space GD),
    # so its verdict is the lowest of them; the bare product is the ceiling, not a step
    b_low = min(v["efficiency"] for k, v in B.items() if not k.startswith("bare"))
    d_ratio = D["total_minutes"] if D["found"] else float("nan")
    E, Fg = res["e_kou_heatmap"], res["f_gram"]
    G = res.get("g_chapter_memory", {})
    g_peak = max((v.get("peak_rss_mb", math.inf) for v in G.values()), default=float("nan"))
    meets = {"a": A["speedup"] >= TARGETS["a"], "b": b_low >= TARGETS["b"],
             "c": C["step_speedup"] >= TARGETS["c"],
             "d": D["found"] and not D["notebooks_without_record"] and d_ratio <= TARGETS["d_minutes"],
             "e": E["speedup_cpu"] >= TARGETS["e"],
             "e_wall": E["library_wall_s"] <= TARGETS["e_wall_s"],
             "f": Fg["gram_max_over_min"] <= TARGETS["f_flat"],
             "g": g_peak < TARGETS["g_mb"] if G else None}
    return {
        "a_speedup": A["speedup"], "b_efficiency_lowest": b_low,
        "c_step_speedup": C["step_speedup"], "d_book_minutes": d_ratio,
        "e_speedup_cpu": E["speedup_cpu"], "e_library_wall_s": E["library_wall_s"],
        "f_gram_max_over_min": Fg["gram_max_over_min"], "g_max_chapter_mb": g_peak,
        "meets": {k: None if v is None else bool(v) for k, v in meets.items()}}


def write_table(res: dict, path: Path) -> None:
    """Print the table and keep a copy (the book's reproducibility appendix shows it)."""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(res)
    path.write_text(buf.getvalue())
    print(buf.getvalue(), end="")


def print_table(res: dict) -> None:
    m, A, B, C, D = (res[k] for k in ("machine", "a_sweep_vs_naive", "b_flops", "c_coefficient_vs_weight",
                                      "d_book"))
    print(f"torch {m['torch']}, {m['threads']} thread(s); 2048^2 float32 matmul: "
          f"{m['matmul_gflops_float32']:.1f} GFLOP/s (after: {m['matmul_gflops_float32_after']:.1f})")
    print(f"{'measure':58s} {'value':>10s} {'target':>8s}")
    print("-" * 78)
    g = A["grid"]
    print(f"(a) batched sweep vs naive loop".ljust(58) + f" {A['speedup']:9.1f}x {TARGETS['a']:7.0f}x")
    print(f"    {len(g['ns'])}x{len(g['snrs'])} cells x {len(g['seeds'])} seeds, {g['steps']} steps")
    print(f"    batched {A['batched_s']:.1f} s ({A['batched_chunks']} program), naive {A['naive_s']:.1f} s; "
          f"mean test error {A['batched_mean_error']:.3f} vs {A['naive_mean_error']:.3f}")
    for k, r in B.items():
        bare = k.startswith("bare")
        print(f"(b) {k}".ljust(58) + f" {r['efficiency']:10.2f} {'(ceiling)' if bare else TARGETS['b']:>8}")
        print(f"    {r['gflops']:.1f} GFLOP/s of {r['matmul_gflops']:.1f} (matmul)"
              + ("" if bare else f", {1e3 * r['s_per_step']:.1f} ms/step"))
    print(f"(c) coefficient vs weight space, per step".ljust(58) + f" {C['step_speedup']:9.1f}x "
          f"{TARGETS['c']:7.0f}x")
    print(f"    weight {1e3 * C['weight']['step_s']:.1f} ms/step, coefficient "
          f"{1e3 * C['coefficient']['step_s']:.2f} ms/step;\n    whole 2000-step fit "
          f"{C['fit2000_weight_s']:.1f} s vs {C['fit2000_coefficient_s']:.1f} s "
          f"({C['fit2000_speedup']:.1f}x)")
    if D["found"]:
        print(f"(d) book execution, minutes".ljust(58) + f" {D['total_minutes']:10.2f} {TARGETS['d_minutes']:8.1f}")
        for k, v in D["chapters"].items():
            print(f"    {k:50s} {v:7.1f} s")
        if D["notebooks_without_record"]:
            print(f"    not in the cache (not executed by that build): {', '.join(D['notebooks_without_record'])}")
    else:
        print(f"(d) book execution: {D['note']}")
    E, Fg = res.get("e_kou_heatmap"), res.get("f_gram")
    if E is None or Fg is None:
        print("(e), (f): not in this report (older benchmark)")
        return
    print(f"(e) Kou et al. heatmap, library vs peer loop (CPU time)".ljust(58)
          + f" {E['speedup_cpu']:9.0f}x {TARGETS['e']:7.0f}x")
    print(f"    library: {E['grid']['ds']} x {E['grid']['mu_norms']} x 10 runs, "
          f"{E['library_wall_s']:.1f} s wall on 2 processes (target {TARGETS['e_wall_s']:.0f} s),\n"
          f"    {E['library_cpu_s']:.1f} s CPU; load average {E['load_avg']:.1f}")
    print(f"    for reference, not the target's measure: the peer's loop (one thread)\n"
          f"    over the library's wall time on 2 cores: "
          f"{E['peer_grid_cpu_s'] / E['library_wall_s']:.0f}x")
    if "kernel_compile_s" in E:
        print(f"    compiled passes (kernels.py): {E['kernel_compile_s']:.1f} s to compile on a "
              f"machine's first use\n    (then cached), {E['kernel_load_cpu_s']:.1f} s CPU to load "
              f"(counted above)")
    if "speedup_cpu_one_process" in E:
        print(f"    the same grid again in one process: "
              f"{E['library_one_process_grid_cpu_s']:.1f} s CPU, {E['speedup_cpu_one_process']:.0f}x")
    if "floor_grid_cpu_s" in E:
        print(f"    cost floor (test-noise draws + matrix products at BLAS speed, no\n"
              f"    elementwise work, one process): {E['floor_grid_cpu_s']:.1f} s CPU, "
              f"so at most {E['speedup_cpu_at_floor']:.0f}x")
        budget = E['peer_grid_cpu_s'] / TARGETS['e']
        print(f"    {TARGETS['e']:.0f}x needs the grid in {budget:.1f} s CPU; the floor and the "
              f"kernel load\n    leave {budget - E['floor_grid_cpu_s'] - E['kernel_load_cpu_s']:.1f}"
              f" s for all elementwise work and set-up")
    print(f"    peer loop: " + ", ".join(f"d={p['d']}: {p['cpu_s']:.1f} s/cell"
                                          for p in E["peer_cells"])
          + f"\n    -> {E['peer_grid_hours']:.1f} h for the grid")
    print(f"    test error at those cells, peer loop vs library:\n    "
          + ", ".join(f"{a:.3f} vs {b:.3f}" if b is not None else f"{a:.3f} vs -"
                      for a, b in zip(E["peer_cell_error"], E["library_cell_error"])))
    print(f"(f) Gram method, per run, max / min over d = 1e2, 1e4, 1e6".ljust(58)
          + f" {Fg['gram_max_over_min']:10.2f} {TARGETS['f_flat']:8.1f}")
    for d in ("100", "10000", "1000000"):
        r = Fg[d]
        print(f"    d = {int(d):>7d}: gram {1e3 * r['gram_s_per_run']:.1f} ms/run"
              + (f", coefficient {1e3 * r['coefficient_s_per_run']:.1f} ms/run"
                 if "coefficient_s_per_run" in r else ""))
    if "g_chapter_memory" in res:
        print(f"(g) peak memory per chapter (MB), target < {TARGETS['g_mb']:.0f}")
        for k, v in res["g_chapter_memory"].items():
            print(f"    {k:50s} " + (f"{v['peak_rss_mb']:7.0f} MB ({v['seconds']:.0f} s)"
                                     if "peak_rss_mb" in v else f"error: {v['error']}"))
    if "summary" in res:
        meets = res["summary"]["meets"]
        groups = {word: [k for k, v in meets.items() if v is want]
                  for word, want in (("met", True), ("short", False), ("not measured", None))}
        print("targets " + "; ".join(f"{word}: {', '.join(ks)}" for word, ks in groups.items() if ks))
    if "memory" in res:
        mm = res["memory"]
        print(f"peak RSS of the largest chapter-size sweep: {mm['peak_rss_mb']:.0f} MB "
              f"({mm['seconds']:.0f} s)\n    {mm['command']}")


if __name__ == "__main__":
    main()
