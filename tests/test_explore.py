"""simclr_lib.explore: the figure functions and widget builders of chapter 8."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

import simclr_lib.explore as ex

# small but valid values: each call takes well under a second
PRE_SMALL = {"snr": 0.3, "n0": 20, "tau": 1.0, "steps": 12}
FT_SMALL = {"snr": 0.3, "n": 4, "n0": 20, "q": 3.0, "tau": 1.0, "steps": 12}


def _lines(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata(), float) for ax in fig.axes for line in ax.get_lines()]


def test_pretraining_figure_returns_figure():
    fig = ex.pretraining_figure(**PRE_SMALL)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_xlabel() for ax in fig.axes] == ["pre-training step"] * 2
    assert all(np.isfinite(y).all() for y in _lines(fig))


def test_finetuning_figure_returns_figure():
    fig = ex.finetuning_figure(**FT_SMALL)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_ylabel() == "test error"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["SimCLR + fine-tuning", "direct training"]


def test_figures_are_deterministic():
    a, b = ex.finetuning_figure(**FT_SMALL), ex.finetuning_figure(**FT_SMALL)
    for ya, yb in zip(_lines(a), _lines(b)):
        np.testing.assert_array_equal(ya, yb)


def test_figures_accept_range_ends():
    pre = ex.pretraining_figure(snr=1.0, n0=10, tau=10.0, steps=10)
    ft = ex.finetuning_figure(snr=0.02, n=2, n0=10, q=1.0, tau=0.1, steps=10)
    for fig in (pre, ft):
        assert all(y.size and np.isfinite(y).all() for y in _lines(fig))
    assert "SNR = 1," in pre._suptitle.get_text() and "n = 2," in ft._suptitle.get_text()
    # the InfoNCE loss of a near-zero start is log n0; alignments and errors lie in [0, 1]
    loss = pre.axes[1].get_lines()[0].get_ydata()
    assert abs(loss[0] - np.log(10)) < 1e-3
    for y in [*map(np.asarray, (line.get_ydata() for line in pre.axes[0].get_lines()[:2])),
              *map(np.asarray, (line.get_ydata() for line in ft.axes[0].get_lines()[:2]))]:
        assert ((y >= 0) & (y <= 1)).all()


def test_sliders_span_exactly_the_ranges():
    pytest.importorskip("ipywidgets")
    for name, (low, high) in ex.RANGES.items():
        w = ex._slider(name, low)
        lo, hi = (10 ** w.min, 10 ** w.max) if w.__class__.__name__ == "FloatLogSlider" \
            else (w.min, w.max)
        assert lo == pytest.approx(low) and hi == pytest.approx(high), name
        assert ex._check(name, type(low)(lo), isinstance(low, int)) == pytest.approx(low)


def test_defaults_are_in_range():
    for defaults in (ex.PRETRAIN_DEFAULTS, ex.FINETUNE_DEFAULTS):
        for name, value in defaults.items():
            low, high = ex.RANGES[name]
            assert low <= value <= high, name


@pytest.mark.parametrize("kwargs,msg", [
    ({"snr": 0.0}, r"snr must be in \[0.02, 1.0\]"),
    ({"snr": 2.0}, r"snr must be in \[0.02, 1.0\]"),
    ({"snr": float("nan")}, "snr must be a finite number"),
    ({"n0": 5}, r"n0 must be an integer in \[10, 1000\], got 5"),
    ({"n0": 5000}, r"n0 must be an integer in \[10, 1000\]"),
    ({"n0": 50.0}, "n0 must be an integer in"),
    ({"tau": 0.0}, r"tau must be in \[0.1, 10.0\]"),
    ({"steps": 0}, r"steps must be an integer in \[10, 2000\]"),
    ({"steps": 10_000}, r"steps must be an integer in \[10, 2000\]"),
])
def test_pretraining_figure_rejects(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        ex.pretraining_figure(**{**PRE_SMALL, **kwargs})


@pytest.mark.parametrize("kwargs,msg", [
    ({"snr": -0.1}, "snr must be in"),
    ({"n": 1}, r"n must be an integer in \[2, 64\]"),
    ({"n": 65}, r"n must be an integer in \[2, 64\]"),
    ({"n": True}, "n must be an integer in"),
    ({"n0": 1001}, r"n0 must be an integer in \[10, 1000\]"),
    ({"q": 0.5}, r"q must be in \[1.0, 4.0\]"),
    ({"q": 5.0}, r"q must be in \[1.0, 4.0\]"),
    ({"tau": 20.0}, r"tau must be in \[0.1, 10.0\]"),
    ({"steps": "600"}, "steps must be an integer in"),
])
def test_finetuning_figure_rejects(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        ex.finetuning_figure(**{**FT_SMALL, **kwargs})


@pytest.mark.parametrize("build,defaults", [(ex.pretraining_explorer, ex.PRETRAIN_DEFAULTS),
                                            (ex.finetuning_explorer, ex.FINETUNE_DEFAULTS)])
def test_explorer_widgets_start_at_defaults(build, defaults):
    widgets = pytest.importorskip("ipywidgets")
    ui = build()
    assert isinstance(ui, widgets.interactive)
    values = {w._kwarg: w.value for w in ui.kwargs_widgets}
    assert values.keys() == defaults.keys()
    for name, value in defaults.items():
        assert values[name] == pytest.approx(value), name
    assert ui.manual and isinstance(ui.children[-2], widgets.Button)   # runs only on request
    assert ui.result is None


def test_explorer_runs_on_request():
    pytest.importorskip("ipywidgets")
    from IPython.display import Image

    ui = ex.pretraining_explorer()
    for w in ui.kwargs_widgets:
        w.value = {"snr": 0.3, "n0": 20, "tau": 1.0, "steps": 10}[w._kwarg]
    ui.update()                      # what pressing the button does
    assert isinstance(ui.result, Image) and ui.result.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_describe_defaults_lists_every_default():
    text = ex.describe_defaults().splitlines()
    assert [t.split(" defaults:")[0] for t in text] == ["pre-training", "fine-tuning"]
    for line, defaults in zip(text, (ex.PRETRAIN_DEFAULTS, ex.FINETUNE_DEFAULTS)):
        assert line.split(": ", 1)[1] == ", ".join(f"{k} = {v}" for k, v in defaults.items())
