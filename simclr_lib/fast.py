"""Many signal strengths at once: supervised GD (eq. 3.2, Theorem 4.3) where the runs of a
seed differ only in ``||mu||`` (chapter "Kou et al.'s heatmap", ``book/kou.md``).

The runs of one seed at one ``d`` share their training and test samples, their start and
every product that does not involve ``mu``: the noise Gram matrix, the start's projections
on the training and test noise. Only ``<w0, mu> = ||mu|| w0[0]`` and ``||mu||^2`` change
with the cell. :func:`supervised_cells` computes the shared part once per seed, stacks the
signal strengths into one matrix product per step (coefficient space, Definition 5.1) and
evaluates the test set once, after the last step. Its cell ``(j, s)`` is the final step of
``run_supervised(s, replace(data, snr=mu_norms[j] / (sigma_p sqrt(d))), cfg)`` (the same
random streams), to float rounding (``tests/test_fast.py``); ``||mu|| = 0`` is allowed.
With ReLU on the CPU (Kou et al.'s setting) it runs the same algebra as two compiled passes per
step (``kernels.py``, numba) around one numpy product ``K sig`` (``_relu_cells``, about 2x
faster than the tensor version ``_cells``, which other devices and ``q != 1`` use).

:func:`kou_grid` runs Kou et al. (2023)'s 100 x 100 x 10 test-error grid over ``d`` and
``||mu||`` through it, spreading the ``d`` rows over a ``concurrent.futures`` executor.
"""
from __future__ import annotations

import math
from concurrent.futures import Executor
from typing import Sequence

import numpy as np
import torch

from ._validate import check_device, check_dtype, check_float, check_int, check_seeds
from .config import DataConfig, SupervisedConfig
from .data import cell_seed, draw_run, make_dataset, stream
from .losses import logistic, logistic_grad
from .models import init_cnn
from .training import _diverged, _error

__all__ = ["supervised_cells", "kou_grid", "kou_configs", "save_kou_grid", "KOU", "METRICS"]

METRICS = ("train_loss", "test_loss", "test_error")


def _mu_norms(mu_norms: Sequence[float]) -> list[float]:
    if isinstance(mu_norms, (str, bytes)) or not hasattr(mu_norms, "__iter__"):
        raise ValueError(f"mu_norms must be a non-empty sequence of numbers >= 0, got {mu_norms!r}")
    out = [check_float("mu_norm", v, low=0.0) for v in mu_norms]
    if not out:
        raise ValueError("mu_norms must be a non-empty sequence of numbers >= 0")
    return out


