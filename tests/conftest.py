"""Shared fixtures of the unit suite: small float64 problems that run in milliseconds."""
from __future__ import annotations

import pytest
import torch

import simclr_lib as sl

# The suite's tensors are tiny; on a small shared machine intra-op threads only add
# overhead (measured 6x slower with 2 threads on 2 busy cores), so run on one.
torch.set_num_threads(1)


@pytest.fixture
def small_data() -> sl.DataConfig:
    """A small data model where every pipeline runs in well under a second."""
    return sl.DataConfig(d=300, snr=0.5)


@pytest.fixture
def rng() -> torch.Generator:
    """A fixed generator for test-only random tensors (never the library's streams)."""
    return torch.Generator().manual_seed(1234)
