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


def _set(cfg, name: str, value) -> None:
    """Store the checked value (a plain int, float or str, also when given a numpy scalar)."""
    object.__setattr__(cfg, name, value)


@dataclass(frozen=True)
class DataConfig:
    """The two-patch data model (Definition 3.1)."""

    d: int = 2000                  # patch dimension (over-parameterised: d >> n, n0)
    snr: float = 0.1               # ||mu|| / (sigma_p sqrt(d))
    sigma_p: float = 1.0           # noise standard deviation per coordinate
    p: float = 0.0                 # label-flip probability in [0, 0.5) (Kou et al. 2023)
    signal_patch: str = "random"   # which patch holds y*mu: "random" or "first"

    def __post_init__(self) -> None:
        _set(self, "d", check_int("d", self.d, low=2))
        _set(self, "snr", check_float("snr", self.snr, low=0.0))   # 0: no signal (chance)
        _set(self, "sigma_p", check_positive("sigma_p", self.sigma_p))
        _set(self, "p", check_float("p", self.p, 0.0, 0.5, high_open=True))
        _set(self, "signal_patch", check_choice("signal_patch", self.signal_patch, ("random", "first")))

    def mu_norm(self, snr: float | None = None) -> float:
        """``||mu|| = snr * sigma_p * sqrt(d)``."""
        return (self.snr if snr is None else snr) * self.sigma_p * math.sqrt(self.d)


@dataclass(frozen=True)
class SupervisedConfig:
    """The two-layer CNN of eq. 3.2 and its full-batch GD (direct training or fine-tuning)."""

    n: int = 16                    # labeled training samples
    m: int = 10                    # filters per output sign (2m filters in all)
    q: float = 3.0                 # activation max(0, z)^q; q = 1 is ReLU
    sigma0: float | None = None    # Gaussian init std; None -> 0.5 / (sigma_p sqrt(d))
    lr: float | None = None        # GD step eta; None -> m / (sigma_p^2 d)
    steps: int = 2000              # GD steps
    n_test: int = 1000             # fresh test samples per run
    record_every: int = 100        # diagnostics every k steps (and at the last step)
    method: str = "auto"           # "auto", "weight", "coefficient" (Definition 5.1), "gram"

    def __post_init__(self) -> None:
        _set(self, "n", check_int("n", self.n))
        _set(self, "m", check_int("m", self.m))
        _set(self, "q", check_float("q", self.q, low=1.0))
        if self.sigma0 is not None:
            _set(self, "sigma0", check_positive("sigma0", self.sigma0))
        if self.lr is not None:
            _set(self, "lr", check_positive("lr", self.lr))
        _set(self, "steps", check_int("steps", self.steps))
        _set(self, "n_test", check_int("n_test", self.n_test))
        _set(self, "record_every", check_int("record_every", self.record_every))
        _set(self, "method", check_choice("method", self.method, ("auto", "weight", "coefficient", "gram")))

    def init_std(self, data: DataConfig) -> float:
        """The start's std ``sigma0``; by default ``0.5 / (sigma_p sqrt(d))``.

        With ``w0 ~ N(0, sigma0^2 I)`` the start's inner products are
        ``<w0, xi> ~ N(0, sigma0^2 sigma_p^2 (d - 1))`` and ``<w0, mu> ~ N(0, sigma0^2 ||mu||^2)``,
        ``||mu|| = snr sigma_p sqrt(d)``: both are invariant in ``sigma_p`` exactly when
        ``sigma0`` scales as ``1/sigma_p``. With the default step ``m / (sigma_p^2 d)`` a run at
        any ``sigma_p`` is then the run at ``sigma_p = 1`` with the data rescaled (at
        ``sigma_p = 1`` the default is ``0.5 / sqrt(d)``, as before). A fixed ``0.5/sqrt(d)``
        made the output at the start grow as ``sigma_p^q`` (std 3.6 at ``sigma_p = 2``, q = 4),
        which left an error floor in the benign regime (tests/test_science.py).
        """
        if self.sigma0 is not None:
            return self.sigma0
        return 0.5 / (data.sigma_p * math.sqrt(data.d))

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
        _set(self, "n0", check_int("n0", self.n0, low=2))
        _set(self, "m", check_int("m", self.m))
        _set(self, "tau", check_positive("tau", self.tau))
        _set(self, "sigma0", check_positive("sigma0", self.sigma0))
        if self.lr is not None:
            _set(self, "lr", check_positive("lr", self.lr))
        _set(self, "lam", check_positive("lam", self.lam))
        _set(self, "steps", check_int("steps", self.steps))
        _set(self, "stop", check_choice("stop", self.stop, ("linear_phase", "steps")))
        _set(self, "logit_stop", check_positive("logit_stop", self.logit_stop))
        _set(self, "loss", check_choice("loss", self.loss, ("infonce", "ntxent")))
        _set(self, "aug_rho", check_float("aug_rho", self.aug_rho, 0.0, 1.0))
        _set(self, "record_every", check_int("record_every", self.record_every))
        if not isinstance(self.fresh_views, bool):
            raise ValueError(f"fresh_views must be True or False, got {self.fresh_views!r}")
        _set(self, "lr_from", check_choice("lr_from", self.lr_from, ("mu", "data")))
        if self.stop == "linear_phase" and self.loss != "infonce":
            raise ValueError("stop='linear_phase' needs loss='infonce' (cosine logits are bounded); "
                             "use stop='steps' with loss='ntxent'")

    def step_size(self, mu_norm: float) -> float:
        if self.lr is None and mu_norm <= 0:
            raise ValueError("pre-training needs ||mu|| > 0 (snr > 0) for its default step size "
                             "lam * tau / (2 ||mu||^2); set lr or use snr > 0")
        return self.lam * self.tau / (2 * mu_norm ** 2) if self.lr is None else self.lr
