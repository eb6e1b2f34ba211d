"""Controls of simclr_lib.checks.supervised: every check says NO where its claim is false
(and yes on a synthetic case where it is true), the setting's definitions as unit tests
(they hold by construction, so they are tests, not evidence), and the studies of
simclr_lib.studies: the result files under book/data/ match the command that regenerates them."""
from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simclr_lib as sl
from simclr_lib import studies
from simclr_lib.checks import supervised as cs

ROOT = Path(__file__).resolve().parents[1]
NS = [2, 4, 8, 16, 32, 64, 128, 256]


def _study(law, snrs, ds=(2000,), ns=NS, seeds=8, noise=0.03, rs=(0.0,), seed=0):
    """A synthetic study whose loss falls from log 2 to 0 as ``law(n, snr, d, r)`` passes 1,
    each run's boundary shifted by a random factor (the seed-to-seed spread of real runs)."""
    rng = np.random.default_rng(seed)
    snrs = np.atleast_2d(np.asarray(snrs, float))
    if snrs.shape[0] != len(ds):
        snrs = np.repeat(snrs, len(ds), 0)
    shape = (len(ds), len(rs), len(ns), snrs.shape[1], seeds)
    k = np.zeros(shape[:-1])
    for a, d in enumerate(ds):
        for b, r in enumerate(rs):
            k[a, b] = law(np.asarray(ns, float)[:, None], snrs[a][None, :], d, r)
    k = k[..., None] * np.exp(0.3 * rng.standard_normal(shape))
    loss = math.log(2) / (1 + k ** 2) + noise * rng.random(shape)
    m = {"train_loss": np.zeros(shape), "test_loss": loss, "test_error": loss / 1.4,
         "excess_error": loss / 1.4}
    return studies.Study(m, list(ds), list(rs), list(ns), snrs, list(range(seeds)))


def law_q(q, c=2.0):
    return lambda n, s, d, r: n * s ** q / c


SNRS = np.geomspace(0.28, 1.0, 6)


def test_boundary_accepts_its_own_q():
    assert cs.check_boundary(_study(law_q(3), SNRS), 3, 0.1).holds


@pytest.mark.parametrize("q_data", [2, 4])
def test_boundary_rejects_q3_on_data_with_another_q(q_data):
    v = cs.check_boundary(_study(law_q(q_data), np.geomspace(0.2, 1.0, 6)), 3, 0.1)
    assert not v.holds, v.line()


def test_boundary_needs_crossings_inside_the_grid():
    flat = _study(lambda n, s, d, r: 0 * n * s + 0.1, SNRS)   # never crosses
    assert not cs.check_boundary(flat, 3, 0.1).holds


def test_crossing_interpolates_in_log_n():
    curve = np.array([[0.7], [0.3], [0.0]])
    assert cs.crossing([2, 4, 8], curve, 0.5)[0] == pytest.approx(2 * 2 ** 0.5)
    assert np.isnan(cs.crossing([2, 4], np.array([[0.7], [0.6]]), 0.5)[0])


def test_regime_fraction_says_no_when_the_bound_mostly_fails():
    ok = np.zeros((2, 2, 8), bool)
    ok[..., :2] = True                                       # 25% of the runs meet the bound
    where = np.ones((2, 2), bool)
    assert not cs.check_regime(ok, where, "control", "bound").holds
    assert cs.check_regime(np.ones((2, 2, 8), bool), where, "control 2", "bound").holds
    assert not cs.check_regime(ok, np.zeros((2, 2), bool), "control 3", "bound").holds


def _kou(law, ds):
    base = np.geomspace(0.04, 0.13, 6)
    snrs = np.array([base * (ds[0] / d) ** 0.25 for d in ds])
    return _study(law, snrs, ds=ds, ns=[8, 16, 32, 64, 128, 256])


KOU = lambda n, s, d, r: n * s ** 4 * d / 2.0          # noqa: E731  the law, kappa* = 2


def test_kou_law_holds_on_data_that_follow_it():
    v_snr, v_d = cs.check_kou_law(_kou(KOU, [2000, 8000]), 0.1)
    assert v_snr.holds and v_d.holds


def test_kou_d_exponent_cannot_be_confirmed_by_an_n_only_run():
    _, v_d = cs.check_kou_law(_kou(KOU, [2000]), 0.1)
    assert not v_d.holds and "not varied" in v_d.measured


