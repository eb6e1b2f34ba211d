"""One shared figure style for every chapter: a colour-blind-safe palette (Okabe & Ito)
and small helpers for the book's recurring figures (phase diagrams, dynamics, label complexity).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PALETTE", "COLORS", "use_style", "heatmap", "cell_edges", "loglog_fit"]

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


def cell_edges(centers: Sequence[float], log: bool = True) -> np.ndarray:
    """Cell edges around grid centres: geometric midpoints on a log axis (arithmetic otherwise),
    the outer edges mirrored, so each cell is centred on its value in data coordinates."""
    c = np.asarray(centers, float)
    if c.size == 1:
        return c * np.array([0.8, 1.25]) if log else c + np.array([-0.5, 0.5])
    if log:
        mid = np.sqrt(c[1:] * c[:-1])
        return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def heatmap(ax, values: np.ndarray, xs: Sequence[float], ys: Sequence[float], xlabel: str,
            ylabel: str, label: str, vmin: float = 0.0, vmax: float = 0.5,
            logx: bool = True, logy: bool = True):
    """A phase diagram: ``values[i, j]`` at ``(xs[j], ys[i])``, drawn in data coordinates on log
    axes (cell edges at geometric midpoints), so theory lines and measured points are plotted
    directly with ``ax.plot(x, y)``. A colour bar is added."""
    values = np.asarray(values, float)
    if values.shape != (len(ys), len(xs)):
        raise ValueError(f"values must be (len(ys)={len(ys)}, len(xs)={len(xs)}), got {values.shape}")
    im = ax.pcolormesh(cell_edges(xs, logx), cell_edges(ys, logy), values, cmap=CMAP,
                       vmin=vmin, vmax=vmax, shading="flat")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
    ax.set_yticks(list(ys), [f"{y:g}" for y in ys])
    ax.minorticks_off()
    ax.set_xlim(cell_edges(xs, logx)[[0, -1]])
    ax.set_ylim(cell_edges(ys, logy)[[0, -1]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    plt.colorbar(im, ax=ax, label=label)
    return im


from .analysis import loglog_fit  # noqa: E402  (moved; kept here for old imports)
