"""The finite-d study: its committed result file (book/data/finite_d.json) matches the
configuration the current code runs, a reduced re-run of the same command works, and the trend
verdict says NO where the quantity does not shrink."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import simclr_lib as sl

FD = sl.checks.finite_d
FILE = Path(__file__).resolve().parents[1] / "book" / "data" / "finite_d.json"


def _fixed(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in ("ds", "seeds")}


def test_committed_file_matches_a_reduced_rerun(tmp_path):
    saved = json.loads(FILE.read_text())
    assert saved["config"]["ds"] == list(FD.DS)
    assert saved["config"]["seeds"] == list(range(8))
    assert saved["command"] == ("python -m simclr_lib.checks.finite_d --ds "
                                + " ".join(map(str, FD.DS)) + " --seeds 8 --out "
                                "book/data/finite_d.json")
    out = tmp_path / "small.json"
    assert FD.main(["--ds", "1000", "2000", "--seeds", "1", "--out", str(out)]) == 0
    small = FD.load(out)
    assert _fixed(small["config"]) == _fixed(saved["config"])
    assert set(small["values"]) == set(saved["values"])
    # the same seed at the same d gives the same numbers as the committed file
    i = saved["config"]["ds"].index(1000)
    for key in ("met", "flip", "flip4", "stop"):
        assert small["values"][key][0][0] == saved["values"][key][i][0], key


def test_trend_verdict_fails_when_nothing_shrinks():
    ds = [1000, 2000, 4000]
    rng = np.random.default_rng(0)
    falling = np.array([[0.4], [0.2], [0.1]]) + 0.01 * rng.standard_normal((3, 8))
    flat = 0.2 + 0.01 * rng.standard_normal((3, 8))
    assert FD.shrinks("control (falling)", "x", ds, falling).holds
    assert not FD.shrinks("control (flat)", "x", ds, flat).holds
    assert not FD.shrinks("control (rising)", "x", ds, falling[::-1]).holds