def test_kou_d_exponent_rejects_a_law_without_d():
    no_d = lambda n, s, d, r: n * s ** 4 * 2000 / 2.0   # noqa: E731  n SNR^4 only
    _, v_d = cs.check_kou_law(_kou(no_d, [2000, 8000]), 0.1)
    assert not v_d.holds, v_d.line()


def test_label_complexity_flat_rejects_a_supervised_like_rate():
    snrs = np.geomspace(0.3, 1.0, 6)
    _, flat = cs.check_label_complexity(_study(lambda n, s, d, r: n / 6 + 0 * s, snrs),
                                        0.1, 0.0, "control flat")
    assert flat.holds
    _, steep = cs.check_label_complexity(_study(law_q(3), snrs), 0.1, 0.0, "control steep")
    assert not steep.holds


def _budget(law):
    rs = [2.0 ** k for k in range(-5, 3)]
    return _study(law, [0.035, 0.05, 0.071, 0.1, 0.141], ns=[8], rs=rs)


def test_budget_slope_minus_two_and_its_control():
    n0 = lambda r, s: max(2, math.ceil(r / s ** 2))     # noqa: E731
    good = lambda n, s, d, r: np.vectorize(n0)(r, s) * s ** 2 / 0.3   # noqa: E731
    assert cs.check_budget(_budget(good), 0.1, 8)[1].holds
    lin = lambda n, s, d, r: np.vectorize(n0)(r, s) * s / 0.3 * 0.1   # noqa: E731  n0* ~ 1/SNR
    assert not cs.check_budget(_budget(lin), 0.1, 8)[1].holds


def test_span_check_rejects_an_update_outside_the_span(rng):
    basis = torch.randn(1, 3, 20, generator=rng, dtype=torch.float64)
    inside = torch.einsum("rk,rkd->rd", torch.randn(1, 3, generator=rng, dtype=torch.float64),
                          basis)[:, None, None].expand(1, 2, 2, 20)
    assert cs.check_span(inside.clone(), basis, 0.0).holds
    outside = torch.randn(1, 2, 2, 20, generator=rng, dtype=torch.float64)
    assert not cs.check_span(outside, basis, 0.0).holds
    assert not cs.check_span(inside.clone(), basis, 1e-3).holds


def test_one_class_probability():
    assert cs.one_class_probability(2) == 0.5 and cs.one_class_probability(4) == 0.125
    with pytest.raises(ValueError, match="n must be"):
        cs.one_class_probability(0)


def test_studies_validate_before_running():
    with pytest.raises(ValueError, match="pairing"):
        studies.supervised_study([2], [0.5], [0], pairing="both")
    with pytest.raises(ValueError, match="ns"):
        studies.simclr_study([], [0.5], [0])


def test_independent_pairing_draws_other_labels_per_cell(small_data):
    cfg = sl.SupervisedConfig(steps=2, record_every=2, n_test=20)
    a = studies.supervised_study([4], [0.4, 0.5], [0, 1], small_data, cfg, pairing="independent")
    b = studies.supervised_study([4], [0.4, 0.5], [0, 1], small_data, cfg, pairing="independent")
    assert np.array_equal(a["test_loss"], b["test_loss"])           # same seed, same result
    assert sl.cell_seed(0, 0, 0, 0, 0) != sl.cell_seed(0, 0, 0, 0, 1)


# ---- the result files under book/data/: a reduced rerun of the same command --------------

# every result file but the Kou et al. heatmap, which simclr_lib.fast writes (test_checks_kou.py)
FILES = sorted(p for p in (ROOT / "book" / "data").glob("*.npz") if p.stem != "kou_grid")


def _reduced(argv: list[str]) -> list[str]:
    """The file's own command with the grid cut to its first n, two SNRs, one seed, 3 steps."""
    out, skip = [], False
    for i, tok in enumerate(argv):
        if skip and not tok.startswith("--"):
            continue
        skip = False
        if tok in ("--ns", "--snrs", "--n0-snr2", "--ds"):
            out += [tok, *argv[i + 1:i + 2]]
            skip = True
        elif tok in ("--seeds", "--steps", "--out"):
            skip = True
        else:
            out.append(tok)
    return out + ["--seeds", "0", "--steps", "3"]


# the command line is simclr_lib.studies; files written before it moved there record
# simclr_lib.checks.supervised, which forwards to it
COMMANDS = ("python -m simclr_lib.studies ", "python -m simclr_lib.checks.supervised ")


def test_unwritable_out_fails_before_the_compute(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(studies, "run", lambda argv: ran.append(argv))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="--out: cannot write"):
        studies.main(["supervised", "--ns", "2", "--snrs", "0.5",
                      "--out", str(tmp_path / "a_file" / "r.npz")])
    assert ran == []


