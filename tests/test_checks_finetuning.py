"""Controls for sl.checks.finetuning: each check says NO where its claim is false."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import simclr_lib as sl

chk = sl.checks.finetuning


def test_condition_4_1_every_printed_row_counts():
    data, ft = sl.DataConfig(), sl.SupervisedConfig()
    assert not chk.condition_4_1(data, sl.PretrainConfig(n0=1600), ft, 0.1, [16]).holds
    ok = chk.condition_4_1(data, sl.PretrainConfig(n0=4), sl.SupervisedConfig(q=8), 0.5, [2])
    assert ok.holds                                      # every row met, d >= n0^4 included
    small = chk.condition_4_1(data, sl.PretrainConfig(n0=2), sl.SupervisedConfig(q=8), 0.5, [2])
    assert not small.holds and "n0 SNR^2" in small.measured


@pytest.fixture(scope="module")
def split():
    return sl.run_simclr_finetune(range(40), sl.DataConfig(), sl.PretrainConfig(n0=25),
                                  sl.SupervisedConfig(steps=1, n_test=4), snr=0.8, n=2)


def test_lemma_5_4_holds_on_a_random_split(split):
    assert chk.lemma_5_4(split.pretrain.W, split.W_split, split.pretrain.data.mu).holds


def test_lemma_5_4_fails_for_filters_never_pretrained(split):
    W0 = split.pretrain.W0                               # the Gaussian start, same signs pattern
    halves = W0.reshape(W0.shape[0], 2, -1, W0.shape[-1])
    assert not chk.lemma_5_4(W0, halves, split.pretrain.data.mu).holds


def test_lemma_5_4_fails_for_a_sign_sorted_split(split):
    W, mu = split.pretrain.W, split.pretrain.data.mu
    order = torch.einsum("rkd,rd->rk", W, mu).argsort(1, descending=True)
    sorted_W = W[torch.arange(W.shape[0])[:, None], order]
    halves = sorted_W.reshape(W.shape[0], 2, -1, W.shape[-1])
    assert not chk.lemma_5_4(W, halves, mu).holds


def test_lemma_5_4_fails_without_a_split(split):
    W, mu = split.pretrain.W, split.pretrain.data.mu
    half = split.W_split[:, :1]
    assert not chk.lemma_5_4(W, torch.cat([half, half], 1), mu).holds   # not a split


def _runs(ls, ld, g, r, err=0.0, seeds=8, T=5):
    full = lambda v: np.full((seeds, T), v, float)      # noqa: E731
    return {"train_loss": full(ls), "test_loss": full(ld), "gamma_max": full(g),
            "rho_bar_max": full(r), "test_error": full(err)}


def test_theorem_5_5_fails_when_noise_is_memorised():
    assert chk.theorem_5_5(_runs(1e-3, 1e-3, 3.0, 0.2)).holds
    assert not chk.theorem_5_5(_runs(1e-3, 1e-3, 3.0, 4.5)).holds     # rho_bar of order one
    assert not chk.theorem_5_5(_runs(1e-3, 0.7, 1e-3, 4.5)).holds     # a Gaussian start


def test_gaussian_start_fails_when_the_signal_is_learned():
    assert chk.gaussian_start(_runs(1e-3, 0.7, 1e-3, 4.5)).holds
    assert not chk.gaussian_start(_runs(1e-3, 1e-3, 3.0, 0.2)).holds


def test_theorem_4_2_tests_every_named_n():
    good, bad = _runs(1e-3, 1e-2, 3, 0.2), _runs(1e-3, 0.3, 3, 4.5)
    assert chk.theorem_4_2({16: good, 32: good}, [16, 32], 0.01).holds
    assert not chk.theorem_4_2({16: bad, 32: good}, [16, 32], 0.01).holds
    assert not chk.theorem_4_2({16: good, 32: bad}, [16, 32], 0.01).holds


def test_labels_vs_direct_fails_when_direct_training_learns():
    ns = [4, 16, 64]
    ft, sup = np.full((3, 8), 0.01), np.full((3, 8), 0.5)
    assert chk.labels_vs_direct(ft, sup, ns).holds
    sup[2] = 0.05
    assert not chk.labels_vs_direct(ft, sup, ns).holds
    assert not chk.labels_vs_direct(np.full((3, 8), 0.2), np.full((3, 8), 0.5), ns).holds


# ----------------------------------------------- chunking to a memory budget (issue 12, item 5)

def _tiny():
    return (sl.DataConfig(d=60, snr=0.4), sl.PretrainConfig(n0=12, m=2),
            sl.SupervisedConfig(m=2, steps=20, n_test=15, record_every=5))


def test_seeds_per_chunk_follows_the_budget():
    data, pre, ft = _tiny()
    per = max(sl.chunks.run_bytes("alignment", data, pre.n0, pre=pre),
              2 * sl.chunks.run_bytes("supervised", data, 4, cfg=ft))
    fixed = sl.chunks.draw_bytes(max(pre.n0, ft.n_test), data.d)
    assert chk.seeds_per_chunk(data, pre, ft, [2, 4], (fixed + 3.5 * per) / 2 ** 30) == 3
    assert chk.seeds_per_chunk(data, pre, ft, [2, 4], 1e-9) == 1          # one seed always goes
    # the chapter's sizes: one seed of n0 = 1600 is already ~95 MB, so 0.1 GB runs one at a time
    big = chk.seeds_per_chunk(sl.DataConfig(snr=0.1), sl.PretrainConfig(n0=1600),
                              sl.SupervisedConfig(), [2, 4, 8, 16, 32, 64], 0.1)
    assert big == 1


def test_experiment_in_chunks_equals_one_batch():
    data, pre, ft = _tiny()
    seeds, ns = [0, 1, 2], [2, 4]
    one = chk.experiment(seeds, data, pre, ft, ns, chunk=3)
    for kw in ({"chunk": 1}, {"memory_gb": 1e-9}):                         # the budget: 1 seed
        parts = chk.experiment(seeds, data, pre, ft, ns, **kw)
        assert torch.equal(one.W_split, parts.W_split)
        np.testing.assert_array_equal(one.align, parts.align)
        np.testing.assert_array_equal(one.one_class, parts.one_class)
        for k in one.head:
            np.testing.assert_array_equal(one.head[k], parts.head[k])
        for key in ("ft", "sup"):
            for n in ns:
                for m, v in getattr(one, key)[n].items():
                    np.testing.assert_array_equal(v, getattr(parts, key)[n][m])


def test_split_study_equals_run_simclr_finetune_and_budget_limits_the_chunk(monkeypatch):
    data, pre = sl.DataConfig(d=60), sl.PretrainConfig(n0=10, m=3)
    ref = sl.run_simclr_finetune(range(7), data, pre, sl.SupervisedConfig(m=3, steps=1, n_test=4),
                                 snr=0.8, n=2)
    sizes = []
    real = chk.run_pretrain
    monkeypatch.setattr(chk, "run_pretrain",
                        lambda s, *a, **k: sizes.append(len(s)) or real(s, *a, **k))
    per = sl.chunks.run_bytes("alignment", data, pre.n0, pre=pre)
    budget = (sl.chunks.draw_bytes(pre.n0, data.d) + 3.5 * per) / 2 ** 30
    s = chk.split_study(range(7), data, pre, snr=0.8, memory_gb=budget)
    assert sizes == [3, 3, 1]                                              # 3 seeds per chunk
    assert torch.equal(s.W, ref.pretrain.W) and torch.equal(s.W_split, ref.W_split)
    assert torch.equal(s.mu, ref.pretrain.data.mu)
    np.testing.assert_array_equal(s.kept, sl.checks.pretraining.kept_signs(ref.pretrain))
    assert chk.lemma_5_4(s.W, s.W_split, s.mu).holds == chk.lemma_5_4(
        ref.pretrain.W, ref.W_split, ref.pretrain.data.mu).holds


def test_return_freed_memory_only_moves_allocations():
    import platform
    ok = sl.chapter.return_freed_memory()
    assert ok or platform.libc_ver()[0] != "glibc"               # glibc: set; elsewhere a no-op
    data, pre = sl.DataConfig(d=60), sl.PretrainConfig(n0=10, m=3, steps=5, stop="steps")
    a = sl.run_pretrain([0, 1], data, pre)
    sl.chapter.return_freed_memory(1)                           # every block mapped on its own
    b = sl.run_pretrain([0, 1], data, pre)
    sl.chapter.return_freed_memory()
    assert torch.equal(a.W, b.W)
