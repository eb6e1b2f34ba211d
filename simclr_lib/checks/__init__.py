"""One function per result of the paper: each evaluates its claim on runs the chapter made (or
makes them), shows the :class:`~simclr_lib.report.Verdict` and returns it. Every check has a
control test in ``tests/`` where the claim is false and the check must say ``NO``.

Submodules, one per chapter group, are imported on first use:
``sl.checks.supervised``, ``sl.checks.pretraining``, ``sl.checks.finetuning``,
``sl.checks.finite_d``, ``sl.checks.images``, ``sl.checks.kou``, ``sl.checks.headline``.
"""
from __future__ import annotations

import importlib

_MODULES = ("supervised", "pretraining", "finetuning", "finite_d", "images", "kou", "headline")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
