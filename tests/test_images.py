"""simclr_lib.images and simclr_lib.image_study: IDX loading, patches, augmentations,
pre-training, probe, the label-efficiency pipeline (chapter 7)."""
from __future__ import annotations

import gzip
import struct
from dataclasses import replace

import numpy as np
import pytest
import torch

import simclr_lib as sl
import simclr_lib.image_study as ist
import simclr_lib.images as im


# ------------------------------------------------------------------------------------------
# IDX files, written here from the format's definition
# ------------------------------------------------------------------------------------------

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
          np.float64: 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of ``a``: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    code = _CODES[a.dtype.type]
    head = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path, a: np.ndarray, compress: bool = False):
    raw = idx_bytes(a)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (3, 4, 5)), (np.int8, (7,)),
                                         (np.int16, (2, 3)), (np.int32, (4,)),
                                         (np.float32, (2, 2, 2)), (np.float64, (3, 1))])
def test_load_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    a = (rng.normal(size=shape) * 50).astype(dtype)
    out = im.load_idx(write_idx(tmp_path / "a.idx", a, compress))
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    np.testing.assert_array_equal(out, a)


def test_load_idx_gzip_is_recognised_by_content_not_name(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    path = tmp_path / "no-extension"
    path.write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(im.load_idx(path), a)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        im.load_idx(tmp_path / "nope.idx")


def test_load_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="two zero bytes"):
        im.load_idx(path)


def test_load_idx_unknown_type(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX type code"):
        im.load_idx(path)


def test_load_idx_zero_dimensions(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(ValueError, match="dimensions must be >= 1"):
        im.load_idx(path)


def test_load_idx_truncated_header(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">I", 2))
    with pytest.raises(ValueError, match="truncated header"):
        im.load_idx(path)


@pytest.mark.parametrize("extra", [-1, 1])
def test_load_idx_wrong_data_length(tmp_path, extra):
    raw = idx_bytes(np.zeros((2, 3), np.uint8))
    raw = raw[:extra] if extra < 0 else raw + b"\x00"
    path = tmp_path / "bad"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="header promises 6 data bytes"):
        im.load_idx(path)


def test_load_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8)))[:-6])
    with pytest.raises(ValueError, match="corrupt gzip"):
        im.load_idx(path)


def _tiny_mnist(tmp_path, n=60, size=28, seed=0):
    """A fake MNIST: digit 3 is a bright left bar, digit 8 a bright right bar, plus noise."""
    rng = np.random.default_rng(seed)
    digits = np.array([3, 8, 1] * (n // 3))
    imgs = rng.integers(0, 60, size=(len(digits), size, size)).astype(np.uint8)
    imgs[digits == 3, 6:22, 6:10] = 250
    imgs[digits == 8, 6:22, 18:22] = 250
    xi = write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs, compress=True)
    yi = write_idx(tmp_path / "train-labels-idx1-ubyte", digits.astype(np.uint8))
    return xi, yi, imgs, digits


def test_load_mnist_scales_and_matches(tmp_path):
    xi, yi, imgs, digits = _tiny_mnist(tmp_path)
    x, y = im.load_mnist(xi, yi)
    assert x.dtype == np.float32 and x.shape == imgs.shape and y.dtype == np.int64
    np.testing.assert_allclose(x, imgs / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, digits)


def test_load_mnist_rejects_mismatched_labels(tmp_path):
    xi, _, _, _ = _tiny_mnist(tmp_path)
    yi = write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="labels_path must hold 60 labels"):
        im.load_mnist(xi, yi)


def test_load_mnist_rejects_non_image_file(tmp_path):
    xi = write_idx(tmp_path / "x", np.zeros((4, 3), np.uint8))
    yi = write_idx(tmp_path / "y", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"images_path must hold \(N, H, W\)"):
        im.load_mnist(xi, yi)


def test_pipeline_runs_on_mnist_files(tmp_path):
    xi, yi, _, _ = _tiny_mnist(tmp_path, n=90)
    x, y = im.load_mnist(xi, yi)
    task = im.binary_task(x, y, positive=(3,), negative=(8,))
    cfg = im.ImageConfig(patch=20, stride=8, max_shift=2, n0=20, n_test=20, steps=30,
                         pre_steps=20)
    res = ist.label_efficiency(task, [2, 4], [0, 1], cfg)
    for p in ("simclr", "supervised", "probe"):
        assert res.accuracy[p].shape == (2, 2)
        assert np.all((res.accuracy[p] >= 0) & (res.accuracy[p] <= 1))


