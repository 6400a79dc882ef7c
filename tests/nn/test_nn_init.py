"""Weight initialisation: ranges and moments of each scheme, layer defaults, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
from minidl import nn
from minidl.nn import init


def _t(shape, xp=np):
    return md.Tensor(xp.zeros(shape, dtype=xp.float32))


def test_fans_and_gains():
    assert init.calculate_fans((64, 32, 3, 3)) == (32 * 9, 64 * 9)
    assert init.calculate_fans((10, 20)) == (20, 10)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="fan"):
        init.calculate_fans((3,))
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("gelu")


def test_kaiming_and_xavier_statistics(xp):
    g = np.random.default_rng(0)
    w = init.kaiming_normal_(
        _t((256, 128, 3, 3), xp), mode="fan_out", nonlinearity="relu", generator=g
    )
    assert w.dtype == np.float32 and w.device == ("cpu" if xp is np else "cuda")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    w = init.kaiming_uniform_(_t((128, 300)), a=math.sqrt(5), generator=g).numpy()
    bound = 1 / math.sqrt(300)
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.98 * bound
    w = init.xavier_uniform_(_t((200, 100)), generator=g).numpy()
    bound = math.sqrt(6 / 300)
    assert (
        w.max() <= bound
        and w.min() >= -bound
        and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    )


def test_trunc_normal_stays_in_bounds():
    w = init.trunc_normal_(
        _t((100000,)), std=1.0, a=-0.5, b=1.0, generator=np.random.default_rng(1)
    )
    v = w.numpy()
    assert v.min() >= -0.5 and v.max() <= 1.0
    assert v.mean() == pytest.approx(0.2038, abs=0.01)  # mean of N(0,1) truncated to [-0.5, 1]


def test_simple_fills():
    t = _t((3, 2))
    assert np.all(init.ones_(t).numpy() == 1)
    assert np.all(init.zeros_(t).numpy() == 0)
    assert np.all(init.constant_(t, 0.25).numpy() == 0.25)
    v = init.uniform_(t, 2, 3).numpy()
    assert v.min() >= 2 and v.max() <= 3
    assert init.normal_(_t((10000,)), 5, 0.1).numpy().mean() == pytest.approx(5, abs=0.01)


def test_manual_seed_reproduces_layers():
    init.manual_seed(7)
    a = nn.Linear(5, 4)
    init.manual_seed(7)
    b = nn.Linear(5, 4)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())


def test_layer_defaults_follow_pytorch():
    lin = nn.Linear(50, 20)
    bound = 1 / math.sqrt(50)
    for p in (lin.weight, lin.bias):
        assert p.dtype == np.float32 and np.abs(p.numpy()).max() <= bound
    conv = nn.Conv2d(8, 16, 3)
    bound = 1 / math.sqrt(8 * 9)
    assert conv.weight.shape == (16, 8, 3, 3) and np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.bias.numpy()).max() <= bound
    bn = nn.BatchNorm2d(6)
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(6))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(6))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(6))


def _patches_by_loops(images, kh, kw):
    """Every kh x kw patch of every image as a row of C*kh*kw values in (c, u, v) order."""
    N, C, H, W = images.shape
    rows = []
    for n in range(N):
        for i in range(H - kh + 1):
            for j in range(W - kw + 1):
                rows.append(images[n, :, i : i + kh, j : j + kw].reshape(-1))
    return np.array(rows, dtype=np.float64)


def test_patch_whitening_whitens_the_strongest_directions_of_the_patches(xp):
    rng = np.random.default_rng(3)
    mixing = rng.standard_normal((3, 3))  # correlated colour channels, as in photographs
    images = np.einsum("dc,nchw->ndhw", mixing, rng.standard_normal((6, 3, 7, 8))) + 0.5
    eps = 1e-3
    w = init.patch_whitening_(_t((8, 3, 2, 2), xp), xp.asarray(images.astype(np.float32)), eps)
    filters = md.backend.to_numpy(w.data).reshape(8, 12).astype(np.float64)
    covariance = np.cov(_patches_by_loops(images, 2, 2), rowvar=False, bias=True)
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1][:4]
    # each pair of filters is +f, -f; the 4 directions are uncorrelated, of variance
    # lambda / (lambda + eps), strongest first
    np.testing.assert_array_equal(filters[1::2], -filters[0::2])
    whitened = filters[0::2] @ covariance @ filters[0::2].T
    np.testing.assert_allclose(whitened, np.diag(eigenvalues / (eigenvalues + eps)), atol=2e-5)
    assert eigenvalues[0] > eigenvalues[3] > 10 * eps


def test_patch_whitening_errors_name_the_argument():
    images = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"even and at most 2 \* in \* kh \* kw = 54.*got 7 "):
        init.patch_whitening_(_t((7, 3, 3, 3)), images)
    with pytest.raises(ValueError, match=r"at most .* = 54 .*got 56 "):
        init.patch_whitening_(_t((56, 3, 3, 3)), images)
    expected = r"images must be \(N, 3, H >= 3, W >= 3\).*got shape \(2, 1, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        init.patch_whitening_(_t((8, 3, 3, 3)), images[:, :1])
    with pytest.raises(ValueError, match="weight must be 4-D"):
        init.patch_whitening_(_t((8, 27)), images)
