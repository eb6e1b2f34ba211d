"""One shared figure style for every chapter: a colour-blind-safe palette (Okabe & Ito)
and small helpers for the book's recurring figures (phase diagrams, dynamics, label complexity).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PALETTE", "COLORS", "use_style", "heatmap", "loglog_fit"]

# Okabe-Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
COLORS = {"supervised": "#D55E00", "simclr": "#0072B2", "signal": "#009E73", "noise": "#CC79A7",
          "theory": "#000000", "probe": "#E69F00"}
CMAP = "cividis"   # perceptually uniform and colour-blind safe


def use_style() -> None:
    """Apply the book's matplotlib style (call once per chapter, in the imports cell)."""
    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.8), "figure.dpi": 100, "savefig.dpi": 100,
        "axes.prop_cycle": mpl.cycler(color=PALETTE), "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
        "legend.frameon": False, "image.cmap": CMAP,
    })


def heatmap(ax, values: np.ndarray, xs: Sequence[float], ys: Sequence[float], xlabel: str,
            ylabel: str, label: str, vmin: float = 0.0, vmax: float = 0.5):
    """A phase diagram: ``values[i, j]`` at ``(xs[j], ys[i])`` on log-spaced ticks, with a colour bar."""
    im = ax.imshow(values, origin="lower", aspect="auto", cmap=CMAP, vmin=vmin, vmax=vmax,
                   extent=(-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5))
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    plt.colorbar(im, ax=ax, label=label)
    return im


def loglog_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ``log y`` against ``log x`` (finite, positive points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)
