"""Sweeps: chunking never changes a result, every metric is recorded, paired and independent
seeds, chunks fit the memory budget, the cache resumes, label_complexity on hand-made sweeps,
and one test per validation rule."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import chunks, sweeps
from simclr_lib.analysis import label_complexity
from simclr_lib.sweeps import SweepResult

F64 = torch.float64
DATA = sl.DataConfig(d=40)
SUP = sl.SupervisedConfig(m=3, steps=150, record_every=50, n_test=60)
PRE = sl.PretrainConfig(m=3, steps=40)
TINY = 1e-7          # GB: every chunk holds a single run


GRIDS = {
    "supervised": lambda **kw: sweeps.supervised_grid([3, 9, 5], [0.4, 1.0], [0, 1], DATA, SUP, dtype=F64, **kw),
    "alignment": lambda **kw: sweeps.alignment_grid([10, 24, 11], [0.5, 0.9], [2, 0], DATA, PRE, dtype=F64, **kw),
    "simclr": lambda **kw: sweeps.simclr_grid([4, 2], [0.5, 0.8], [0, 1], DATA, PRE, SUP, n0_snr2=4.0,
                                              dtype=F64, **kw),
}


@pytest.fixture(scope="module")
def whole():
    """Each sweep with the default budget: as few batched programs as possible."""
    return {k: g() for k, g in GRIDS.items()}


@pytest.mark.parametrize("kind", list(GRIDS))
def test_chunked_equals_unchunked(kind, whole):
    ref = whole[kind]
    tiny = GRIDS[kind](memory_gb=TINY)
    runs = tiny.values.size if kind != "simclr" else tiny.values[0].size   # simclr: (snr, seed)
    assert tiny.chunks == {"total": runs, "computed": runs, "cached": 0}
    assert tiny.chunks["total"] > ref.chunks["total"]
    assert tiny.axes == ref.axes and tiny.metric == ref.metric and tiny.config == ref.config
    np.testing.assert_allclose(tiny.values, ref.values, rtol=0, atol=1e-9)
    assert np.isfinite(ref.values).all() and ref.values.std() > 0     # not a constant placeholder


def test_few_batched_programs(whole):
    """At this tiny d one program per n (supervised) or for the whole grid (the others)."""
    assert whole["supervised"].chunks == {"total": 3, "computed": 3, "cached": 0}
    for kind in ("alignment", "simclr"):
        assert whole[kind].chunks == {"total": 1, "computed": 1, "cached": 0}


def test_every_metric_is_recorded(whole):
    """Each metric has the grid's shape, values is the main one, and mean() takes a metric."""
    expect = {"supervised": {"train_loss", "test_loss", "test_error"},
              "simclr": {"train_loss", "test_loss", "test_error"},
              "alignment": {"align_mean", "align_min"}}
    for kind, res in whole.items():
        assert set(res.metrics) == expect[kind]
        shape = tuple(len(v) for v in res.axes.values())
        for name, v in res.metrics.items():
            assert v.shape == shape and np.isfinite(v).all(), (kind, name)
            np.testing.assert_array_equal(res.mean(name), v.mean(-1))
        assert res.values is res.metrics[res.metric]
        np.testing.assert_array_equal(res.mean(), res.values.mean(-1))
    sup = whole["supervised"]
    assert (sup.metrics["test_loss"] != sup.metrics["train_loss"]).any()
    assert (whole["alignment"].metrics["align_min"] <= whole["alignment"].values + 1e-12).all()
    with pytest.raises(ValueError, match="metric must be one of"):
        sup.mean("align_mean")


def test_executor_equals_in_process(whole):
    with ThreadPoolExecutor(2) as ex:
        res = GRIDS["supervised"](executor=ex, memory_gb=TINY)
    np.testing.assert_allclose(res.values, whole["supervised"].values, rtol=0, atol=1e-9)


