"""Input validation shared by every public function: clear errors, never silent NaN."""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` must be an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` must be a finite real number inside the given interval."""
    lo = "(" if low_open or low is None else "["     # an infinite end is never included
    hi = ")" if high_open or high is None else "]"
    rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if not _is_finite_number(value):
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` must be a finite number ``> 0``."""
    return check_float(name, value, low=0.0, low_open=True)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_dtype(dtype: Any) -> "torch.dtype":
    import torch   # imported here: the config checks above must not pay for torch
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def check_device(device: Any) -> "torch.device":
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def check_seeds(seeds: Any) -> list[int]:
    """A non-empty sequence of integer seeds (an int is a single run)."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    try:
        seeds = list(seeds)
    except TypeError:
        raise ValueError(f"seeds must be an integer or a sequence of integers >= 0, got {seeds!r}") from None
    if not seeds:
        raise ValueError("seeds must be a non-empty sequence of integers >= 0")
    return [check_int("seed", s, low=0) for s in seeds]


def per_run(name: str, value: Any, runs: int) -> list:
    """Broadcast a scalar or a length-``runs`` sequence to a list of length ``runs``."""
    if isinstance(value, (list, tuple)):
        if len(value) != runs:
            raise ValueError(f"{name} has {len(value)} entries but there are {runs} runs (seeds)")
        return list(value)
    return [value] * runs
