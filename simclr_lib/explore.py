"""Interactive explorers for chapter 8 (:ref:`explore`): small live simulations behind sliders.

Each explorer is a pair:

* a *figure function* that takes the parameter values (``snr, n, n0, q, tau, steps``), runs a
  small batched simulation with the library and returns a :class:`matplotlib.figure.Figure`;
* a *UI builder* that wraps it in an :class:`ipywidgets.interactive` with one slider per
  parameter and a "Run" button (each run takes seconds, so sliders do not rerun it on
  every move).

The figure functions validate their arguments (``ValueError`` naming the parameter and its
range) and are deterministic: the same values give the same figure. Their defaults
(:data:`PRETRAIN_DEFAULTS`, :data:`FINETUNE_DEFAULTS`) are the sliders' initial values, so the
static book can show the default state of every explorer beside its widget.
"""
from __future__ import annotations

import inspect
import io
from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure

from ._validate import check_float
from .config import DataConfig, PretrainConfig, SupervisedConfig
from .pipelines import run_pretrain, run_simclr_finetune, run_supervised
from .plotting import COLORS

__all__ = ["PRETRAIN_DEFAULTS", "FINETUNE_DEFAULTS", "RANGES", "pretraining_figure",
           "finetuning_figure", "pretraining_explorer", "finetuning_explorer", "explorer",
           "describe_defaults"]

#: Slider ranges ``(low, high)`` of every parameter: small enough that a run takes seconds.
RANGES: dict[str, tuple[float, float]] = {
    "snr": (0.02, 1.0),      # ||mu|| / (sigma_p sqrt(d))
    "n": (2, 64),            # labeled samples
    "n0": (10, 1000),        # unlabeled samples
    "q": (1.0, 4.0),         # activation max(0, z)^q
    "tau": (0.1, 10.0),      # temperature
    "steps": (10, 2000),     # GD steps (pre-training or fine-tuning)
}

#: Default state of the pre-training explorer (the sliders' initial values).
PRETRAIN_DEFAULTS: dict[str, Any] = {"snr": 0.2, "n0": 100, "tau": 1.0, "steps": 80}
#: Default state of the fine-tuning explorer (the sliders' initial values).
FINETUNE_DEFAULTS: dict[str, Any] = {"snr": 0.2, "n": 8, "n0": 100, "q": 3.0, "tau": 1.0,
                                     "steps": 600}

_D = 1000          # patch dimension of the explorers' data (the book's chapters use 2000)
_SEEDS = [0, 1, 2]  # runs per curve: the mean and the spread over three seeds
_N_TEST = 300      # test samples per run


def describe_defaults() -> str:
    """One line per explorer: its default parameter values (chapter 8 prints it)."""
    return "\n".join(f"{name} defaults: " + ", ".join(f"{k} = {v}" for k, v in d.items())
                     for name, d in (("pre-training", PRETRAIN_DEFAULTS),
                                     ("fine-tuning", FINETUNE_DEFAULTS)))


def _check(name: str, value: Any, integer: bool) -> Any:
    low, high = RANGES[name]
    if integer:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{int(low)}, {int(high)}], got {value!r}")
        return value
    return check_float(name, value, low, high)


def _band(ax, steps: np.ndarray, values: np.ndarray, color: str, label: str) -> None:
    """Mean over runs (R, T) as a line, min-max over runs as a band."""
    ax.plot(steps, values.mean(0), color=color, label=label)
    ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.2, linewidth=0)


