"""Frozen configurations, named as in the paper (``../shared/PAPER.md``).

``DataConfig`` is Definition 3.1; ``SupervisedConfig`` the CNN of eq. 3.2 trained by
full-batch gradient descent (Theorem 4.3 and fine-tuning, Theorem 5.5);
``PretrainConfig`` SimCLR pre-training of the linear CNN encoder (Section 3.2, Lemma 5.1).
Every field is validated on construction, so a bad value fails where it is written.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ._validate import check_choice, check_float, check_int, check_positive

__all__ = ["DataConfig", "SupervisedConfig", "PretrainConfig", "replace"]


@dataclass(frozen=True)
class DataConfig:
    """The two-patch data model (Definition 3.1)."""

    d: int = 2000                  # patch dimension (over-parameterised: d >> n, n0)
    snr: float = 0.1               # ||mu|| / (sigma_p sqrt(d))
    sigma_p: float = 1.0           # noise standard deviation per coordinate
    p: float = 0.0                 # label-flip probability in [0, 0.5) (Kou et al. 2023)
    signal_patch: str = "random"   # which patch holds y*mu: "random" or "first"

    def __post_init__(self) -> None:
        check_int("d", self.d, low=2)
        check_positive("snr", self.snr)
        check_positive("sigma_p", self.sigma_p)
        check_float("p", self.p, 0.0, 0.5, high_open=True)
        check_choice("signal_patch", self.signal_patch, ("random", "first"))

    def mu_norm(self, snr: float | None = None) -> float:
        """``||mu|| = snr * sigma_p * sqrt(d)``."""
        return (self.snr if snr is None else snr) * self.sigma_p * math.sqrt(self.d)


@dataclass(frozen=True)
class SupervisedConfig:
    """The two-layer CNN of eq. 3.2 and its full-batch GD (direct training or fine-tuning)."""

    n: int = 16                    # labeled training samples
    m: int = 10                    # filters per output sign (2m filters in all)
    q: float = 3.0                 # activation max(0, z)^q; q = 1 is ReLU
    sigma0: float | None = None    # Gaussian init std; None -> 0.5 / sqrt(d)
    lr: float | None = None        # GD step eta; None -> m / (sigma_p^2 d)
    steps: int = 2000              # GD steps
    n_test: int = 1000             # fresh test samples per run
    record_every: int = 100        # diagnostics every k steps (and at the last step)
    method: str = "auto"           # "auto", "weight" or "coefficient" (Definition 5.1)

    def __post_init__(self) -> None:
        check_int("n", self.n)
        check_int("m", self.m)
        check_float("q", self.q, low=1.0)
        if self.sigma0 is not None:
            check_positive("sigma0", self.sigma0)
        if self.lr is not None:
            check_positive("lr", self.lr)
        check_int("steps", self.steps)
        check_int("n_test", self.n_test)
        check_int("record_every", self.record_every)
        check_choice("method", self.method, ("auto", "weight", "coefficient"))

    def init_std(self, data: DataConfig) -> float:
        return 0.5 / math.sqrt(data.d) if self.sigma0 is None else self.sigma0

    def step_size(self, data: DataConfig) -> float:
        return self.m / (data.sigma_p ** 2 * data.d) if self.lr is None else self.lr


@dataclass(frozen=True)
class PretrainConfig:
    """SimCLR pre-training of the linear CNN encoder with 2m filters (Section 3.2)."""

    n0: int = 400                  # unlabeled samples
    m: int = 10                    # the encoder has 2m filters
    tau: float = 1.0               # temperature
    sigma0: float = 1e-6           # small Gaussian init std (Lemma 5.1 needs it small)
    lr: float | None = None        # GD step eta; None -> lam * tau / (2 ||mu||^2)
    lam: float = 0.2               # target top eigenvalue 2 eta ||mu||^2 / tau when lr is None
    steps: int = 300               # maximum GD steps
    stop: str = "linear_phase"     # "linear_phase": stop when max |logit| > logit_stop; "steps"
    logit_stop: float = 1.0        # the end of the power-method phase
    loss: str = "infonce"          # "infonce" (paper, inner product) or "ntxent" (cosine, symmetric)
    aug_rho: float = 0.0           # augmentation noise correlation; 0 is the ideal augmentation
    record_every: int = 5          # diagnostics every k steps
    fresh_views: bool = False      # True: a fresh positive view every step (practice); False:
    #                                views drawn once, a fixed loss L(W) as in the analysis
    lr_from: str = "mu"            # how lr=None is set: "mu" uses the true ||mu|| (an oracle);
    #                                "data" makes lambda_1 of A, computed from the pairs, = lam

    def __post_init__(self) -> None:
        check_int("n0", self.n0, low=2)
        check_int("m", self.m)
        check_positive("tau", self.tau)
        check_positive("sigma0", self.sigma0)
        if self.lr is not None:
            check_positive("lr", self.lr)
        check_positive("lam", self.lam)
        check_int("steps", self.steps)
        check_choice("stop", self.stop, ("linear_phase", "steps"))
        check_positive("logit_stop", self.logit_stop)
        check_choice("loss", self.loss, ("infonce", "ntxent"))
        check_float("aug_rho", self.aug_rho, 0.0, 1.0)
        check_int("record_every", self.record_every)
        if not isinstance(self.fresh_views, bool):
            raise ValueError(f"fresh_views must be True or False, got {self.fresh_views!r}")
        check_choice("lr_from", self.lr_from, ("mu", "data"))
        if self.stop == "linear_phase" and self.loss != "infonce":
            raise ValueError("stop='linear_phase' needs loss='infonce' (cosine logits are bounded); "
                             "use stop='steps' with loss='ntxent'")

    def step_size(self, mu_norm: float) -> float:
        return self.lam * self.tau / (2 * mu_norm ** 2) if self.lr is None else self.lr
