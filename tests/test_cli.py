"""The command line (``simclr-sweep`` / ``python -m simclr_lib``): a tiny sweep end to end, its
output file and configuration, resuming from finished chunks, a cached rerun that needs no
torch, every error path (one line naming the option, before any compute), a failed save,
Ctrl-C and SIGKILL mid-sweep, --help, and the console script."""
from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import cli, sweeps

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
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


def module(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "simclr_lib", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, **kw)


def test_module_entry_point_writes_json_and_resumes(tmp_path):
    out = tmp_path / "sup.json"
    run = module(*SUP, "--out", str(out), "--progress", cwd=tmp_path)
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
    direct = direct_supervised()
    np.testing.assert_allclose(res["values"], direct.values, rtol=0, atol=1e-6)
    for k in ("train_loss", "test_loss", "test_error"):
        np.testing.assert_allclose(res["metrics"][k], direct.metrics[k], rtol=0, atol=1e-6)
    chunk_dir = tmp_path / "sup.json.chunks"
    assert len(list(chunk_dir.glob("supervised-*.npz"))) == 8

    # resume: the output is gone but the finished chunks are kept -> nothing is recomputed
    out.unlink()
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    again = json.loads(out.read_text())
    assert again["chunks"] == {"total": 8, "computed": 0, "cached": 8}
    assert again["values"] == res["values"]

    # an interrupted sweep: two chunks never finished -> exactly those two are computed
    out.unlink()
    for f in sorted(chunk_dir.glob("*.npz"))[:2]:
        f.unlink()
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["chunks"] == {"total": 8, "computed": 2, "cached": 6}


def test_saved_configuration_records_the_grid_and_keeps_seconds(tmp_path, capsys):
    """The configuration names the grid that ran, not DataConfig's default snr or
    SupervisedConfig's default n; a rerun of a finished sweep keeps the original compute time
    and records its own beside it."""
    out = tmp_path / "sup.npz"
    assert cli.main([*SUP, "--out", str(out), "--no-progress", "--pairing", "independent"]) == 0
    first = sl.load_sweep(out)
    assert first.config["grid"] == {"n": [3, 6], "snr": [0.5, 1.0], "seed": [0, 1]}
    assert "snr" not in first.config["data"] and "n" not in first.config["cfg"]
    assert first.config["pairing"] == "independent" and "rerun_seconds" not in first.config
    capsys.readouterr()
    assert cli.main([*SUP, "--out", str(out), "--no-progress", "--pairing", "independent"]) == 0
    assert "result up to date" in capsys.readouterr().err
    again = sl.load_sweep(out)
    assert again.config["seconds"] == first.config["seconds"]
    assert again.config["rerun_seconds"] >= 0
    np.testing.assert_array_equal(again.values, first.values)
    # another option is another result: recomputed, not taken from the file
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    assert sl.load_sweep(out).config["pairing"] == "paired"