# ------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------

def test_digits_task_three_vs_eight():
    task = im.digits_task()
    assert task.images.shape == (357, 8, 8) and task.images.dtype == np.float32
    assert 0.0 <= task.images.min() and task.images.max() <= 1.0
    assert set(np.unique(task.labels)) == {-1.0, 1.0}
    assert (task.labels > 0).sum() == 183 and (task.labels < 0).sum() == 174


def test_binary_task_groups_classes():
    imgs = np.arange(6 * 4, dtype=float).reshape(6, 2, 2)
    task = im.binary_task(imgs, np.array([0, 1, 2, 3, 4, 5]), (0, 2), (5,), scale=2.0)
    np.testing.assert_array_equal(task.labels, [1, 1, -1])
    np.testing.assert_allclose(task.images, imgs[[0, 2, 5]] / 2)
    assert task.name == "digits 0/2 (+1) vs 5 (-1)"


@pytest.mark.parametrize("pos,neg,msg", [((1,), (1, 2), "must be disjoint"),
                                         ((), (1,), "at least one class"),
                                         ((1,), (9,), "class 9 has no image")])
def test_binary_task_rejects_bad_classes(pos, neg, msg):
    with pytest.raises(ValueError, match=msg):
        im.binary_task(np.zeros((3, 2, 2)), np.array([0, 1, 2]), pos, neg)


def test_binary_task_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"images must be \(N, H, W\)"):
        im.binary_task(np.zeros((3, 4)), np.array([0, 1, 2]), (0,), (1,))


# ------------------------------------------------------------------------------------------
# Patches and augmentations
# ------------------------------------------------------------------------------------------

def _patches_loop(img: np.ndarray, size: int, stride: int) -> np.ndarray:
    H, W = img.shape
    out = []
    for i in range(0, H - size + 1, stride):
        for j in range(0, W - size + 1, stride):
            out.append(img[i:i + size, j:j + size].reshape(-1))
    return np.stack(out)


@pytest.mark.parametrize("size,stride", [(4, 4), (6, 2), (8, 8), (2, 1), (4, 2)])
def test_patchify_matches_loop(size, stride):
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float64).reshape(2, 3, 8, 8)
    p = im.patchify(x, size, stride)
    for a in range(2):
        for b in range(3):
            np.testing.assert_array_equal(p[a, b].numpy(), _patches_loop(x[a, b].numpy(), size, stride))


@pytest.mark.parametrize("size,stride,msg", [(0, 1, "size must be an integer >= 1"),
                                             (2, 0, "stride must be an integer >= 1"),
                                             (9, 1, r"size must be in \[1, 8\]"),
                                             (4, 3, "leaves pixels")])
def test_patchify_rejects(size, stride, msg):
    with pytest.raises(ValueError, match=msg):
        im.patchify(torch.zeros(8, 8), size, stride)