def test_one_cell_equals_its_own_run(whole):
    """values[i_n, i_snr, i_seed] is the run with those parameters, trained on its own."""
    h = sl.run_supervised([1], DATA, sl.config.replace(SUP, n=9), snr=1.0, dtype=F64)
    assert whole["supervised"].values[1, 1, 1] == pytest.approx(h.last("test_error")[0], abs=1e-9)
    r = sl.run_pretrain([0], DATA, PRE, snr=0.9, n0=24, dtype=F64)
    assert whole["alignment"].values[1, 1, 1] == pytest.approx(r.history.last("align_mean")[0], abs=1e-9)
    s = sl.run_simclr_finetune([1], DATA, PRE, SUP, snr=0.8, n=2, n0=sweeps.n0_for(0.8, 4.0), dtype=F64)
    assert whole["simclr"].values[1, 1, 1] == pytest.approx(s.finetune.last("test_error")[0], abs=1e-9)


def test_paired_and_independent_seeds(whole):
    """Paired: cell (i, j) of seed s is the run of seed s. Independent: it is the run of
    cell_seed(s, i, j), and cells of one seed no longer share their data."""
    paired = whole["supervised"]
    indep = GRIDS["supervised"](pairing="independent")
    assert paired.config["pairing"] == "paired" and indep.config["pairing"] == "independent"
    cfg = sl.config.replace(SUP, n=9)
    for res, seed in ((paired, 1), (indep, sl.cell_seed(1, 1, 1))):
        h = sl.run_supervised([seed], DATA, cfg, snr=1.0, dtype=F64)
        for k in ("train_loss", "test_loss", "test_error"):
            assert res.metrics[k][1, 1, 1] == pytest.approx(h.last(k)[0], abs=1e-9)
    assert not np.allclose(paired.metrics["test_loss"], indep.metrics["test_loss"])
    # in the paired grid a seed's training set is shared by its row: the same labels at every
    # SNR; independently drawn cells see other data
    snr_rows = [sl.run_supervised([s], DATA, cfg, snr=x, dtype=F64).train.y
                for s, x in ((1, 0.4), (1, 1.0), (sl.cell_seed(1, 1, 0), 0.4))]
    assert torch.equal(snr_rows[0], snr_rows[1]) and not torch.equal(snr_rows[0], snr_rows[2])
    s = GRIDS["simclr"](pairing="independent")
    r = sl.run_simclr_finetune([sl.cell_seed(1, 1, 1)], DATA, PRE, SUP, snr=0.8, n=2,
                               n0=sweeps.n0_for(0.8, 4.0), dtype=F64)
    assert s.metrics["test_loss"][1, 1, 1] == pytest.approx(r.finetune.last("test_loss")[0], abs=1e-9)
    a = GRIDS["alignment"](pairing="independent")
    p = sl.run_pretrain([sl.cell_seed(0, 1, 1)], DATA, PRE, snr=0.9, n0=24, dtype=F64)
    assert a.values[1, 1, 1] == pytest.approx(p.history.last("align_mean")[0], abs=1e-9)
    with pytest.raises(ValueError, match="pairing must be one of"):
        GRIDS["supervised"](pairing="shared")


def test_cache_resumes_without_recomputing(tmp_path, whole):
    first = GRIDS["alignment"](memory_gb=TINY, cache_dir=tmp_path)
    assert first.chunks["computed"] == first.chunks["total"] == 12
    files = sorted(tmp_path.glob("alignment-*.npz"))
    assert len(files) == 12
    files[0].unlink()                                           # an interrupted sweep
    again = GRIDS["alignment"](memory_gb=TINY, cache_dir=tmp_path)
    assert again.chunks == {"total": 12, "computed": 1, "cached": 11}
    np.testing.assert_array_equal(again.values, first.values)
    other = sweeps.alignment_grid([10, 24, 11], [0.5, 0.9], [2, 0], DATA,
                                  sl.config.replace(PRE, tau=0.5), dtype=F64, memory_gb=TINY,
                                  cache_dir=tmp_path)        # another config: another key
    assert other.chunks["computed"] == 12