def _act(z: torch.Tensor, q: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``sigma(z)`` and ``sigma'(z)`` (for ReLU the step ``z > 0`` written straight into a
    float tensor: measured 6x faster than converting a boolean one)."""
    r = torch.relu(z)
    if q == 1:
        return r, torch.gt(z, 0, out=torch.empty_like(z))
    rq1 = r if q == 2 else r.pow(q - 1)
    return rq1 * r, q * rq1


def _cells(seeds: list[int], mu: list[float], n: int, data: DataConfig,
           cfg: SupervisedConfig, device, dtype) -> dict[str, np.ndarray]:
    """All cells of ``seeds`` (S) x ``mu`` (J) as one batch; returns (J, S) arrays.

    Coefficient-space GD (CoefficientSpace's algebra) with the sign ``j`` of each filter
    folded into its noise coefficients, ``rt = j rho``, laid out (S, 2 (j), J, m, n): then
    ``<w, xi_k> = <w0, xi_k> + rt (j G)`` is one batched product per step and the update of
    ``rt`` is one fused multiply-add with a scalar step.
    """
    S, J, m, q, d = len(seeds), len(mu), cfg.m, cfg.q, data.d
    lr = cfg.step_size(data)
    # the samples do not depend on ||mu|| (make_dataset draws labels, positions and noise
    # only); any positive snr builds them, mu is replaced by the cells' norms below
    train = make_dataset(data, n, seeds, "train", device=device, dtype=dtype)
    test = make_dataset(data, cfg.n_test, seeds, "test", device=device, dtype=dtype)
    W0 = init_cnn([stream(s, "init") for s in seeds], m, d, cfg.init_std(data), dtype, device)
    xi, xt = train.noise, test.noise                                   # (S, n, d), (S, nt, d)
    xi2 = (xi ** 2).sum(2)                                             # (S, n) ||xi_i||^2
    G = torch.bmm(xi, xi.transpose(1, 2)) / xi2[..., None]             # (S, n, n) rows scaled
    G2 = torch.stack([G, -G], 1).view(S * 2, n, n)                     # j G
    p_xi = torch.einsum("sjmd,snd->sjmn", W0, xi)                      # <w0, xi_k>
    P = p_xi[:, :, None].expand(S, 2, J, m, n).reshape(S * 2, J * m, n)
    a = torch.tensor(mu, dtype=dtype, device=device)                   # (J,) ||mu||
    p_mu = W0[:, :, None, :, 0] * a[:, None]                           # (S, 2, J, m) <w0, mu>
    sgn = torch.tensor([1.0, -1.0], dtype=dtype, device=device).view(1, 2, 1, 1)
    y, yt = train.y, train.y_true
    wy = (y / n)[:, None, :]                                           # (S, 1, n) w_i y_i
    pn = torch.stack([yt > 0, yt < 0], 1).to(dtype)                    # (S, 2 (+-), n)
    gamma = torch.zeros(S, 2, J, m, dtype=dtype, device=device)
    rt = torch.zeros(S * 2, J * m, n, dtype=dtype, device=device)     # j rho
    g_scale = (-lr / m) * (a ** 2)[:, None]                            # (J, 1)
    xi2_b = xi2[:, None, None, None, :]                                # (S, 1, 1, 1, n)
    zbuf, dbuf, hbuf = torch.empty_like(rt), torch.empty_like(rt), gamma.new_empty(S, 2, J, n)

    def forward():
        w_mu = torch.addcmul(p_mu, sgn, gamma)                         # (S, 2, J, m)
        a_p, d_p = _act(w_mu, q)                                       # signal y_i = +1
        a_m, d_m = _act(-w_mu, q)                                      # signal y_i = -1
        h = torch.stack([a_p.sum(3), a_m.sum(3)], 3)                   # (S, 2, J, 2 (+-))
        z = torch.baddbmm(P, rt, G2, out=zbuf)                         # <w, xi_k>
        if q == 1:            # ReLU in place in preallocated buffers (no per-step allocation)
            d_no = torch.gt(z, 0, out=dbuf)
            a_no = z.relu_()
        else:
            a_no, d_no = _act(z, q)
        hn = torch.sum(a_no.view(S, 2, J, m, n), 3, out=hbuf)          # (S, 2, J, n)
        f = torch.baddbmm(hn[:, 0] - hn[:, 1], h[:, 0] - h[:, 1], pn).div_(m)
        return y[:, None] * f, (d_p, d_m), d_no                        # margins (S, J, n)

    for t in range(cfg.steps):
        margin, (d_p, d_m), d_no = forward()
        if not bool(torch.isfinite(margin).all()):   # as fit(): never a silent NaN or inf
            raise _diverged(t, lr)
        g = logistic_grad(margin) * wy                                 # (S, J, n) dL/df_i
        g_pm = torch.bmm(g, pn.transpose(1, 2))[:, None, :, None, :]   # (S, 1, J, 1, 2)
        gamma.addcmul_(d_p * g_pm[..., 0] - d_m * g_pm[..., 1], g_scale)
        gx = (g[:, None, :, None, :] * xi2_b)                          # (S, 1, J, 1, n)
        rt.view(S, 2, J, m, n).addcmul_(d_no.view(S, 2, J, m, n), gx, value=-lr / m)
    margin = forward()[0]
    out = {"train_loss": logistic(margin).mean(2).T}                   # (J, S)
    # the test set, once: <w, xi_test> = <w0, xi_test> + rt (j Xi Xt^T / xi2)
    w_mu = torch.addcmul(p_mu, sgn, gamma)
    a_p, a_m = (_act(v, q)[0].sum(3) for v in (w_mu, -w_mu))
    hs = torch.stack([a_p[:, 0] - a_p[:, 1], a_m[:, 0] - a_m[:, 1]], 2)   # (S, J, 2)
    te_loss, te_err = [], []
    for s in range(S):                                                 # one seed at a time
        prod = torch.mm(torch.cat([W0[s].reshape(2 * m, d), xi[s]]), xt[s].T)
        pt, Gt = prod[:2 * m].view(2, 1, m, -1), prod[2 * m:] / xi2[s][:, None]
        zt = torch.bmm(rt.view(S, 2, J * m, n)[s], torch.stack([Gt, -Gt]))
        zt = zt.view(2, J, m, -1).add_(pt)
        hn = _act(zt, q)[0].sum(2)                                     # (2, J, nt)
        pnt = torch.stack([test.y_true[s] > 0, test.y_true[s] < 0]).to(dtype)
        f = torch.addmm(hn[0] - hn[1], hs[s], pnt).div_(m)             # (J, nt)
        tm = test.y[s] * f
        te_loss.append(logistic(tm).mean(1))
        te_err.append(_error(tm).mean(1))
    out["test_loss"] = torch.stack(te_loss, 1)
    out["test_error"] = torch.stack(te_err, 1)
    if not all(bool(torch.isfinite(v).all()) for v in out.values()):
        raise _diverged(cfg.steps, lr)
    return {k: out[k].cpu().double().numpy() for k in METRICS}


def _relu_cells(seeds: list[int], mu: list[float], n: int, data: DataConfig,
                cfg: SupervisedConfig, dtype) -> dict[str, np.ndarray]:
    """:func:`_cells` for ReLU on the CPU: the same draws and algebra, each step's elementwise
    work in two compiled passes (``kernels``), its product ``K sig`` and ``exp`` in numpy."""
    from . import kernels
    S, J, m, d, nt = len(seeds), len(mu), cfg.m, data.d, cfg.n_test
    M2, lr = 2 * m, cfg.step_size(data)
    npd = np.float32 if dtype == torch.float32 else np.float64
    runs = [draw_run(data, n, stream(s, "train"), dtype) for s in seeds]
    yt, y = (torch.stack([r[i] for r in runs]).numpy() for i in (0, 1))      # (S, n)
    xi = torch.stack([r[3] for r in runs])                  # (S, n, d - 1) noise, mu = a e_1
    W0 = init_cnn([stream(s, "init") for s in seeds], m, d, cfg.init_std(data), dtype, "cpu")
    W0 = W0.reshape(S, M2, d)                                # filters (j, r), j = +1 first
    K = torch.bmm(xi, xi.transpose(1, 2)).numpy()            # (S, n, n) <xi_i, xi_k>
    p_xi = torch.bmm(xi, W0[..., 1:].transpose(1, 2)).numpy()   # (S, n, M2) <w0, xi_k>
    p_mu = W0[..., 0].numpy().copy()                         # (S, M2) <w0, e_1>
    a, sg = np.asarray(mu, npd), np.repeat(np.array([1.0, -1.0], npd), m)
    sig, gam = np.zeros((S, n, M2, J), npd), np.zeros((S, M2, J), npd)
    z, f, e, hs = np.empty_like(sig), np.empty((S, n, J), npd), np.empty((S, n, J), npd), \
        np.empty((S, 2, J), npd)
    flat = (S, n, M2 * J)
    with np.errstate(over="ignore"):                         # exp(f) = inf: l'(f) = 0, exact
        for t in range(cfg.steps + 1):
            np.matmul(K, sig.reshape(flat), out=z.reshape(flat))     # <w - w0, xi_k>
            if not kernels.relu_forward(z, p_xi, gam, p_mu, a, sg, y, yt, f, hs):
                raise _diverged(t, lr)
            if t < cfg.steps:
                kernels.relu_update(z, p_xi, sig, gam, p_mu, a, sg, y, yt,
                                    np.exp(f, out=e), npd(lr))
    out = {"train_loss": logistic(torch.from_numpy(f)).mean(1).T.double().numpy(),
           "test_loss": np.empty((J, S)), "test_error": np.empty((J, S))}
    zt, tm = np.empty((nt, M2 * J), npd), np.empty((nt, J), npd)   # one seed's test products
    for i, s in enumerate(seeds):                            # the test set, once, a seed at a time
        yt_t, y_t, _, xt = draw_run(data, nt, stream(s, "test"), dtype)
        prod = np.matmul(xt.numpy(), torch.cat([xi[i], W0[i, :, 1:]]).numpy().T)  # (nt, n + M2)
        np.matmul(prod[:, :n], sig[i].reshape(n, M2 * J), out=zt)
        err = np.zeros(J, npd)
        kernels.relu_test_margins(zt.reshape(nt, M2, J), prod[:, n:], hs[i], sg, y_t.numpy(),
                                  yt_t.numpy(), tm, err)
        out["test_error"][:, i] = err / nt
        out["test_loss"][:, i] = logistic(torch.from_numpy(tm)).sum(0, dtype=torch.float64) / nt
    if not all(np.isfinite(v).all() for v in out.values()):
        raise _diverged(cfg.steps, lr)
    return out


def _warm_kernels() -> None:
    """Load (the first time: compile) the float32 passes through a tiny run, so that workers an
    executor forks afterwards inherit them instead of each loading them again (~0.7 s)."""
    data, cfg = kou_configs(3, n_test=2, steps=1)
    _relu_cells([0], [0.0], 2, data, cfg, torch.float32)


def supervised_cells(seeds: int | Sequence[int], mu_norms: Sequence[float], n: int,
                     data: DataConfig = DataConfig(), cfg: SupervisedConfig = SupervisedConfig(),
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                     batch: int = 10) -> dict[str, np.ndarray]:
    """Final train loss, test loss and test error of supervised GD at every
    ``(||mu||, seed)``: arrays (len(mu_norms), len(seeds)).

    Cell ``(j, s)`` is ``run_supervised(s, replace(data, snr=mu_norms[j] / (sigma_p sqrt(d))),
    replace(cfg, n=n))``'s last recorded values (``data.snr`` is not used; ``mu = ||mu|| e_1``,
    ``||mu|| = 0`` allowed). ``batch`` seeds are trained together. ReLU (``cfg.q == 1``) on
    the CPU runs the compiled passes of ``kernels.py`` (compiled on first use, then cached in
    ``simclr_lib/__pycache__``); otherwise the tensor version. Chapter ``book/kou.md``.
    """
    seeds = check_seeds(seeds)
    mu = _mu_norms(mu_norms)
    n = check_int("n", n)
    batch = check_int("batch", batch)
    if not isinstance(data, DataConfig):
        raise ValueError(f"data must be a DataConfig, got {type(data).__name__}")
    if not isinstance(cfg, SupervisedConfig):
        raise ValueError(f"cfg must be a SupervisedConfig, got {type(cfg).__name__}")
    device, dtype = check_device(device), check_dtype(dtype)
    compiled = device.type == "cpu" and cfg.q == 1           # the passes of kernels.py
    parts = [_relu_cells(part, mu, n, data, cfg, dtype) if compiled
             else _cells(part, mu, n, data, cfg, device, dtype)
             for part in (seeds[a:a + batch] for a in range(0, len(seeds), batch))]
    return {k: np.concatenate([p[k] for p in parts], 1) for k in METRICS}


# ---------------------------------------------------------------------------------------------
# Kou et al. (2023), Figure 1: test error over d x ||mu||, mapped to eq. 3.2's CNN (book/kou.md)

KOU = {"n": 20, "n_test": 1000, "m": 10, "q": 1.0, "p": 0.1, "lr": 2.5, "steps": 100,
       "ds": [100 + 10 * t for t in range(100)], "mu_norms": [0.1 * s for s in range(100)],
       "seeds": 10}
"""The peer's grid in our parameterisation: their step 0.1 is ``lr = 0.1 m^2 / 4``, their
uniform start of std ``1/sqrt(3d)`` is ``sigma0 = (m/2)/sqrt(3d)`` (set per d in
:func:`kou_configs`)."""


def kou_configs(d: int, n_test: int = KOU["n_test"], steps: int = KOU["steps"]
                ) -> tuple[DataConfig, SupervisedConfig]:
    """The data model and GD of Kou et al.'s grid at dimension ``d``."""
    m = KOU["m"]
    data = DataConfig(d=d, snr=1.0, sigma_p=1.0, p=KOU["p"])
    cfg = SupervisedConfig(n=KOU["n"], m=m, q=KOU["q"], sigma0=(m / 2) / math.sqrt(3 * d),
                           lr=KOU["lr"], steps=steps, n_test=n_test, record_every=steps)
    return data, cfg


