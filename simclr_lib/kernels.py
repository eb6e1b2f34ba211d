"""Compiled (numba) loops of :func:`simclr_lib.fast.supervised_cells` for ReLU on the CPU.

Supervised GD in coefficient space (Definition 5.1) for every signal strength ``||mu|| = a_j``
of a seed at once, as in ``fast._cells``, with each step's elementwise work fused into two
passes over the cells instead of a dozen tensor operations (measured in ``bench/``, row e).
The one matrix product of a step, ``z = K sig`` (``K`` the noise Gram matrix), and the
exponentials run in numpy between the passes (vectorised BLAS and SIMD ``exp``).

Layout, for ``S`` seeds, ``n`` samples, ``M2 = 2m`` filters (``j = +1`` then ``j = -1``,
sign ``sg``) and ``J`` signal strengths:

- ``sig`` (S, n, M2, J): noise coefficients over the patch norms, ``rho_{j,r,i} / ||xi_i||^2``,
  so that ``<w_{j,r}, xi_k> = p_xi[k, r] + sum_i K[k, i] sig[i, r]``;
- ``gam`` (S, M2, J): ``j gamma_{j,r}``, so that ``<w_{j,r}, mu> = a p_mu[r] + gam[r]``
  (the start's ``<w0, mu> = a w0[0]`` with ``mu = a e_1``).

Loops run over the last axis (``J``), which the compiler vectorises. Importing this module
imports numba; ``fast`` imports it on first use.
"""
from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["relu_forward", "relu_update", "relu_test_margins"]

_JIT = {"cache": True, "fastmath": {"contract"}}       # fused multiply-add, IEEE otherwise


@nb.njit(**_JIT)
def relu_forward(z, p_xi, gam, p_mu, a, sg, y, yt, f, hs):
    """Margins ``f`` (S, n, J) ``= y_i f(W, x_i)`` and the signal sums ``hs`` (S, 2, J)
    ``= sum_r j relu(+-<w_{j,r}, mu>)``, given ``z = K sig``; False if a margin is not finite."""
    S, n, M2, J = z.shape
    zero, m = z.dtype.type(0.0), z.dtype.type(M2 // 2)   # constants in the arrays' dtype
    chk = np.zeros_like(a)                                # nan where a margin is not finite
    for s in range(S):
        hp, hm = hs[s, 0], hs[s, 1]
        hp[:] = zero
        hm[:] = zero
        for r in range(M2):
            gr, pm, w = gam[s, r], p_mu[s, r], sg[r]
            for j in range(J):
                v = pm * a[j] + gr[j]
                hp[j] += w * (v if v > zero else zero)
                hm[j] += w * (-v if v < zero else zero)
        for k in range(n):
            fr = f[s, k]
            fr[:] = hp if yt[s, k] > 0 else hm           # the signal patch is yt_k mu
            for r in range(M2):
                zr, p, w = z[s, k, r], p_xi[s, k, r], sg[r]
                for j in range(J):
                    v = zr[j] + p
                    fr[j] += w * (v if v > zero else zero)
            yk = y[s, k] / m
            for j in range(J):
                fr[j] *= yk
                chk[j] += fr[j] * zero
    return bool(np.all(chk == zero))


@nb.njit(**_JIT)
def relu_update(z, p_xi, sig, gam, p_mu, a, sg, y, yt, e, lr):
    """One GD step of ``sig`` and ``gam`` in place, from ``z = K sig`` and ``e = exp(f)``
    (overwritten with ``dL/df_i = l'(f_i) y_i / n``)."""
    S, n, M2, J = z.shape
    zero, one = z.dtype.type(0.0), z.dtype.type(1.0)
    c, nf = -lr / z.dtype.type(M2 // 2), z.dtype.type(n)
    G = np.empty_like(e[0, :2])                           # (2, J) sums of dL/df over yt = +-1
    for s in range(S):
        G[:] = zero
        for k in range(n):
            g = e[s, k]
            yk = -y[s, k] / nf
            for j in range(J):
                g[j] = yk / (one + g[j])                    # l'(f) = -1 / (1 + e^f)
            Gb = G[0] if yt[s, k] > 0 else G[1]
            for j in range(J):
                Gb[j] += g[j]
            for r in range(M2):
                cs, zr, sr, p = c * sg[r], z[s, k, r], sig[s, k, r], p_xi[s, k, r]
                for j in range(J):
                    sr[j] += cs * g[j] if zr[j] + p > zero else zero
        for r in range(M2):
            cs, gr, pm = c * sg[r], gam[s, r], p_mu[s, r]
            for j in range(J):
                v = pm * a[j] + gr[j]
                u = G[0, j] if v > zero else zero         # relu'(<w, mu>) on yt = +1 ...
                u = u - G[1, j] if v < zero else u        # ... and relu'(-<w, mu>) on yt = -1
                gr[j] += cs * a[j] * a[j] * u


@nb.njit(**_JIT)
def relu_test_margins(zt, pt, hs, sg, y, yt, out, err):
    """Test margins ``out`` (B, J) of B test samples of one seed, from ``zt`` (B, M2, J)
    ``= sum_i <xi_i, xi_t> sig[i]``, ``pt`` (B, M2) ``= <w0, xi_t>`` and ``hs`` (2, J); adds
    each cell's errors (a margin < 0 counts 1, a tie 1/2) to ``err`` (J,)."""
    B, M2, J = zt.shape
    zero, half, one = zt.dtype.type(0.0), zt.dtype.type(0.5), zt.dtype.type(1.0)
    m = zt.dtype.type(M2 // 2)
    for t in range(B):
        h = out[t]
        h[:] = hs[0] if yt[t] > 0 else hs[1]
        for r in range(M2):
            zr, p, w = zt[t, r], pt[t, r], sg[r]
            for j in range(J):
                v = zr[j] + p
                h[j] += w * (v if v > zero else zero)
        yk = y[t] / m
        for j in range(J):
            h[j] *= yk
            err[j] += one if h[j] < zero else (half if h[j] == zero else zero)
