"""Controls of simclr_lib.checks.images and simclr_lib.checks.headline: each check says NO
where its claim is false, and yes where it is plainly true."""
from __future__ import annotations

import numpy as np
import pytest

import simclr_lib as sl
import simclr_lib.image_study as ist
import simclr_lib.images as im
from simclr_lib.checks import headline as hl
from simclr_lib.checks import images as ci


def _eff(simclr, supervised, ns):
    simclr, supervised = np.asarray(simclr, float), np.asarray(supervised, float)
    acc = {"simclr": simclr, "supervised": supervised, "probe": supervised.copy()}
    return ist.LabelEfficiency(list(ns), list(range(simclr.shape[1])), acc, None)


def _gains(rng, mean, sd, seeds):
    return mean + sd * rng.standard_normal(seeds)


# ------------------------------------------------------------------------------------------
# remark_mnist
# ------------------------------------------------------------------------------------------

def test_remark_holds_when_gain_is_clear_and_closes():
    rng = np.random.default_rng(0)
    base = 0.7 + 0.02 * rng.standard_normal((2, 16))
    simclr = base + np.stack([_gains(rng, 0.15, 0.02, 16), _gains(rng, 0.0, 0.01, 16)])
    assert ci.remark_mnist(_eff(simclr, base, [2, 64]), "control yes").holds


def test_remark_says_no_without_a_gain():
    rng = np.random.default_rng(1)
    base = 0.7 + 0.05 * rng.standard_normal((2, 16))
    assert not ci.remark_mnist(_eff(base.copy(), base, [2, 64]), "control equal").holds
    noisy = base + np.stack([_gains(rng, 0.0, 0.1, 16), _gains(rng, 0.0, 0.1, 16)])
    assert not ci.remark_mnist(_eff(noisy, base, [2, 64]), "control noise").holds


def test_remark_says_no_when_the_gap_does_not_close():
    rng = np.random.default_rng(2)
    base = 0.7 + 0.02 * rng.standard_normal((2, 16))
    g = _gains(rng, 0.15, 0.02, 16)
    simclr = base + np.stack([g, g])                       # the same gain at n = 64
    v = ci.remark_mnist(_eff(simclr, base, [2, 64]), "control no closing")
    assert not v.holds and "gain at n = 2: 0.1" in v.measured


def test_remark_says_no_on_real_runs_without_pretraining():
    """Control on real images: one pre-training step leaves the filters at their random
    start, so SimCLR + fine-tuning is direct training from another random start."""
    cfg = im.ImageConfig(steps=100, pre_steps=1)
    res = ist.label_efficiency(im.digits_task(), [2, 16], list(range(8)), cfg)
    assert (res.pretrain.stop_step == 1).all()
    assert not ci.remark_mnist(res, "control no pre-training").holds


def test_remark_rejects_one_label_count():
    with pytest.raises(ValueError, match="at least two label counts"):
        ci.remark_mnist(_eff(np.ones((1, 4)), np.ones((1, 4)), [2]), "x")


def test_gain_interval_is_student_t():
    rng = np.random.default_rng(3)
    s, d = rng.random((1, 10)), rng.random((1, 10))
    g = ci.gain_interval(_eff(s, d, [2]), 2)
    from scipy.stats import t
    x = (s - d)[0]
    half = t.ppf(0.975, 9) * x.std(ddof=1) / np.sqrt(10)
    assert g.value == pytest.approx(x.mean())
    assert (g.lo, g.hi) == pytest.approx((x.mean() - half, x.mean() + half))
    with pytest.raises(ValueError, match="n must be one of"):
        ci.gain_interval(_eff(s, d, [2]), 4)


# ------------------------------------------------------------------------------------------
# gain_follows_alignment
# ------------------------------------------------------------------------------------------

