"""Verdicts: how a chapter reports that it tested a result of the paper.

:func:`verdict` shows one :class:`Verdict`. In a notebook it is a compact coloured box (the
result, the claim, the measurement, the outcome in colour and in words); its plain-text form,
the line ``[result] predicted: ...; measured: ...; holds: yes|NO``, is what nbval compares and
what ``tests/test_notebooks.py`` reads. A verdict that says ``NO`` is a *finding*: it must be
registered, with its measured cause, in ``tests/findings.txt``, and the suite fails whenever a
verdict's outcome differs from its registration, in either direction.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict", "verdict", "glue"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of testing one result: ``holds`` is computed from the measurement."""

    result: str
    predicted: str
    measured: str
    holds: bool

    def __bool__(self) -> bool:
        return self.holds

    def line(self) -> str:
        return (f"[{self.result}] predicted: {self.predicted}; measured: {self.measured}; "
                f"holds: {'yes' if self.holds else 'NO'}")

    def __repr__(self) -> str:
        return self.line()

    def _repr_html_(self) -> str:
        cls = "holds" if self.holds else "fails"
        word = "holds" if self.holds else "does NOT hold"
        e = html.escape
        return (f'<div class="verdict verdict-{cls}">'
                f'<div class="verdict-head"><span class="verdict-result">{e(self.result)}</span>'
                f'<span class="verdict-outcome">{word}</span></div>'
                f'<div class="verdict-row"><span class="verdict-key">claim</span> '
                f'{e(self.predicted)}</div>'
                f'<div class="verdict-row"><span class="verdict-key">measured</span> '
                f'{e(self.measured)}</div></div>')


def glue(prefix: str = "", **values: Any) -> None:
    """Glue every value for the prose (``{glue:text}`key```), as ``prefix + name``.

    Outside a Jupyter Book build (no ``myst_nb``) this does nothing.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:          # pragma: no cover - myst_nb ships with the book's requirements
        return
    for name, value in values.items():
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
            value = value.item()        # numpy scalars glue as plain numbers
        _glue(prefix + name, value, display=False)


def verdict(result: str, predicted: str, measured: str, holds: bool,
            glue_as: str | None = None, **values: Any) -> Verdict:
    """Show and return the :class:`Verdict` of ``result``.

    ``holds`` must be computed from the measurement, never typed. ``values`` are glued for the
    prose under ``glue_as + name`` (with ``glue_as`` given), together with ``glue_as + "holds"``
    (``"yes"`` or ``"NO"``), so each number and threshold is typed once.
    """
    v = Verdict(str(result), str(predicted), str(measured), bool(holds))
    if glue_as is not None:
        glue(glue_as, holds="yes" if v.holds else "NO", **values)
    try:
        from IPython import get_ipython
        from IPython.display import display
        shell = get_ipython()
    except ImportError:          # pragma: no cover
        shell = None
    if shell is not None and hasattr(shell, "kernel"):
        display(v)
    else:
        print(v.line())
    return v
