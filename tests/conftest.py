"""Shared fixtures of the unit suite: small float64 problems that run in milliseconds."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import simclr_lib as sl

# The suite's tensors are tiny; on a small shared machine intra-op threads only add
# overhead (measured 6x slower with 2 threads on 2 busy cores), so run on one.
# SIMCLR_TEST_THREADS=2 reruns it multi-threaded (make unit does, for the thread-sensitive
# tests): a kernel that breaks only with threads (issue 11) must not hide behind the default.
THREADS = int(os.environ.get("SIMCLR_TEST_THREADS", "1"))
torch.set_num_threads(THREADS)


def pytest_report_header(config):
    return f"torch threads: {torch.get_num_threads()} (SIMCLR_TEST_THREADS)"


def pytest_terminal_summary(terminalreporter):
    """How many random inputs tests/test_properties.py tried (issue 11 asks to report them)."""
    mod = sys.modules.get("test_properties") or sys.modules.get("tests.test_properties")
    counts = getattr(mod, "HYPOTHESIS_COUNTS", None)
    if counts:
        terminalreporter.write_line(f"hypothesis inputs tried: {counts['valid']} valid, "
                                    f"{counts['invalid']} invalid")


@pytest.fixture
def small_data() -> sl.DataConfig:
    """A small data model where every pipeline runs in well under a second."""
    return sl.DataConfig(d=300, snr=0.5)


@pytest.fixture
def rng() -> torch.Generator:
    """A fixed generator for test-only random tensors (never the library's streams)."""
    return torch.Generator().manual_seed(1234)