def _survey(align_means, gain_means, seeds=8, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [(k, k + 5) for k in range(len(align_means))]
    align = {p: a + 0.01 * rng.standard_normal(seeds) for p, a in zip(pairs, align_means)}
    gain = {p: g + 0.01 * rng.standard_normal(seeds) for p, g in zip(pairs, gain_means)}
    return ci.PairSurvey(pairs, 2, align, gain, {p: np.zeros(seeds) for p in pairs})


def test_alignment_check_holds_on_a_monotone_survey():
    v = ci.gain_follows_alignment(_survey([0.1, 0.3, 0.5, 0.7, 0.9], [0, .05, .1, .15, .2]),
                                  "control yes")
    assert v.holds


def test_alignment_check_says_no_when_gain_falls_or_is_flat():
    down = _survey([0.1, 0.3, 0.5, 0.7, 0.9], [0.2, 0.15, 0.1, 0.05, 0.0])
    assert not ci.gain_follows_alignment(down, "control falling").holds
    flat = _survey([0.1, 0.3, 0.5, 0.7, 0.9], [0.1] * 5, seed=4)
    assert not ci.gain_follows_alignment(flat, "control flat").holds


# ------------------------------------------------------------------------------------------
# headline: take-away, "with high probability", labels needed
# ------------------------------------------------------------------------------------------

def _grid(kind, ns, loss):
    loss = np.asarray(loss, float)[:, None, :]                 # (ns, 1 snr, seeds)
    return hl.LabelGrid(kind, list(ns), [0.1], list(range(loss.shape[-1])), loss,
                        (loss > 0.3).astype(float), loss.copy(), np.zeros_like(loss),
                        np.ones_like(loss), np.ones_like(loss))


def test_high_probability_needs_interval_above_half():
    assert hl.high_probability(np.ones(8, bool))[0]            # 8/8: [0.63, 1]
    assert not hl.high_probability(np.r_[np.ones(7), 0].astype(bool))[0]   # 7/8: [0.47, ..]
    ok, ci8 = hl.high_probability(np.zeros(8, bool))
    assert not ok and ci8.hi < 0.5


def test_takeaway_holds_only_when_both_sides_hold():
    good_s = _grid("simclr", [16], [[0.01] * 8])
    bad_d = _grid("supervised", [64], [[0.69] * 8])
    assert hl.takeaway(good_s, bad_d, 0.1, 16, 64, 0.1, "control yes").holds
    # control 1: SimCLR no better than direct training (its loss is the direct one)
    assert not hl.takeaway(_grid("simclr", [16], [[0.69] * 8]), bad_d, 0.1, 16, 64, 0.1,
                           "control no pre-training gain").holds
    # control 2: direct training benign (loss small), so Theorem 4.3's harmful side is false
    assert not hl.takeaway(good_s, _grid("supervised", [64], [[0.01] * 8]), 0.1, 16, 64,
                           0.1, "control benign direct").holds
    # control 3: small test error but test loss above eps (the quantity is the loss)
    mid = _grid("simclr", [16], [[0.3] * 8])
    assert mid.error.max() == 0
    assert not hl.takeaway(mid, bad_d, 0.1, 16, 64, 0.1, "control loss not error").holds


def test_n_star_counts_half_the_seeds_on_the_chosen_quantity():
    g = _grid("simclr", [2, 4, 8], [[0.5] * 4, [0.05, 0.05, 0.5, 0.5], [0.01] * 4])
    assert g.n_star(0.1)[0] == 4                               # 2 of 4 seeds at n = 4
    assert g.n_star(0.01)[0] == 8
    assert np.isnan(g.n_star(0.001)[0])
    assert g.n_star(0.1, on="error")[0] == 4                   # error is 0 where loss <= 0.3
    with pytest.raises(ValueError, match="on must be one of"):
        g.n_star(0.1, on="accuracy")


def test_label_grid_matches_the_pipelines():
    data = sl.DataConfig(d=200)
    ft = sl.SupervisedConfig(n_test=50, steps=20, record_every=10)
    pre = sl.PretrainConfig(steps=20)
    g = hl.label_grid("simclr", [4, 8], [0.5], [0, 1], data, ft, pre, n0=30)
    ref = sl.run_simclr_finetune([0, 1], data, pre, ft, snr=0.5, n=8, n0=30)
    np.testing.assert_allclose(g.loss[1, 0], ref.finetune.last("test_loss"), rtol=1e-5)
    assert (g.wrong_loss <= g.loss + 1e-6).all() and (g.wrong_loss >= 0).all()
    assert ((g.error == 0) <= (g.wrong_loss == 0)).all()   # no mistake, no loss from them
    np.testing.assert_allclose(g.rho_max[1, 0], ref.finetune.last("rho_bar_max"), rtol=1e-5)
    d = hl.label_grid("supervised", [8], [0.5], [0, 1], data, ft)
    np.testing.assert_allclose(d.error[0, 0], sl.run_supervised([0, 1], data, ft, snr=0.5,
                                                                n=8).last("test_error"))


@pytest.mark.parametrize("kwargs,msg", [({"kind": "probe"}, "kind must be one of"),
                                        ({"ns": [0]}, "n must be an integer >= 1"),
                                        ({"snrs": [0.0]}, "snr must be"),
                                        ({"n0": 1}, "n0 must be an integer >= 2")])
def test_label_grid_validates(kwargs, msg):
    args = {"kind": "simclr", "ns": [4], "snrs": [0.5], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=msg):
        hl.label_grid(data=sl.DataConfig(d=50), **args)
