"""The one-line verdict every chapter prints after testing a result of the paper."""
from __future__ import annotations

__all__ = ["verdict"]


def verdict(result: str, predicted: str, measured: str, holds: bool) -> None:
    """Format and print ``[result] predicted: ...; measured: ...; holds: yes|NO``.

    ``holds`` must be computed from the measurement, never typed; the test suite reads these
    lines from the executed chapters and fails on any ``holds: NO`` that is not a recorded finding.
    """
    line = f"[{result}] predicted: {predicted}; measured: {measured}; holds: {'yes' if holds else 'NO'}"
    print(line)