def test_chunks_fit_the_budget():
    """Every chunk's estimated working set is within memory_gb (a lone run always goes)."""
    data = sl.DataConfig(d=2000)
    nbytes = lambda n0: sweeps.run_bytes("alignment", data, n0, pre=sl.PretrainConfig())  # noqa: E731
    sizes = [25, 100, 400, 1600] * 9
    for gb in (0.05, 0.3, 1.0):
        cut = chunks.cut(sizes, nbytes, gb, lambda n0: chunks.pretrain_cost(n0, 2000, 10))
        assert sorted(i for c in cut for i in c) == list(range(len(sizes)))
        for c in cut:
            p = max(sizes[i] for i in c)
            assert len(c) == 1 or len(c) * nbytes(p) <= gb * 2 ** 30
            assert p == min(sizes[i] for i in c)              # no padding of pre-training here


def test_run_bytes_scale():
    """Per-run estimates grow with the sample sizes, d and the dtype; weight > coefficient."""
    d = sl.DataConfig(d=2000)
    sup = sl.SupervisedConfig()
    est = lambda **kw: sweeps.run_bytes("supervised", d, 64, cfg=sup, **kw)  # noqa: E731
    assert est(dtype=F64) == 2 * est()
    weight = sweeps.run_bytes("supervised", d, 64, cfg=sl.config.replace(sup, method="weight"))
    assert weight > 4 * est()
    # the test set dominates: n_test * d float32 numbers, at least
    assert est() >= 4 * sup.n_test * d.d
    a = [sweeps.run_bytes("alignment", d, n0, pre=sl.PretrainConfig()) for n0 in (100, 400, 1600)]
    assert a[0] < a[1] < a[2]
    s = sweeps.run_bytes("simclr", d, 400, cfg=sup, pre=sl.PretrainConfig(), ns=[2, 4, 8])
    assert s >= a[1]
    with pytest.raises(ValueError, match="kind must be one of"):
        sweeps.run_bytes("nope", d, 4, cfg=sup)


# ---------------------------------------------------------------------------------------------
# label_complexity on a hand-made sweep

def hand_made(values_mean: np.ndarray, ns, snrs) -> SweepResult:
    vals = np.repeat(np.asarray(values_mean, float)[..., None], 2, axis=-1)   # 2 identical seeds
    return SweepResult(vals, {"n": list(ns), "snr": list(snrs), "seed": [0, 1]}, "test_error")


def test_label_complexity_hand_made():
    ns = [64, 4, 16]                                  # unsorted on purpose
    mean = np.array([[0.00, 0.30, 0.05],              # n = 64
                     [0.50, 0.50, 0.40],              # n = 4
                     [0.05, 0.40, 0.20]])             # n = 16
    lc = lambda res, t: label_complexity(res, t, metric="test_error")  # noqa: E731
    out = lc(hand_made(mean, ns, [0.5, 0.1, 0.2]), 0.1)
    np.testing.assert_array_equal(out, [16.0, np.nan, 64.0])
    assert np.isnan(lc(hand_made(mean, ns, [1, 2, 3]), 0.01)).sum() == 2
    # the threshold is strict: an error equal to it does not count
    np.testing.assert_array_equal(lc(hand_made(mean, ns, [1, 2, 3]), 0.05), [64.0, np.nan, np.nan])


def test_label_complexity_on_the_test_loss():
    """The default metric is the test loss of the seed mean; other metrics are ignored."""
    loss = np.array([[[0.9, 0.7], [0.5, 0.5]],        # n = 2: seed means 0.8, 0.5
                     [[0.3, 0.1], [0.1, 0.1]],        # n = 8: 0.2, 0.1
                     [[0.0, 0.0], [0.0, 0.0]]])       # n = 32
    error = np.zeros_like(loss)                       # would give n* = 2 everywhere
    res = SweepResult(None, {"n": [2, 8, 32], "snr": [0.1, 0.2], "seed": [0, 1]}, "test_error",
                      metrics={"test_loss": loss, "test_error": error})
    np.testing.assert_array_equal(label_complexity(res, 0.15), [32.0, 8.0])
    np.testing.assert_array_equal(label_complexity(res, 0.6), [8.0, 2.0])
    np.testing.assert_array_equal(label_complexity(res, 0.15, metric="test_error"), [2.0, 2.0])
    assert sweeps.label_complexity is label_complexity          # the re-export
    with pytest.raises(ValueError, match="metric must be one of"):
        label_complexity(res, 0.1, metric="train_loss")
    # a grid with a d axis: one n* per (d, snr)
    res4 = SweepResult(None, {"n": [2, 8, 32], "d": [10], "snr": [0.1, 0.2], "seed": [0, 1]},
                       "test_loss", metrics={"test_loss": loss[:, None]})
    np.testing.assert_array_equal(label_complexity(res4, 0.15), [[32.0, 8.0]])


