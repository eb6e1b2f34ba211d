"""Controls for sl.checks.pretraining: each check says NO where its claim is false (and yes on
a small case where it is true)."""
from __future__ import annotations

import numpy as np
import pytest

import simclr_lib as sl

chk = sl.checks.pretraining


def test_lemma_5_1_fails_without_a_small_start():
    step = chk.one_step([1e-6, 3e-2], snr=0.25, n0=32)
    assert chk.lemma_5_1(step, sigma0=1e-6).holds
    assert not chk.lemma_5_1(step, sigma0=3e-2).holds       # logits of order one
    with pytest.raises(ValueError, match="sigma0"):
        chk.lemma_5_1(step, sigma0=1e-3)


def test_lemma_5_2_fails_where_n0_snr2_is_small():
    sp = chk.spectra([16], [0.0625, 0.5], [0, 1])            # n0 SNR^2 = 1/16 and 4
    assert chk.lemma_5_2(sp, k_min=4).holds
    assert not chk.lemma_5_2(sp, k_min=1 / 16).holds


def test_theorem_5_3_fails_for_filters_never_pretrained():
    snrs, n0s = [0.125, 0.5], [16, 64]
    kgrid = np.outer(n0s, np.square(snrs))                   # 1/4, 4 / 1, 16
    pre = np.zeros((2, 2, 2))
    start = np.zeros((2, 2, 2))
    for i, n0 in enumerate(n0s):
        for j, snr in enumerate(snrs):
            res = sl.run_pretrain([0, 1], sl.DataConfig(), sl.PretrainConfig(n0=n0), snr=snr)
            pre[i, j] = res.history.last("align_mean")
            start[i, j] = sl.alignment(res.W0, res.data.mu).mean(1).numpy()
    assert chk.theorem_5_3(pre, kgrid).holds
    assert not chk.theorem_5_3(start, kgrid).holds           # Gaussian start: |cos| ~ 1/sqrt(d)


def test_theorem_5_3_signs_fails_for_random_signs():
    rng = np.random.default_rng(0)
    cos = {1.0: 0.8, 16.0: 0.99}
    pred = {k: np.arange(200) < round(200 * (1 - np.arccos(c) / np.pi)) for k, c in cos.items()}
    assert chk.theorem_5_3_signs(pred, cos).holds
    coin = {k: rng.random(200) < 0.5 for k in cos}           # signs unrelated to the start
    assert not chk.theorem_5_3_signs(coin, cos).holds


def test_fresh_views_first_view_is_the_fixed_view_and_reproducible():
    data, cfg = sl.DataConfig(), sl.PretrainConfig(n0=16, fresh_views=True)
    a = sl.run_pretrain([0, 1], data, cfg, snr=0.5)
    b = sl.run_pretrain([0, 1], data, cfg, snr=0.5)
    fixed = sl.run_pretrain([0, 1], data, sl.PretrainConfig(n0=16), snr=0.5)
    assert np.array_equal(a.view.noise.numpy(), fixed.view.noise.numpy())
    assert np.array_equal(a.W.numpy(), b.W.numpy())
    assert not np.array_equal(a.W.numpy(), fixed.W.numpy())


def test_step_size_from_the_data_sets_lambda_1():
    res = sl.run_pretrain([0], sl.DataConfig(), sl.PretrainConfig(n0=32, lr_from="data"),
                          snr=0.5)
    ev, _ = sl.spectrum(res.data, res.view, 1.0, float(res.lr[0]), k=1)
    assert float(ev[0]) == pytest.approx(0.2, rel=1e-3)


@pytest.mark.parametrize("kw, msg", [({"lr_from": "x"}, "lr_from"),
                                     ({"fresh_views": 1}, "fresh_views")])
def test_pretrain_config_new_options_validated(kw, msg):
    with pytest.raises(ValueError, match=msg):
        sl.PretrainConfig(**kw)


def test_signs_kept_in_chunks_equals_one_batch_and_the_budget_limits_the_chunk(monkeypatch):
    """issue 12, item 5: chunked to a memory budget, the same booleans as one batch."""
    from simclr_lib.checks import pretraining as chk_pre
    data, seeds = sl.DataConfig(d=60), [0, 1, 2, 3, 4]
    ref = {n0: chk_pre.kept_signs(sl.run_pretrain(seeds, data, sl.PretrainConfig(n0=n0),
                                                  snr=0.5)) for n0 in (8, 16)}
    sizes = []
    real = chk_pre.run_pretrain
    monkeypatch.setattr(chk_pre, "run_pretrain",
                        lambda s, *a, **k: sizes.append(len(s)) or real(s, *a, **k))
    cfg = sl.PretrainConfig(n0=16)
    per = sl.chunks.run_bytes("alignment", data, 16, pre=cfg)
    budget = (sl.chunks.draw_bytes(16, data.d) + 2.5 * per) / 2 ** 30
    got = chk_pre.signs_kept([16], seeds, data, snr=0.5, memory_gb=budget)
    assert sizes == [2, 2, 1]
    np.testing.assert_array_equal(got[16], ref[16])
    got = chk_pre.signs_kept([8, 16], seeds, data, snr=0.5)          # default budget: one batch
    for n0 in (8, 16):
        np.testing.assert_array_equal(got[n0], ref[n0])