def test_recorded_command_forwards_to_the_studies():
    out = subprocess.run([sys.executable, "-m", "simclr_lib.checks.supervised", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m simclr_lib.studies") and "{supervised,simclr}" in out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_result_file_matches_its_command(path, tmp_path):
    study = studies.load_study(path)
    argv = study.config["argv"]
    assert study.config["command"] in [c + " ".join(argv) for c in COMMANDS]
    assert shlex.split(study.config["command"])[3:] == argv
    studies.main(_reduced(argv) + ["--out", str(tmp_path / "r.npz")])
    small = studies.load_study(tmp_path / "r.npz")
    for key in ("kind", "data", "pairing"):
        assert small.config[key] == study.config[key]
    cfg_key = "cfg" if "cfg" in study.config else "ft"
    same = {k: v for k, v in study.config[cfg_key].items() if k not in ("steps", "record_every")}
    assert {k: small.config[cfg_key][k] for k in same} == same
    assert study["test_loss"].shape == (len(study.ds), len(study.rs), len(study.ns),
                                        study.snrs.shape[1], len(study.seeds))


# ---- the setting's definitions: true by construction, so unit tests ------------------------

def test_definition_3_1_snr_orthogonality_and_balance():
    data = sl.DataConfig()
    s = sl.make_dataset(data, 2000, seeds=[0])
    mu, xi, y = s.mu[0].double(), s.noise[0].double(), s.y[0]
    sigma = math.sqrt((xi ** 2).sum(1).mean().item() / (data.d - 1))
    assert mu.norm().item() / (sigma * math.sqrt(data.d)) == pytest.approx(data.snr, rel=0.01)
    assert (xi @ mu).abs().max().item() < 1e-6
    assert abs((y > 0).double().mean().item() - 0.5) < 0.05
    assert abs(s.signal_first[0].double().mean().item() - 0.5) < 0.05


def test_cnn_equals_loop_formula_and_ignores_patch_order(rng):
    toy = sl.make_dataset(sl.DataConfig(d=6, snr=0.8), 4, seeds=[1], dtype=torch.float64)
    x = toy.patches()
    W = torch.randn(1, 2, 3, 6, generator=rng, dtype=torch.float64)
    loop = [sum(sg * max(0.0, float(W[0, j, r] @ x[0, i, p])) ** 3 / 3
                for j, sg in enumerate((1.0, -1.0)) for r in range(3) for p in range(2))
            for i in range(4)]
    fast = sl.cnn_logits(W, x, 3.0)[0]
    assert torch.allclose(fast, torch.tensor(loop, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(sl.cnn_logits(W, x.flip(2), 3.0)[0], fast, atol=1e-12)


def test_encoder_sums_the_patches(rng):
    toy = sl.make_dataset(sl.DataConfig(d=6, snr=0.8), 4, seeds=[1], dtype=torch.float64)
    W = torch.randn(1, 6, 6, generator=rng, dtype=torch.float64)
    x = toy.patches()
    loop = torch.einsum("rd,npd->nr", W[0], x[0])
    assert torch.allclose(sl.encode(W, toy.patch_sum())[0], loop, atol=1e-12)


def test_augmentation_keeps_signal_and_correlates_noise_by_rho():
    unl = sl.make_dataset(sl.DataConfig(), 500, seeds=[0], split="unlabeled")
    for rho in (0.0, 0.5):
        view = sl.augment(unl, seeds=[0], sigma_p=1.0, rho=rho)
        assert torch.equal(view.signal(), unl.signal())
        assert (view.noise[0] @ unl.mu[0]).abs().max().item() < 1e-3
        c = torch.nn.functional.cosine_similarity(view.noise[0], unl.noise[0], dim=1).mean()
        assert abs(c.item() - rho) < 0.01


def test_split_is_a_uniform_permutation_into_halves():
    runs, two_m = 400, 20
    W = torch.arange(two_m, dtype=torch.float64)[None, :, None].repeat(runs, 1, 1)
    gens = [torch.Generator().manual_seed(s) for s in range(runs)]
    halves = sl.split_filters(W, gens)
    assert halves.shape[1:3] == (2, 10)
    assert torch.equal(halves.reshape(runs, two_m).sort(1).values, W[..., 0])
    p_plus = (halves[:, 0, :, 0, None] == torch.arange(two_m)).any(1).double().mean(0)
    assert (p_plus - 0.5).abs().max().item() < 0.1