def test_label_complexity_on_a_real_sweep(whole):
    """On a computed sweep: n* is where the seed mean of the test loss first drops below."""
    res = whole["supervised"]
    mean = res.mean("test_loss")                      # (n, snr)
    ns = np.array(res.axes["n"])
    t = float(np.median(mean))
    expect = [min((n for n, v in zip(ns, mean[:, j]) if v < t), default=np.nan)
              for j in range(mean.shape[1])]
    np.testing.assert_array_equal(label_complexity(res, t), expect)


def test_label_complexity_uses_the_seed_mean():
    vals = np.array([[[0.0, 0.3]], [[0.0, 0.0]]])    # n = 2: mean 0.15; n = 8: mean 0
    res = SweepResult(vals, {"n": [2, 8], "snr": [0.1], "seed": [0, 1]}, "test_error")
    assert label_complexity(res, 0.1, "test_error")[0] == 8
    assert label_complexity(res, 0.2, "test_error")[0] == 2


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5, float("nan"), "0.1"])
def test_label_complexity_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be"):
        label_complexity(hand_made(np.zeros((1, 1)), [4], [0.1]), threshold, "test_error")


def test_label_complexity_needs_n_snr_sweep():
    res = SweepResult(np.zeros((1, 1, 1)), {"n0": [4], "snr": [0.1], "seed": [0]}, "align_mean")
    with pytest.raises(ValueError, match="first axis is n"):
        label_complexity(res, 0.1, "align_mean")


# ---------------------------------------------------------------------------------------------
# Validation: one test per rule, each asserting its message

SUP1 = sl.SupervisedConfig(m=2, steps=1, n_test=4)


@pytest.mark.parametrize("call, message", [
    (lambda: sweeps.supervised_grid([], [0.1], [0], DATA, SUP1), "ns must be a non-empty sequence"),
    (lambda: sweeps.supervised_grid(4, [0.1], [0], DATA, SUP1), "ns must be a non-empty sequence"),
    (lambda: sweeps.supervised_grid([0], [0.1], [0], DATA, SUP1), "ns must be an integer >= 1"),
    (lambda: sweeps.supervised_grid([4], [-0.1], [0], DATA, SUP1), r"snrs must be in \[0.0, inf\)"),
    (lambda: sweeps.alignment_grid([4], [0.0], [0], DATA, PRE), r"snrs must be in \(0.0, inf\)"),
    (lambda: sweeps.supervised_grid([4], [], [0], DATA, SUP1), "snrs must be a non-empty sequence"),
    (lambda: sweeps.supervised_grid([4], [0.1], [], DATA, SUP1), "seeds must be a non-empty sequence"),
    (lambda: sweeps.supervised_grid([4], [0.1], [-1], DATA, SUP1), "seed must be an integer >= 0"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, memory_gb=0),
     r"memory_gb must be a number in \(0, inf\]"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, memory_gb=float("nan")),
     "memory_gb must be a number"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, device="tpu"),
     "device must be 'cpu'"),
    (lambda: sweeps.simclr_grid([4], [0.1], [0], DATA, PRE, SUP, device="tpu"),
     "device must be 'cpu'"),
    (lambda: sweeps.alignment_grid([4], [0.1], [0], DATA, PRE, device="tpu"),
     "device must be 'cpu'"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, executor="x"),
     "executor must be None or a concurrent.futures.Executor"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, pairing="x"), "pairing must be one of"),
    (lambda: sweeps.supervised_grid([4], None, [0], DATA, SUP1), "give exactly one of snrs and mu_norms"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, mu_norms=[1.0]),
     "give exactly one of snrs and mu_norms"),
    (lambda: sweeps.supervised_grid([4], seeds=[0], mu_norms=[-1.0]), r"mu_norms must be in \[0.0, inf\)"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, ds=[1]), "ds must be an integer >= 2"),
    (lambda: sweeps.supervised_grid([4], [0.1], None, DATA, SUP1), "seeds must be a non-empty sequence"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], sl.PretrainConfig(), SUP1), "data must be a DataConfig"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, {"n": 4}), "cfg must be a SupervisedConfig"),
    (lambda: sweeps.supervised_grid([4], [0.1], [0], DATA, SUP1, dtype=torch.float16),
     "dtype must be torch.float32 or torch.float64"),
    (lambda: sweeps.alignment_grid([1], [0.1], [0], DATA, PRE), "n0s must be an integer >= 2"),
    (lambda: sweeps.alignment_grid([4], [float("inf")], [0], DATA, PRE), "snrs must be a finite number"),
    (lambda: sweeps.simclr_grid([4], [0.1], [0], DATA, PRE, SUP1, n0_snr2=0.0), "n0_snr2 must be in"),
    (lambda: sweeps.simclr_grid([4], [0.1], [0], DATA, PRE, SUP1), r"ft.m \(2\) must equal pre.m \(3\)"),
])
def test_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_n0_for():
    assert sweeps.n0_for(0.1, 16.0) == 1600
    assert sweeps.n0_for(10.0, 1.0) == 2