def _kou_rows(ds: list[int], rows: list[int], mu: list[float], seeds: list[int], n_test: int,
              steps: int) -> dict[str, np.ndarray]:
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(1)              # one thread per worker: the workers share the cores
    out = {k: np.empty((len(ds), len(mu), len(seeds))) for k in METRICS}
    with threadpool_limits(1, user_api="blas"):              # numpy's BLAS too
        for i, (d, t) in enumerate(zip(ds, rows)):
            data, cfg = kou_configs(d, n_test, steps)
            res = supervised_cells([cell_seed(s, t) for s in seeds], mu, cfg.n, data, cfg)
            for k in METRICS:
                out[k][i] = res[k]
    return out


def kou_grid(ds: Sequence[int] = KOU["ds"], mu_norms: Sequence[float] = KOU["mu_norms"],
             seeds: int | Sequence[int] = range(KOU["seeds"]), n_test: int = KOU["n_test"],
             steps: int = KOU["steps"], executor: Executor | None = None,
             chunks: int = 2) -> dict[str, np.ndarray]:
    """Kou et al.'s grid: metrics (len(ds), len(mu_norms), len(seeds)) plus ``"ds"``,
    ``"mu_norms"``. Row ``t`` (dimension ``ds[t]``) runs seed ``s`` as ``cell_seed(s, t)``:
    rows are independent draws, the signal strengths of a row share their samples and start
    (paired). With ``executor`` the rows are cut into ``chunks`` interleaved parts that run
    on it (e.g. ``ProcessPoolExecutor(2)``); the result does not depend on the split.
    """
    ds = [check_int("d", d, low=2) for d in ds]
    mu = _mu_norms(mu_norms)
    seeds = check_seeds(seeds)
    n_test, steps = check_int("n_test", n_test), check_int("steps", steps)
    chunks = check_int("chunks", chunks)
    if not ds:
        raise ValueError("ds must be a non-empty sequence of integers >= 2")
    parts = [list(range(c, len(ds), chunks)) for c in range(chunks)]
    parts = [p for p in parts if p]
    args = [([ds[t] for t in p], p, mu, seeds, n_test, steps) for p in parts]
    if executor is None:
        results = [_kou_rows(*a) for a in args]
    else:
        _warm_kernels()
        results = [f.result() for f in [executor.submit(_kou_rows, *a) for a in args]]
    out = {k: np.empty((len(ds), len(mu), len(seeds))) for k in METRICS}
    for p, r in zip(parts, results):
        for k in METRICS:
            out[k][p] = r[k]
    out["ds"], out["mu_norms"] = np.array(ds), np.array(mu)
    return out


