"""``python -m simclr_lib``: a tiny sweep end to end, its output file and configuration, resuming
from finished chunks without recomputing them, and the command-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import cli, sweeps

ROOT = Path(__file__).resolve().parents[1]
SUP = ["supervised", "--ns", "3", "6", "--snrs", "0.5", "1.0", "--seeds", "0:2", "--d", "30",
       "--m", "2", "--steps", "60", "--n-test", "40", "--memory-gb", "1e-7", "--threads", "1"]


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def direct_supervised():
    cfg = sl.SupervisedConfig(m=2, steps=60, n_test=40, record_every=60)
    return sweeps.supervised_grid([3, 6], [0.5, 1.0], [0, 1], sl.DataConfig(d=30), cfg)


def test_module_entry_point_writes_json_and_resumes(tmp_path):
    out = tmp_path / "sup.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "simclr_lib", *SUP, "--out", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "supervised: 100%" in run.stderr                       # the tqdm bar, on stderr
    assert "8 chunks, 8 computed, 0 from cache" in run.stderr
    res = json.loads(out.read_text())
    assert res["metric"] == "test_error"
    assert res["axes"] == {"n": [3, 6], "snr": [0.5, 1.0], "seed": [0, 1]}
    assert res["config"]["sweep"] == "supervised"
    assert res["config"]["cfg"]["steps"] == 60 and res["config"]["data"]["d"] == 30
    assert res["config"]["args"]["seeds"] == [0, 1] and res["config"]["args"]["memory_gb"] == 1e-7
    assert res["chunks"] == {"total": 8, "computed": 8, "cached": 0}
    np.testing.assert_allclose(res["values"], direct_supervised().values, rtol=0, atol=1e-6)
    chunk_dir = tmp_path / "sup.json.chunks"
    assert len(list(chunk_dir.glob("supervised-*.npz"))) == 8

    # resume: the output is gone but the finished chunks are kept -> nothing is recomputed
    out.unlink()
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    again = json.loads(out.read_text())
    assert again["chunks"] == {"total": 8, "computed": 0, "cached": 8}
    assert again["values"] == res["values"]

    # an interrupted sweep: two chunks never finished -> exactly those two are computed
    for f in sorted(chunk_dir.glob("*.npz"))[:2]:
        f.unlink()
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["chunks"] == {"total": 8, "computed": 2, "cached": 6}


def test_resume_log_line(tmp_path, capsys):
    out = tmp_path / "a.npz"
    argv = ["alignment", "--n0s", "6", "12", "--snrs", "0.8", "--seeds", "0", "1", "--d", "24",
            "--m", "2", "--steps", "20", "--memory-gb", "1e-7", "--out", str(out), "--threads", "1"]
    assert cli.main(argv) == 0
    assert "4 chunks, 4 computed, 0 from cache" in capsys.readouterr().err
    out.unlink()
    assert cli.main(argv + ["--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "4 chunks, 0 computed, 4 from cache" in err and "%|" not in err
    z = np.load(out)
    assert z["values"].shape == (2, 1, 2) and str(z["metric"]) == "align_mean"
    np.testing.assert_array_equal(z["axis_n0"], [6, 12])
    config = json.loads(str(z["config"]))
    assert config["sweep"] == "alignment" and config["pre"]["steps"] == 20 and config["pre"]["m"] == 2
    assert json.loads(str(z["chunks"]))["computed"] == 0
    ref = sweeps.alignment_grid([6, 12], [0.8], [0, 1], sl.DataConfig(d=24),
                                sl.PretrainConfig(m=2, steps=20))
    np.testing.assert_allclose(z["values"], ref.values, rtol=0, atol=1e-6)


def test_simclr_with_own_cache_dir_and_no_cache(tmp_path):
    argv = ["simclr", "--ns", "2", "4", "--snrs", "0.8", "--seeds", "0", "--d", "24", "--m", "2",
            "--steps", "40", "--pretrain-steps", "20", "--n-test", "30", "--n0-snr2", "4",
            "--dtype", "float64", "--no-progress", "--threads", "1"]
    assert cli.main(argv + ["--out", str(tmp_path / "s.json"), "--cache-dir", str(tmp_path / "c")]) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    assert res["config"]["n0"] == [7] and res["config"]["dtype"] == "torch.float64"
    assert res["config"]["ft"]["steps"] == 40 and res["config"]["pre"]["steps"] == 20
    assert len(list((tmp_path / "c").glob("simclr-*.npz"))) == 1
    assert cli.main(argv + ["--out", str(tmp_path / "t.json"), "--no-cache"]) == 0
    assert not (tmp_path / "t.json.chunks").exists()
    assert json.loads((tmp_path / "t.json").read_text())["values"] == res["values"]


@pytest.mark.parametrize("extra, message", [
    (["--out", "x.txt"], "--out must end in .npz or .json"),
    (["--out", "x.json", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["--out", "x.json", "--seeds", "a:b"], "seed must be an integer or a range a:b"),
    (["--out", "x.json", "--d", "1"], "d must be an integer >= 2"),
    (["--out", "x.json", "--memory-gb", "0"], "memory_gb must be in"),
    (["--out", "x.json", "--method", "exact"], "invalid choice: 'exact'"),
])
def test_cli_errors(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["supervised", "--ns", "3", "--snrs", "0.5", "--d", "10", "--steps", "1",
                  "--n-test", "5", "--no-progress", *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