# ---------------------------------------------------------------------------------------------
# Grids over d and ||mu||, the budget, the cache key, the supervised cells, the loader

def test_grid_over_d_and_mu_norm():
    """Axes (n, d, mu_norm, seed); a cell is its own run at snr = mu / (sigma_p sqrt(d)); an
    snr grid at one d is the same as the mu_norm grid it implies; ||mu|| = 0 is at chance."""
    cfg = sl.SupervisedConfig(m=2, steps=40, record_every=40, n_test=300)
    res = sweeps.supervised_grid([4, 8], seeds=[0, 1, 2], data=DATA, cfg=cfg, ds=[20, 50],
                                 mu_norms=[0.0, 2.0], dtype=F64)
    assert res.axes == {"n": [4, 8], "d": [20, 50], "mu_norm": [0.0, 2.0], "seed": [0, 1, 2]}
    assert res.values.shape == (2, 2, 2, 3) and res.config["grid"]["d"] == [20, 50]
    data = sl.DataConfig(d=50, snr=2.0 / np.sqrt(50))
    h = sl.run_supervised([2], data, sl.config.replace(cfg, n=8), dtype=F64)
    for k in ("train_loss", "test_loss", "test_error"):
        assert res.metrics[k][1, 1, 1, 2] == pytest.approx(h.last(k)[0], abs=1e-9)
    assert abs(res.mean()[:, :, 0] - 0.5).max() < 0.1          # no signal: chance
    assert res.mean()[:, :, 1].mean() < 0.45                    # a signal is learned
    by_snr = sweeps.supervised_grid([4, 8], [2.0 / np.sqrt(50)], [0, 1, 2],
                                    sl.DataConfig(d=50), cfg, dtype=F64)
    np.testing.assert_allclose(by_snr.values[:, 0], res.values[:, 1, 1], rtol=0, atol=1e-12)


def test_infinite_budget_is_one_chunk_per_block():
    inf = GRIDS["supervised"](memory_gb=float("inf"))
    ref = GRIDS["supervised"]()
    assert inf.chunks["total"] == 3
    np.testing.assert_array_equal(inf.values, ref.values)


def test_supervised_cells_equals_the_pipeline():
    """fast.supervised_cells: entry [j, s] is run_supervised(seeds[s]) at ||mu|| = mu_norms[j]."""
    from simclr_lib import fast
    cfg = sl.SupervisedConfig(m=3, steps=30, n_test=50)
    seeds, mus = [4, 0, 7], [0.0, 1.5, 3.0]
    out = fast.supervised_cells(seeds, mus, 6, DATA, cfg, "cpu", F64)
    assert set(out) == {"train_loss", "test_loss", "test_error"}
    for j, mu in enumerate(mus):
        h = sl.run_supervised(seeds, sl.config.replace(DATA, snr=mu / np.sqrt(DATA.d)),
                              sl.config.replace(cfg, n=6), dtype=F64)
        for k, v in out.items():
            assert v.shape == (3, 3)
            np.testing.assert_allclose(v[j], h.last(k), rtol=0, atol=1e-12)


