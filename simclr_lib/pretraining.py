"""SimCLR pre-training of the linear encoder (Section 3.2) by full-batch GD, batched over runs:
:func:`pretrain` stops after a number of steps or at the end of the power-method phase
(Lemma 5.1, Theorem 5.3). The InfoNCE gradient is written by hand through the linear encoder
(``_infonce_grad``), so only ``(R, 2m, 2n)`` products are formed per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import check_choice
from .data import Dataset
from .diagnostics import alignment
from .losses import infonce_logits, nt_xent
from .progress import steps as _steps
from .training import History, _diverged

__all__ = ["pretrain", "PretrainResult"]


@dataclass
class PretrainResult:
    """Pre-trained filters ``W`` (R, 2m, d), the step each run stopped at, and its history."""

    W: torch.Tensor
    stop_step: np.ndarray
    history: History
    data: Dataset | None = field(default=None, repr=False)    # the unlabeled samples
    view: Dataset | None = field(default=None, repr=False)    # their positive views
    W0: torch.Tensor | None = field(default=None, repr=False)  # start (R, 2m, d)
    lr: torch.Tensor | None = None                             # (R,) step size per run


_BLOCK = 3 * 2 ** 18   # logits per block of rows (3 MB in float32): the block stays in cache


def _infonce_grad(HT: torch.Tensor, n: int, tau: float, mask: torch.Tensor, block: int | None = None):
    """The paper's InfoNCE per run (R,), ``max_ij |<h_i, h~_j>|/tau`` (R,) and the gradient with
    respect to ``HT = [h; h~]^T`` (R, k, 2n), by hand: equal to autograd of
    :func:`~simclr_lib.losses.infonce` (tests/test_coefficient_equivalence.py).

    The (R, n, n) logits are never formed whole: ``block`` rows at a time (default: about
    ``_BLOCK`` logits) are computed, turned into ``dL/ds = w_i (softmax_j(s_ij) - [i = j])`` in
    place and multiplied out while still in cache (measured 1.5-2x faster at n0 = 1600).
    Padded columns of ``HT`` are zero.
    """
    R, k, _ = HT.shape
    hT, htT = HT[:, :, :n], HT[:, :, n:]                                # (R, k, n) each
    h_s = (hT / tau).transpose(1, 2)                                   # (R, n, k) h_i / tau
    w = mask.to(HT.dtype) / mask.sum(1, keepdim=True)                  # (R, n) 1/n0 on samples
    padded = not bool(mask.all())
    block = block or max(16, _BLOCK // n)      # rows per block: not R (batch-mates don't matter)
    dH = torch.empty(R, n, k, dtype=HT.dtype, device=HT.device)        # dL/dh
    dHt = torch.zeros(R, k, n, dtype=HT.dtype, device=HT.device)       # (dL/dh~)^T
    L = torch.zeros(R, dtype=HT.dtype, device=HT.device)
    s_max = torch.zeros(R, dtype=HT.dtype, device=HT.device)
    for a in range(0, n, block):
        b = min(a + block, n)
        rows = torch.arange(a, b, device=HT.device)
        s = torch.bmm(h_s[:, a:b], htT)                                # (R, B, n) logits s_ij
        s_max = torch.maximum(s_max, torch.maximum(s.amax((1, 2)), -s.amin((1, 2))))  # pads are 0
        diag = s[:, rows - a, rows]                                    # (R, B) positive pairs
        if padded:
            s.masked_fill_(~mask[:, None, :], float("-inf"))           # padded negatives
        top = s.amax(2, keepdim=True)                                  # (R, B, 1) row maxima
        z = s.sub_(top).exp_().sum(2, keepdim=True)                    # s <- exp(s - top)
        wb = w[:, a:b]
        L += (wb * (top.squeeze(2) + z.squeeze(2).log() - diag)).sum(1)  # logsumexp - s_ii
        P = s.mul_(wb[..., None] / z)                                  # w_i softmax_j(s_ij)
        P[:, rows - a, rows] -= wb                                     # dL/ds
        dH[:, a:b] = torch.bmm(P, htT.transpose(1, 2))                 # dL/dh_i = sum_j P_ij h~_j
        dHt.baddbmm_(hT[:, :, a:b], P)                                 # dL/dh~_j = sum_i P_ij h_i
    return L, s_max, torch.cat([dH.transpose(1, 2), dHt], 2).div_(tau)


def pretrain(W0: torch.Tensor, data: Dataset, view: Dataset, tau: float, lr: torch.Tensor,
             steps: int, loss: str = "infonce", stop: str = "linear_phase",
             logit_stop: float = 1.0, record_every: int = 5, views=None) -> PretrainResult:
    """SimCLR pre-training by full-batch GD on the unlabeled pairs ``(x_i, x~_i)``.

    Parameters
    ----------
    W0 : (R, 2m, d) start. data, view : the samples and their positive views.
    lr : (R,) step size per run. stop : ``"steps"`` runs all ``steps``; ``"linear_phase"``
        freezes a run when its largest ``|<h_i, h~_j>|/tau`` first passes ``logit_stop``,
        the end of the power-method phase of Lemma 5.1.
    views : optional callable returning the next positive views (a Dataset like ``view``),
        called before every step after the first: fresh augmentation each step.
    """
    check_choice("loss", loss, ("infonce", "ntxent"))
    check_choice("stop", stop, ("linear_phase", "steps"))
    mask, n = data.mask, data.n
    # U = [Z; Z~], z = x1 + x2 (R, 2n, d), built in place: the encoder of both views is one product
    U = torch.cat([data.noise, view.noise], 1)
    U[:, :n].addcmul_(data.y_true[..., None], data.mu[:, None, :])
    U[:, n:].addcmul_(view.y_true[..., None], view.mu[:, None, :])
    W = W0.detach().clone(memory_format=torch.contiguous_format)
    R = W.shape[0]
    active = torch.ones(R, dtype=torch.bool, device=W.device)
    stop_step = np.full(R, steps)
    rows: dict[str, list] = {}
    rec_steps = []
    pair = mask[:, :, None] & mask[:, None, :]
    for t in _steps(steps + 1, "pre-training"):
        if views is not None and t > 0:                                # fresh views each step
            v = views()
            U[:, n:] = v.noise
            U[:, n:].addcmul_(v.y_true[..., None], v.mu[:, None, :])
        # The encoder is linear, so dL/dW = (dL/dHH)^T U: autograd (if any) only sees (R, 2n, 2m).
        # Both products keep the 2m filters as rows (W U^T, G U): measured the faster layout.
        HT = torch.bmm(W, U.transpose(1, 2))                           # (R, 2m, 2n) = [h; h~]^T
        if loss == "infonce":
            L, s, dHT = _infonce_grad(HT, n, tau, mask)
        else:
            HH = HT.transpose(1, 2).requires_grad_(True)
            with torch.enable_grad():
                L = nt_xent(HH[:, :n], HH[:, n:], tau, mask)
                (dHH,) = torch.autograd.grad(L.sum(), HH)   # runs are independent: grad of the sum
            L, HH, dHT = L.detach(), HH.detach(), dHH.transpose(1, 2)
            s = infonce_logits(HH[:, :n], HH[:, n:], tau).abs().masked_fill(~pair, 0).amax((1, 2))
        with torch.no_grad():
            if not (torch.isfinite(L).all() and torch.isfinite(s).all()):
                raise _diverged(t, lr.tolist())
            if stop == "linear_phase":
                ended = active & (s > logit_stop)
                stop_step[ended.cpu().numpy()] = t
                active &= ~ended
            last = t == steps or not bool(active.any())
            if t % record_every == 0 or last:
                al = alignment(W, data.mu)
                vals = {"loss": L, "align_mean": al.mean(1), "align_min": al.amin(1), "max_logit": s}
                for k, v in vals.items():
                    rows.setdefault(k, []).append(v.detach().cpu().numpy())
                rec_steps.append(t)
        if last:
            break
        # W <- W - lr_r dL/dW, fused and in place; a frozen run has lr 0
        W.baddbmm_(dHT.mul_(-(lr * active)[:, None, None]), U)
    hist = History(np.array(rec_steps), {k: np.stack(v, 1) for k, v in rows.items()}, "weight")
    return PretrainResult(W, stop_step, hist)