def save_kou_grid(path: str, workers: int = 2) -> dict:
    """Run :func:`kou_grid` at its defaults on ``workers`` processes and save it (``.npz``)
    with its configuration, wall time and the workers' CPU time (on a machine shared with
    other work the wall time overstates the cost); ``python -m simclr_lib.fast PATH [WORKERS]``."""
    import json
    import multiprocessing as mp
    import os
    import resource
    import time
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path
    workers = check_int("workers", workers)
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)          # checked before the compute
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"path: cannot write to {str(path.parent)!r}")

    def cpu() -> float:                      # this process's and its finished workers' CPU time
        return sum(sum(resource.getrusage(who)[:2])
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    t, c = time.perf_counter(), cpu()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        res = kou_grid(executor=ex, chunks=workers)
    secs, cpu_s = time.perf_counter() - t, cpu() - c
    config = {**KOU, "seeds": list(range(KOU["seeds"])), "seed_rule": "cell_seed(s, t)",
              "sigma0": "(m/2)/sqrt(3 d)", "sigma_p": 1.0, "dtype": "float32",
              "command": f"python -m simclr_lib.fast {path} {workers}",
              "workers": workers, "wall_s": secs,
              "cpu_s": cpu_s, "load_avg": os.getloadavg()[0], "torch": torch.__version__}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:                              # atomic: never half a file
        np.savez_compressed(fh, config=json.dumps(config),
                            **{k: res[k].astype(np.float32) for k in METRICS},
                            ds=res["ds"], mu_norms=res["mu_norms"])
    os.replace(tmp, path)
    return config


if __name__ == "__main__":   # pragma: no cover - exercised by the command in book/kou.md
    import sys
    print(save_kou_grid(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2))