def test_cache_key_hashes_source_and_configuration(monkeypatch):
    args = ([0], [1.0], 4, DATA, SUP, "cpu", F64)
    key = chunks.chunk_key("supervised", args)
    assert key == chunks.chunk_key("supervised", args)
    assert key != chunks.chunk_key("supervised", (*args[:3], sl.config.replace(DATA, p=0.1),
                                                  *args[4:]))
    assert key != chunks.chunk_key("supervised", (*args[:6], torch.float32))
    monkeypatch.setattr(chunks, "source_hash", lambda: "an edited library")
    assert chunks.chunk_key("supervised", args) != key           # a code change invalidates


def test_source_hash_covers_the_library():
    import hashlib
    from pathlib import Path
    root = Path(sl.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    assert chunks.source_hash() == h.hexdigest()[:16]


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_load_sweep_round_trip(tmp_path, suffix, whole):
    for kind, res in whole.items():
        path = tmp_path / f"{kind}{suffix}"
        sl.sweeps.save_sweep(res, path)
        back = sl.load_sweep(path)
        assert isinstance(back, SweepResult)
        assert back.axes == res.axes and back.metric == res.metric
        assert back.config == res.config and back.chunks == res.chunks
        assert set(back.metrics) == set(res.metrics)
        for k, v in res.metrics.items():
            np.testing.assert_array_equal(back.metrics[k], v)
        np.testing.assert_array_equal(back.mean("test_loss" if kind != "alignment" else
                                                "align_min"),
                                      res.mean("test_loss" if kind != "alignment" else "align_min"))
    assert not list(tmp_path.glob(".*tmp"))                    # no temporary file left
    with pytest.raises(ValueError, match="path must end in .npz or .json"):
        sl.load_sweep(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="is not a file"):
        sl.load_sweep(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    with pytest.raises(ValueError, match="is not a sweep result"):
        sl.load_sweep(tmp_path / "other.npz")


def test_progress_default_is_interactive_only(monkeypatch, capsys):
    """progress=None: silent here (pytest: stderr is not a terminal) and in headless kernels;
    a bar when asked, or in a kernel a Jupyter server started (JPY_SESSION_NAME)."""
    from simclr_lib import progress
    monkeypatch.delenv("SIMCLR_PROGRESS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not progress.enabled() and progress.enabled(True) and not progress.enabled(False)
    monkeypatch.setitem(sys.modules, "ipykernel", sys)           # as inside a kernel
    assert not progress.enabled()                                 # nbclient, nbval, the book
    monkeypatch.setenv("JPY_SESSION_NAME", "book/intro.md")
    assert progress.enabled()                                     # JupyterLab
    with progress.quiet():
        assert not progress.enabled()
    monkeypatch.setenv("SIMCLR_PROGRESS", "0")
    assert not progress.enabled()
    monkeypatch.delitem(sys.modules, "ipykernel")
    monkeypatch.setenv("SIMCLR_PROGRESS", "1")
    capsys.readouterr()
    sl.run_supervised([0], DATA, sl.SupervisedConfig(m=2, steps=60, n_test=10))
    assert "GD" in capsys.readouterr().err                       # the step bar
    GRIDS["alignment"](progress=True)
    err = capsys.readouterr().err
    assert "alignment: 100%" in err and "pre-training" not in err   # one bar, not nested
    monkeypatch.setenv("SIMCLR_PROGRESS", "0")
    sl.run_supervised([0], DATA, sl.SupervisedConfig(m=2, steps=60, n_test=10))
    assert capsys.readouterr().err == ""


def test_runs_within_a_budget():
    from simclr_lib.chunks import runs_within
    gb = 2 ** 30
    assert runs_within(1.0, gb / 4) == 4
    assert runs_within(1.0, gb / 4, fixed=gb / 2) == 2
    assert runs_within(1.0, 2 * gb) == 1                       # a single run always goes
    for bad in (0.0, -1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="memory_gb"):
            runs_within(bad, 1.0)