def _shift_loop(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[i, j] = img[i + dy, j + dx] where inside, else 0 (the crop of the padded image)."""
    H, W = img.shape
    out = np.zeros_like(img)
    for i in range(H):
        for j in range(W):
            if 0 <= i + dy < H and 0 <= j + dx < W:
                out[i, j] = img[i + dy, j + dx]
    return out


def test_augment_translation_matches_loop():
    x = torch.rand(2, 5, 6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    seeds = [3, 4]
    out = im.augment_images(x, [sl.stream(s, "augment") for s in seeds], max_shift=2, noise=0.0)
    for r, s in enumerate(seeds):
        shifts = torch.randint(0, 5, (5, 2), generator=sl.stream(s, "augment")) - 2
        for i in range(5):
            dy, dx = shifts[i].tolist()
            np.testing.assert_array_equal(out[r, i].numpy(), _shift_loop(x[r, i].numpy(), dy, dx))


def test_augment_identity_without_shift_or_noise():
    x = torch.rand(1, 3, 8, 8)
    np.testing.assert_array_equal(im.augment_images(x, [torch.Generator()], 0, 0.0).numpy(), x.numpy())


def test_augment_batch_equals_one_at_a_time():
    x = torch.rand(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    seeds = [0, 5, 9]
    both = im.augment_images(x, [sl.stream(s, "augment") for s in seeds], 1, 0.1)
    for r, s in enumerate(seeds):
        one = im.augment_images(x[r:r + 1], [sl.stream(s, "augment")], 1, 0.1)
        torch.testing.assert_close(both[r:r + 1], one, rtol=0, atol=0)


def test_augment_noise_std():
    x = torch.zeros(1, 400, 8, 8, dtype=torch.float64)
    out = im.augment_images(x, [sl.stream(0, "augment")], 0, 0.3)
    assert abs(out.std().item() - 0.3) < 0.01


@pytest.mark.parametrize("kwargs,msg", [({"max_shift": -1}, "max_shift must be an integer >= 0"),
                                        ({"max_shift": 8}, r"max_shift must be in \[0, 7\]"),
                                        ({"noise": -0.1}, "noise must be"),
                                        ({"gens": []}, "gens has 0 generators")])
def test_augment_rejects(kwargs, msg):
    args = {"images": torch.zeros(1, 2, 8, 8), "gens": [torch.Generator()], "max_shift": 1,
            "noise": 0.1, **kwargs}
    with pytest.raises(ValueError, match=msg):
        im.augment_images(**args)


def test_augment_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"images must have shape \(R, n, H, W\)"):
        im.augment_images(torch.zeros(2, 8, 8), [torch.Generator()], 1, 0.1)


# ------------------------------------------------------------------------------------------
# Pre-training
# ------------------------------------------------------------------------------------------

def test_power_matrix_of_image_views_matches_formula():
    """The adapter makes diagnostics.power_matrix compute M of Lemma 5.1 on patch sums."""
    g = torch.Generator().manual_seed(0)
    z, zt = (torch.randn(2, 5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    tau = 0.7
    for r in range(2):
        M = sl.power_matrix(im._as_dataset(z, None), im._as_dataset(zt, None), tau, 1.0, r)
        ref = np.zeros((3, 3))
        Z, Zt = z[r].numpy(), zt[r].numpy()
        for i in range(5):
            ref += (np.outer(Zt[i], Z[i]) + np.outer(Z[i], Zt[i])) / (tau * 5)
            for j in range(5):
                ref -= (np.outer(Zt[j], Z[i]) + np.outer(Z[i], Zt[j])) / (tau * 25)
        np.testing.assert_allclose(M.numpy(), ref, atol=1e-12)


def _pool(seeds, n0=40):
    task = im.digits_task()
    x = torch.as_tensor(task.images[: len(seeds) * n0]).reshape(len(seeds), n0, 8, 8)
    return x, x.mean(1)


def test_pretrain_batch_equals_one_at_a_time():
    seeds = [0, 1]
    x, mean = _pool(seeds)
    cfg = im.ImageConfig(pre_steps=60)
    both = im.pretrain_encoder(x, mean, seeds, cfg)
    for r, s in enumerate(seeds):
        one = im.pretrain_encoder(x[r:r + 1], mean[r:r + 1], [s], cfg)
        assert one.stop_step[0] == both.stop_step[r]
        torch.testing.assert_close(one.W[0], both.W[r], rtol=1e-4, atol=1e-7)


def test_pretrain_stops_at_the_end_of_the_linear_phase():
    x, mean = _pool([0])
    res = im.pretrain_encoder(x, mean, [0], im.ImageConfig(pre_steps=300))
    loss = res.history["loss"]
    assert 0 < res.stop_step[0] < 300
    assert loss.shape[1] == res.stop_step[0] + 1
    # the loss starts at log n0 (all embeddings ~ 0) and has fallen when the run stops
    assert abs(loss[0, 0] - np.log(40)) < 1e-3
    assert loss[0, -1] < loss[0, 0]
    assert res.history["max_logit"][0, -1] > 1.0 >= res.history["max_logit"][0, -2]


def test_pretrain_is_the_library_loop():
    """Image pre-training is pretraining.pretrain on the views it returns: same filters."""
    x, mean = _pool([0, 1])
    cfg = im.ImageConfig(pre_steps=50)
    res = im.pretrain_encoder(x, mean, [0, 1], cfg)
    ref = sl.pretrain(res.W0, res.data, res.view, cfg.tau, res.lr, cfg.pre_steps,
                      logit_stop=cfg.logit_stop)
    torch.testing.assert_close(ref.W, res.W)
    np.testing.assert_array_equal(ref.stop_step, res.stop_step)


def test_pretrain_divergence_raises_the_library_error():
    x, mean = _pool([0])
    cfg = im.ImageConfig(lam=1e6, logit_stop=1e38, pre_steps=50)   # float32 overflows
    with pytest.raises(sl.DivergenceError, match="diverged at step"):
        im.pretrain_encoder(x, mean, [0], cfg)


def test_pretrain_alignment_recorded_against_a_direction():
    x, mean = _pool([0])
    mu = im.class_direction(im.digits_task(), 6, 2)
    res = im.pretrain_encoder(x, mean, [0], im.ImageConfig(pre_steps=40), direction=mu)
    al = sl.alignment(res.W, mu.float()[None]).mean(1)
    np.testing.assert_allclose(res.history.last("align_mean"), al.numpy(), rtol=1e-5)
    assert np.isnan(im.pretrain_encoder(x, mean, [0], im.ImageConfig(pre_steps=5))
                    .history["align_mean"]).all()


def test_pretrain_ntxent_runs_all_steps():
    x, mean = _pool([0])
    res = im.pretrain_encoder(x, mean, [0], im.ImageConfig(loss="ntxent", pre_steps=15))
    assert res.stop_step[0] == 15 and res.history["loss"].shape == (1, 16)


def test_pretrain_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"unlabeled must have shape \(runs=2"):
        im.pretrain_encoder(torch.zeros(1, 4, 8, 8), torch.zeros(1, 8, 8), [0, 1])
    with pytest.raises(ValueError, match=r"mean must have shape \(runs, H, W\)"):
        im.pretrain_encoder(torch.zeros(1, 4, 8, 8), torch.zeros(8, 8), [0])


# ------------------------------------------------------------------------------------------
# Linear probe
# ------------------------------------------------------------------------------------------

def test_linear_probe_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    R, n, k = 5, 12, 4
    h = torch.randn(R, n, k, generator=g, dtype=torch.float64)
    y = torch.where(h[..., 0] + 0.8 * torch.randn(R, n, generator=g, dtype=torch.float64) > 0,
                    1.0, -1.0)
    y[:, 0], y[:, 1] = 1.0, -1.0
    mask = torch.ones(R, n, dtype=torch.bool)
    mask[2:, 7:] = False
    ht = torch.randn(R, 200, k, generator=g, dtype=torch.float64)
    yt = torch.where(ht[..., 0] > 0, 1.0, -1.0)
    acc = im.linear_probe(h, y, mask, ht, yt, c=0.5)
    for r in range(R):
        keep = mask[r].numpy()
        clf = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000).fit(h[r].numpy()[keep],
                                                                        y[r].numpy()[keep])
        assert acc[r].item() == pytest.approx((clf.predict(ht[r].numpy()) == yt[r].numpy()).mean())


def test_linear_probe_rejects():
    h, y = torch.zeros(1, 2, 3), torch.tensor([[1.0, -1.0]])
    m = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="c must be"):
        im.linear_probe(h, y, m, h, y, c=0.0)
    with pytest.raises(ValueError, match="shapes must be"):
        im.linear_probe(h, y, m[:, :1], h, y)


# ------------------------------------------------------------------------------------------
# The experiment
# ------------------------------------------------------------------------------------------

SMALL = im.ImageConfig(steps=60, pre_steps=60)


def test_label_efficiency_shapes_and_determinism():
    task = im.digits_task()
    a = ist.label_efficiency(task, [2, 4], [0, 1], SMALL)
    b = ist.label_efficiency(task, [2, 4], [0, 1], SMALL)
    for p in ist.PIPELINES:
        assert a.accuracy[p].shape == (2, 2)
        np.testing.assert_array_equal(a.accuracy[p], b.accuracy[p])
        assert a.mean(p).shape == (2,) and a.std(p).shape == (2,)
    assert a.table().splitlines()[0].split() == ["labels", "simclr", "supervised", "probe"]


def test_label_efficiency_batch_equals_one_at_a_time():
    task = im.digits_task()
    both = ist.label_efficiency(task, [2, 8], [0, 3], SMALL)
    for s, seed in enumerate([0, 3]):
        one = ist.label_efficiency(task, [2, 8], [seed], SMALL)
        for p in ist.PIPELINES:
            np.testing.assert_allclose(one.accuracy[p][:, 0], both.accuracy[p][:, s], atol=1 / 150)


def test_split_is_nested_balanced_and_disjoint_from_test():
    task = im.digits_task()
    test, unl, lab = ist._split(task, 0, 200, 150, 64)
    assert len(set(test)) == 150 and not set(test) & set(unl) and not set(test) & set(lab)
    assert len(unl) == 200
    small = ist._split(task, 0, 200, 150, 8)[2]
    np.testing.assert_array_equal(lab[:8], small)              # nested in n
    for n in (2, 8, 64):
        assert task.labels[lab[:n]].sum() == 0                 # n / 2 per class


@pytest.mark.parametrize("ns,msg", [([3], "every n must be even"), ([0], "n must be an integer >= 2"),
                                    ([], "non-empty"), ([400], "asks for 200 labels per class")])
def test_label_efficiency_rejects_bad_ns(ns, msg):
    with pytest.raises(ValueError, match=msg):
        ist.label_efficiency(im.digits_task(), ns, [0], SMALL)


def test_label_efficiency_rejects_too_many_images():
    with pytest.raises(ValueError, match="n_test \\+ n0 = 400 exceeds"):
        ist.label_efficiency(im.digits_task(), [2], [0], replace(SMALL, n_test=200))


def test_label_efficiency_rejects_bad_geometry():
    with pytest.raises(ValueError, match="leaves pixels"):
        ist.label_efficiency(im.digits_task(), [2], [0], replace(SMALL, patch=5, stride=2))


def test_class_direction_is_difference_of_means():
    task = im.digits_task()
    mu = im.class_direction(task, 6, 2)
    z = im.patchify(torch.as_tensor(task.images, dtype=torch.float64), 6, 2).sum(-2).numpy()
    ref = z[task.labels > 0].mean(0) - z[task.labels < 0].mean(0)
    np.testing.assert_allclose(mu.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("field,value,msg", [
    ("patch", 0, "patch must be an integer >= 1"), ("stride", 0, "stride must be an integer >= 1"),
    ("n0", 1, "n0 must be an integer >= 2"), ("n_test", 0, "n_test must be an integer >= 1"),
    ("max_shift", -1, "max_shift must be an integer >= 0"), ("aug_noise", -1.0, "aug_noise must be"),
    ("m", 0, "m must be an integer >= 1"), ("tau", 0.0, "tau must be"),
    ("loss", "mse", "loss must be one of"), ("sigma0_pre", 0.0, "sigma0_pre must be"),
    ("lam", -1.0, "lam must be"), ("pre_steps", 0, "pre_steps must be an integer >= 1"),
    ("logit_stop", 0.0, "logit_stop must be"), ("q", 0.5, "q must be in"),
    ("sigma0", 0.0, "sigma0 must be"), ("lr", 0.0, "lr must be"),
    ("steps", 0, "steps must be an integer >= 1"), ("probe_c", 0.0, "probe_c must be"),
])
def test_image_config_validation(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        im.ImageConfig(**{field: value})


@pytest.mark.parametrize("device,msg", [("tpu", "device must be"),
                                        (3.5, "device must be 'cpu', 'cuda' or 'cuda:N'")])
def test_label_efficiency_rejects_bad_device(device, msg):
    with pytest.raises(ValueError, match=msg):
        ist.label_efficiency(im.digits_task(), [2], [0], SMALL, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_label_efficiency_rejects_cuda_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ist.label_efficiency(im.digits_task(), [2], [0], SMALL, device="cuda")


def test_label_efficiency_device_cpu_matches_default():
    task = im.digits_task()
    a = ist.label_efficiency(task, [2], [0], SMALL)
    b = ist.label_efficiency(task, [2], [0], SMALL, device=torch.device("cpu"))
    for p in ist.PIPELINES:
        np.testing.assert_array_equal(a.accuracy[p], b.accuracy[p])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_label_efficiency_on_cuda_matches_cpu():
    task = im.digits_task()
    a = ist.label_efficiency(task, [2, 8], [0, 1], SMALL, dtype=torch.float64)
    b = ist.label_efficiency(task, [2, 8], [0, 1], SMALL, dtype=torch.float64, device="cuda")
    for p in ist.PIPELINES:
        np.testing.assert_allclose(a.accuracy[p], b.accuracy[p], atol=1 / 150)
