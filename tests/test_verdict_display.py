"""A verdict box is shown once per cell, even when ``sl.verdict(...)`` is a cell's last line.

``sl.verdict`` displays its box itself and returns the Verdict; IPython would display that
return value a second time (the same box twice on the built page) without
``Verdict._ipython_display_``.
"""
from __future__ import annotations

import pytest

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402


@pytest.fixture(scope="module")
def shell():
    sh = InteractiveShell.instance()
    sh.run_cell("from simclr_lib.report import Verdict", store_history=True)
    yield sh
    InteractiveShell.clear_instance()


def boxes(shell, code: str) -> list[dict]:
    with capture_output() as io:
        result = shell.run_cell(code, store_history=True)
    assert result.success, result.error_in_exec
    return [o.data for o in io.outputs]


def test_a_verdict_is_shown_once_in_its_cell_and_again_in_a_later_one(shell):
    shown = boxes(shell, 'v = Verdict("A", "x <= 1", "x = 2", False)\ndisplay(v)\nv')
    assert len(shown) == 1, shown                       # display() and the last expression
    assert shown[0]["text/plain"] == "[A] predicted: x <= 1; measured: x = 2; holds: NO"
    assert 'class="verdict verdict-fails"' in shown[0]["text/html"]
    assert "does NOT hold" in shown[0]["text/html"]
    again = boxes(shell, "v")                           # a later cell shows it again
    assert len(again) == 1 and again[0] == shown[0]


def test_two_verdicts_in_one_cell_are_both_shown(shell):
    shown = boxes(shell, 'display(Verdict("B", "p", "m", True))\n'
                         'display(Verdict("C", "p", "m", True))')
    assert [s["text/plain"].split("]")[0] for s in shown] == ["[B", "[C"]
    assert all('class="verdict verdict-holds"' in s["text/html"] for s in shown)
