"""Progress feedback for long calls (``tqdm.auto``): a bar in Jupyter, a line in a terminal,
silent otherwise.

``progress=None`` (every entry point's default) means *interactive only*: on in a terminal
(stderr is a TTY) and in a notebook opened in Jupyter (a kernel started by a Jupyter server,
which sets ``JPY_SESSION_NAME``); off in scripts, tests, worker processes and when a notebook
is executed headless (``jupyter-book build``, ``jupytext --execute``, nbval), so recorded
outputs stay stable. ``SIMCLR_PROGRESS=0`` or ``1`` in the environment overrides the default.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterable, Iterator

__all__ = ["enabled", "steps", "quiet"]

_QUIET = [0]    # > 0 inside quiet(): a sweep shows one bar for its chunks, none per chunk


def enabled(progress: bool | None = None) -> bool:
    """Whether to show progress: ``progress`` if given, else the interactive default."""
    if progress is not None:
        return bool(progress)
    if _QUIET[0]:
        return False
    env = os.environ.get("SIMCLR_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    if "ipykernel" in sys.modules:
        return bool(os.environ.get("JPY_SESSION_NAME"))
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def steps(n: int, desc: str, progress: bool | None = None) -> Iterable[int]:
    """``range(n)``, with a bar when :func:`enabled` (and ``n`` is worth one)."""
    if n < 50 or not enabled(progress):
        return range(n)
    from tqdm.auto import tqdm
    bar = tqdm(total=n, desc=desc, unit="step", leave=False, dynamic_ncols=True, mininterval=0.5)

    def counted() -> Iterator[int]:
        try:                                   # closed however the loop ends (break, error)
            for i in range(n):
                yield i
                bar.update(1)
        finally:
            bar.close()
    return counted()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Inside: no default bars (a sweep's chunks run without their own step bars)."""
    _QUIET[0] += 1
    try:
        yield
    finally:
        _QUIET[0] -= 1