def test_cached_rerun_needs_no_torch(tmp_path):
    """A rerun of a finished sweep reads the result file and imports neither torch nor the
    sweep machinery (what makes it fast: torch alone takes seconds to import)."""
    out = tmp_path / "a.npz"
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    code = ("import sys; from simclr_lib import cli; rc = cli.main(sys.argv[1:]); "
            "assert rc == 0, rc; bad = [m for m in ('torch', 'matplotlib', 'simclr_lib.sweeps') "
            "if m in sys.modules]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code, *SUP, "--out", str(out)], env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "8 chunks, 0 computed, 8 from cache (result up to date)" in run.stderr


def test_help_is_plain_and_light():
    """--help shows no Sphinx markup, and building it imports neither torch nor matplotlib."""
    code = ("import sys; from simclr_lib import cli; p = cli.build_parser(); "
            "print(p.format_help()); [print(a.format_help()) for a in "
            "p._subparsers._group_actions[0].choices.values()]; "
            "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "``" not in text and ":mod:" not in text and ":func:" not in text
    for flag in ("--ds", "--mu-norms", "--sigma0", "--lr", "--pairing", "--n0", "load_sweep"):
        assert flag in text
    t0 = time.perf_counter()
    run = module("--help", timeout=60)
    assert run.returncode == 0 and "examples:" in run.stdout
    print(f"python -m simclr_lib --help: {time.perf_counter() - t0:.2f} s")


def test_import_is_lazy():
    """`import simclr_lib` loads neither torch, matplotlib nor the sweeps; the names and the
    submodules (sl.sweeps, sl.plotting) load on first use."""
    code = ("import sys; import simclr_lib as sl; "
            "heavy = ('torch', 'matplotlib', 'simclr_lib.sweeps', 'simclr_lib.plotting'); "
            "assert not [m for m in heavy if m in sys.modules]; "
            "assert 'supervised_grid' in dir(sl.sweeps) and callable(sl.setup); "
            "assert sl.run_supervised.__module__ == 'simclr_lib.pipelines'; "
            "assert set(sl.__all__) <= set(dir(sl)) and 'load_sweep' in sl.__all__; "
            "from simclr_lib import DataConfig, verdict; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        sl.nope


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
    np.testing.assert_allclose(z["metric_align_min"], ref.metrics["align_min"], rtol=0, atol=1e-6)


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


def test_fixed_n0_is_the_one_given(tmp_path):
    """--n0 sets pre-training's n0 (no value is hard-coded); without it n0 = n0_snr2 / snr^2."""
    base = ["simclr", "--ns", "2", "--snrs", "0.8", "--d", "24", "--m", "2", "--steps", "5",
            "--pretrain-steps", "5", "--n-test", "10", "--no-progress", "--threads", "1"]
    assert cli.main(base + ["--n0", "9", "--out", str(tmp_path / "a.json")]) == 0
    config = json.loads((tmp_path / "a.json").read_text())["config"]
    assert config["n0"] == [9] and config["pre"]["n0"] == 9 and config["n0_snr2"] is None
    assert cli.main(base + ["--n0-snr2", "4", "--out", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["config"]["n0"] == [7]


def test_supervised_over_d_and_mu_norm(tmp_path):
    """--ds and --mu-norms (0 allowed: chance), --sigma0 and --lr reach the sweep."""
    out = tmp_path / "k.npz"
    argv = ["supervised", "--ns", "8", "--ds", "20", "40", "--mu-norms", "0", "3", "--seeds",
            "0:2", "--m", "2", "--steps", "30", "--n-test", "400", "--sigma0", "0.05", "--lr",
            "0.2", "--q", "1", "--no-progress", "--threads", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    res = sl.load_sweep(out)
    assert res.axes == {"n": [8], "d": [20, 40], "mu_norm": [0.0, 3.0], "seed": [0, 1]}
    cfg = sl.SupervisedConfig(n=8, m=2, steps=30, n_test=400, sigma0=0.05, lr=0.2, q=1.0)
    h = sl.run_supervised([1], sl.DataConfig(d=40, snr=3.0 / np.sqrt(40)), cfg)
    assert res.metrics["test_loss"][0, 1, 1, 1] == pytest.approx(h.last("test_loss")[0], abs=1e-6)
    assert abs(res.mean()[0, :, 0] - 0.5).max() < 0.1                  # no signal: chance


def one_line_error(argv, capsys, monkeypatch, code=2):
    """Run the CLI; assert it fails with ``code`` and one line, and never reached a chunk."""
    def no_compute(*a, **k):
        raise AssertionError("a chunk was run")
    monkeypatch.setattr(sweeps, "execute", no_compute)
    try:
        rc = cli.main(argv)
    except SystemExit as exc:                          # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code and len(err) == 1, (rc, err)
    return err[0]


BASE = ["supervised", "--ns", "3", "--snrs", "0.5", "--d", "10", "--steps", "1", "--n-test", "5",
        "--no-progress"]


@pytest.mark.parametrize("extra, message", [
    (["--out", "x.txt"], "--out must end in .npz or .json"),
    (["--out", "x.json", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["--out", "x.json", "--seeds", "a:b"], "seed must be an integer or a range a:b"),
    (["--out", "x.json", "--seeds", "-1"], "--seeds: seed must be an integer >= 0"),
    (["--out", "x.json", "--d", "1"], "--d: d must be an integer >= 2"),
    (["--out", "x.json", "--memory-gb", "0"], "--memory-gb: memory_gb must be a number in (0, inf]"),
    (["--out", "x.json", "--method", "exact"], "invalid choice: 'exact'"),
    (["--out", "x.json", "--threads", "0"], "--threads must be an integer >= 1, got 0"),
    (["--out", "x.json", "--device", "tpu"], "--device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (["--out", "x.json", "--ns", "0"], "--ns: ns must be an integer >= 1"),
    (["--out", "x.json", "--snrs", "-1"], "--snrs: snrs must be in [0.0, inf)"),
    (["--out", "x.json", "--mu-norms", "1"], "not allowed with argument --snrs"),
    (["--out", "x.json", "--ds", "10", "20"], "--d and --ds: give one"),
    (["--out", "x.json", "--lr", "0"], "--lr: lr must be in (0.0, inf)"),
    (["--out", "x.json", "--sigma0", "-1"], "--sigma0: sigma0 must be in (0.0, inf)"),
    (["--out", "blocker/x.json"], "--out 'blocker/x.json' is not writable"),
    (["--out", "x.json", "--cache-dir", "blocker"], "--cache-dir 'blocker' exists and is not a directory"),
    (["--out", "sub"], "--out must end in .npz or .json"),
])
def test_cli_errors(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file, not a directory")
    line = one_line_error([*BASE, *extra], capsys, monkeypatch)
    assert message in line
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "x.json.chunks").exists()


@pytest.mark.parametrize("argv, message", [
    (["simclr", "--ns", "2", "--snrs", "0.5", "--n0", "0"], "--n0: n0 must be an integer >= 2, got 0"),
    (["simclr", "--ns", "2", "--snrs", "0.5", "--pretrain-steps", "0"], "--pretrain-steps: steps must"),
    (["simclr", "--ns", "2", "--snrs", "0", "--d", "10"], "--snrs: snrs must be in (0.0, inf)"),
    (["alignment", "--n0s", "1", "--snrs", "0.5"], "--n0s: n0s must be an integer >= 2"),
    (["alignment", "--n0s", "4", "--snrs", "0.5", "--steps", "0"], "--steps: steps must"),
])
def test_cli_errors_pretraining(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error([*argv, "--out", "x.json"], capsys, monkeypatch)


def test_diverging_run_is_one_line(tmp_path, capsys):
    argv = [*SUP, "--lr", "1e9", "--out", str(tmp_path / "d.npz"), "--no-progress"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a run diverged" in err[0] and "smaller step size" in err[0]
    assert not (tmp_path / "d.npz").exists()


def test_failed_save_keeps_the_finished_chunks(tmp_path, capsys, monkeypatch):
    out = tmp_path / "s.npz"

    def full_disk(*args, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cli, "save_result", full_disk)
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not write --out" in err[0] and "rerun" in err[0]
    assert not out.exists() and len(list((tmp_path / "s.npz.chunks").glob("*.npz"))) == 8
    monkeypatch.undo()
    assert cli.main([*SUP, "--out", str(out), "--no-progress"]) == 0
    assert sl.load_sweep(out).chunks == {"total": 8, "computed": 0, "cached": 8}


# A sweep of 12 one-run chunks that each take a noticeable time (about 1 s), for the signal
# tests: the signal must arrive while chunks remain, even on a loaded machine.
SLOW_CHUNKS = 12
SLOW = ["supervised", "--ns", "40", "--snrs", "0.5", "1.0", "2.0", "--seeds", "0:4", "--d", "60",
        "--m", "2", "--steps", "3000", "--n-test", "50", "--memory-gb", "1e-7", "--threads", "1",
        "--no-progress"]


def start_and_wait_for_a_chunk(out: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-m", "simclr_lib", *SLOW, "--out", str(out)],
                            env=ENV, stderr=subprocess.PIPE, text=True)
    chunks = out.with_name(out.name + ".chunks")
    deadline = time.time() + 240
    while not list(chunks.glob("*.npz")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no chunk finished in time"
        time.sleep(0.05)
    time.sleep(0.1)                                    # into the next chunk
    assert proc.poll() is None, "the sweep finished before the signal: machine too loaded"
    return proc, chunks


@pytest.mark.slow
def test_sigkill_mid_chunk_then_rerun(tmp_path):
    """SIGKILL mid-sweep leaves only whole chunk files (written to a temporary name, then
    renamed); the rerun computes the rest and equals an uninterrupted run."""
    out = tmp_path / "k.npz"
    proc, chunks = start_and_wait_for_a_chunk(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    kept = sorted(chunks.glob("*.npz"))
    assert proc.returncode == -signal.SIGKILL and 1 <= len(kept) < SLOW_CHUNKS
    assert not out.exists()
    for f in kept:                                    # every chunk under its real name is whole
        with np.load(f) as z:
            assert set(z.files) == {"train_loss", "test_loss", "test_error"}
    assert cli.main([*SLOW, "--out", str(out)]) == 0            # the rerun, in this process
    assert sl.load_sweep(out).chunks == {"total": SLOW_CHUNKS, "computed": SLOW_CHUNKS - len(kept),
                                        "cached": len(kept)}
    whole = tmp_path / "whole.npz"
    assert cli.main([*SLOW, "--out", str(whole), "--no-cache"]) == 0
    a, b = sl.load_sweep(out), sl.load_sweep(whole)
    for k in a.metrics:
        np.testing.assert_array_equal(a.metrics[k], b.metrics[k])


@pytest.mark.slow
def test_ctrl_c_says_how_many_chunks_are_saved(tmp_path):
    out = tmp_path / "i.npz"
    proc, chunks = start_and_wait_for_a_chunk(out)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1].strip().splitlines()
    saved = len(list(chunks.glob("*.npz")))
    assert proc.returncode == 130
    assert err[-1].endswith(f"interrupted: {saved} of {SLOW_CHUNKS} chunks saved in {chunks}; rerun the "
                            "same command to resume"), err
    assert "Traceback" not in "\n".join(err)
    assert cli.main([*SLOW, "--out", str(out)]) == 0
    assert sl.load_sweep(out).chunks == {"total": SLOW_CHUNKS, "computed": SLOW_CHUNKS - saved,
                                        "cached": saved}


def test_console_script():
    """pyproject.toml installs `simclr-sweep`, pointing at cli.main (the command's main)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["simclr-sweep"] == "simclr_lib.cli:main"
    ep = importlib.metadata.EntryPoint("simclr-sweep", scripts["simclr-sweep"], "console_scripts")
    assert ep.load() is cli.main
    installed = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    if "simclr-sweep" in installed:                   # after `make install` / `pip install -e .`
        assert installed["simclr-sweep"] == "simclr_lib.cli:main"
    run = subprocess.run([sys.executable, "-c", "import sys; from simclr_lib.cli import main; "
                          "sys.argv[0] = 'simclr-sweep'; sys.exit(main(['--help']))"],
                         env=ENV, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("usage: simclr-sweep")