def pretraining_figure(snr: float = PRETRAIN_DEFAULTS["snr"], n0: int = PRETRAIN_DEFAULTS["n0"],
                       tau: float = PRETRAIN_DEFAULTS["tau"],
                       steps: int = PRETRAIN_DEFAULTS["steps"]) -> Figure:
    """SimCLR pre-training run for ``steps`` GD steps: alignment with mu and the loss.

    Three seeds of :func:`~simclr_lib.pipelines.run_pretrain` with ``d = 1000``, ``m = 10``,
    ``sigma0 = 1e-6`` and ``stop="steps"`` (no early stop, so the phase after the power
    method is visible). Left: mean ``|cos(w_r, mu)|`` (Theorem 5.3); right: the InfoNCE loss.
    A dotted line marks the step at which the largest ``|logit|`` first passes 1, the end of
    the power-method phase (Lemma 5.1). Chapter 8.

    Parameters
    ----------
    snr
        Signal-to-noise ratio, in ``[0.02, 1]``.
    n0
        Unlabeled samples, an integer in ``[10, 1000]``.
    tau
        Temperature, in ``[0.1, 10]``.
    steps
        Pre-training GD steps, an integer in ``[10, 2000]``.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not registered with pyplot (display it, or save it).
    """
    snr, n0 = _check("snr", snr, False), _check("n0", n0, True)
    tau, steps = _check("tau", tau, False), _check("steps", steps, True)
    data = DataConfig(d=_D, snr=snr)
    pre = PretrainConfig(n0=n0, tau=tau, steps=steps, stop="steps",
                         record_every=max(1, steps // 60))
    hist = run_pretrain(_SEEDS, data, pre).history
    t = hist.steps
    passed = (hist["max_logit"] > 1.0).any(0)
    end = t[np.argmax(hist["max_logit"].max(0) > 1.0)] if passed.any() else None

    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax_a, ax_l = fig.subplots(1, 2)
    _band(ax_a, t, hist["align_mean"], COLORS["signal"], r"mean $|\cos(w_r, \mu)|$")
    _band(ax_a, t, hist["align_min"], COLORS["noise"], r"min $|\cos(w_r, \mu)|$")
    ax_a.set(xlabel="pre-training step", ylabel="alignment with $\\mu$", ylim=(0, 1.02))
    _band(ax_l, t, hist["loss"], COLORS["simclr"], "InfoNCE loss")
    ax_l.axhline(np.log(n0), color=COLORS["theory"], lw=0.8, ls="--", label=r"$\log n_0$")
    ax_l.set(xlabel="pre-training step", ylabel="loss")
    for ax in (ax_a, ax_l):
        if end is not None:
            ax.axvline(end, color=COLORS["theory"], lw=0.8, ls=":", label="max |logit| > 1")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"pre-training: SNR = {snr:g}, $n_0$ = {n0}, $n_0$ SNR$^2$ = {n0 * snr ** 2:.3g}, "
                 f"$\\tau$ = {tau:g}", fontsize=10)
    return fig


def finetuning_figure(snr: float = FINETUNE_DEFAULTS["snr"], n: int = FINETUNE_DEFAULTS["n"],
                      n0: int = FINETUNE_DEFAULTS["n0"], q: float = FINETUNE_DEFAULTS["q"],
                      tau: float = FINETUNE_DEFAULTS["tau"],
                      steps: int = FINETUNE_DEFAULTS["steps"]) -> Figure:
    """Test error during GD for SimCLR + fine-tuning and for direct supervised training.

    Three seeds, ``d = 1000``, ``m = 10``: :func:`~simclr_lib.pipelines.run_simclr_finetune`
    (pre-training on ``n0`` unlabeled samples, stopped at the end of the power-method phase)
    and :func:`~simclr_lib.pipelines.run_supervised` on the same ``n`` labels (Theorems 4.2
    and 4.3). Left: test error against the GD step; right: training loss. Chapter 8.

    Parameters
    ----------
    snr
        Signal-to-noise ratio, in ``[0.02, 1]``.
    n
        Labeled samples, an integer in ``[2, 64]``.
    n0
        Unlabeled samples for pre-training, an integer in ``[10, 1000]``.
    q
        Activation exponent of ``max(0, z)^q``, in ``[1, 4]``.
    tau
        Pre-training temperature, in ``[0.1, 10]``.
    steps
        Fine-tuning and direct-training GD steps, an integer in ``[10, 2000]``.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not registered with pyplot.
    """
    snr, n = _check("snr", snr, False), _check("n", n, True)
    n0, q = _check("n0", n0, True), _check("q", q, False)
    tau, steps = _check("tau", tau, False), _check("steps", steps, True)
    data = DataConfig(d=_D, snr=snr)
    ft = SupervisedConfig(n=n, q=q, steps=steps, n_test=_N_TEST, record_every=max(1, steps // 60))
    simclr = run_simclr_finetune(_SEEDS, data, PretrainConfig(n0=n0, tau=tau), ft)
    direct = run_supervised(_SEEDS, data, ft)

    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax_e, ax_l = fig.subplots(1, 2)
    for name, hist, label in (("simclr", simclr.finetune, "SimCLR + fine-tuning"),
                              ("supervised", direct, "direct training")):
        _band(ax_e, hist.steps, hist["test_error"], COLORS[name], label)
        _band(ax_l, hist.steps, hist["train_loss"], COLORS[name], label)
    ax_e.axhline(0.5, color=COLORS["theory"], lw=0.8, ls="--", label="chance")
    ax_e.set(xlabel="GD step", ylabel="test error", ylim=(-0.02, 1.02))
    ax_l.set(xlabel="GD step", ylabel="training loss", yscale="log")
    ax_e.legend(loc="best", fontsize=8)
    ax_l.legend(loc="best", fontsize=8)
    align = simclr.pretrain.history.last("align_mean").mean()
    fig.suptitle(f"SNR = {snr:g}, n = {n}, $n_0$ = {n0}, q = {q:g}, $\\tau$ = {tau:g}: "
                 f"n SNR$^q$ = {n * snr ** q:.2g}, pre-trained alignment {align:.2f}", fontsize=10)
    return fig


def explorer(fn: Callable[..., Figure], controls: dict[str, Any], title: str = "Run"):
    """Wrap a figure function in an :class:`ipywidgets.interactive` with a run button.

    Parameters
    ----------
    fn
        A function of the controls' names that returns a figure.
    controls
        Keyword argument -> ipywidgets control (its value is the default state).
    title
        The label of the run button.

    Returns
    -------
    ipywidgets.interactive
        Displayed in a notebook, it draws ``fn(**values)`` below the sliders when the button
        is pressed (``manual`` mode: moving a slider alone runs nothing).
    """
    import ipywidgets as widgets

    def run(**values: Any):
        return _png(fn(**values))

    run.__signature__ = inspect.signature(fn)        # interactive matches controls to it
    return widgets.interactive(run, {"manual": True, "manual_name": title, "auto_display": True},
                               **controls)


def _png(fig: Figure):
    """The figure as an :class:`IPython.display.Image`: displays in any kernel, with or
    without matplotlib's inline backend."""
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image(data=buf.getvalue(), format="png")


#: Slider kind, label and step of every parameter; the bounds come from :data:`RANGES`.
_SLIDERS: dict[str, tuple[str, str, float]] = {
    "snr": ("log", "SNR", 0.05),              # log10 steps
    "n": ("int", "n (labels)", 1),
    "n0": ("int", "n0 (unlabeled)", 10),
    "q": ("float", "q", 0.5),
    "tau": ("log", "tau", 0.1),               # log10 steps
    "steps": ("int", "steps", 10),
}


def _slider(name: str, value: Any):
    """The ipywidgets slider of ``name`` over exactly ``RANGES[name]``, starting at ``value``."""
    import ipywidgets as widgets

    kind, label, step = _SLIDERS[name]
    low, high = RANGES[name]
    common = {"value": value, "step": step, "description": label,
              "style": {"description_width": "initial"}}
    if kind == "log":
        return widgets.FloatLogSlider(base=10, min=np.log10(low), max=np.log10(high), **common)
    if kind == "int":
        return widgets.IntSlider(min=int(low), max=int(high), **common)
    return widgets.FloatSlider(min=low, max=high, **common)


def _sliders(defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: _slider(k, v) for k, v in defaults.items()}


def pretraining_explorer():
    """Sliders for ``snr, n0, tau, steps`` over :func:`pretraining_figure`. Chapter 8."""
    return explorer(pretraining_figure, _sliders(PRETRAIN_DEFAULTS), "Run pre-training")


def finetuning_explorer():
    """Sliders for ``snr, n, n0, q, tau, steps`` over :func:`finetuning_figure`. Chapter 8."""
    return explorer(finetuning_figure, _sliders(FINETUNE_DEFAULTS), "Run both pipelines")
