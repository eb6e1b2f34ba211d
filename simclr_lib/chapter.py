"""The one set-up cell of every chapter, ``COLORS = sl.setup()``: torch threads, the book's
figure style, and freed memory handed back to the system so that a chapter's kernel stays
within Binder's memory (bench/README.md, row g).
"""
from __future__ import annotations

__all__ = ["setup", "return_freed_memory", "MMAP_THRESHOLD"]


MMAP_THRESHOLD = 128 * 2 ** 10   # bytes: larger blocks are mapped and unmapped on their own


def return_freed_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make the C allocator (glibc) give every block of at least ``threshold`` bytes back
    to the system as soon as it is freed: ``mallopt(M_MMAP_THRESHOLD, threshold)``.

    By default glibc raises that threshold to the size of the largest block freed so far (up
    to 32 MB), after which the chapters' (R, n, d) tensors come from the heap, and what they
    leave there when freed mostly stays resident: measured, a chapter's kernel held 200 MB
    more than its live tensors (bench/README.md, row g). A fixed threshold also turns the
    adjustment off. Only where the allocation happens changes, never a value computed.
    Returns False (and does nothing) where there is no glibc ``mallopt``.
    """
    import ctypes
    import ctypes.util

    from ._validate import check_int
    threshold = check_int("threshold", threshold, low=0)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def setup(threads: int = 1) -> dict[str, str]:
    """The one set-up cell of every chapter: the book's figure style, ``threads`` torch
    threads and freed memory returned to the system (:func:`return_freed_memory`, which keeps
    a chapter's kernel within Binder's memory). Returns ``COLORS``.

    Chapters run one thread: their batched programs are small, and one thread makes the
    printed numbers that nbval compares the same on every machine, whatever its core count.
    The library itself works with any thread count (tests/test_threads.py).
    """
    import torch

    from ._validate import check_int
    from .plotting import COLORS, use_style
    torch.set_num_threads(check_int("threads", threads))
    return_freed_memory()
    use_style()
    return COLORS
