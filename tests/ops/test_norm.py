"""batch_norm, local_response_norm and dropout: closed forms, running statistics, modes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import reference as ref

import minidl as md
import minidl.functional as F
from minidl.backend import to_numpy
from minidl.ops.cpu import batchnorm_nhwc
from minidl.ops.layout import nchw_view
from minidl.ops.norm import batch_norm_relu


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (8, 3)])
def test_batch_norm_training_and_running_stats(xp, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = xp.asarray(rng.standard_normal(3)), xp.asarray(rng.uniform(0.5, 2, 3))
    rm0, rv0 = to_numpy(rm).copy(), to_numpy(rv).copy()
    y = F.batch_norm(
        md.Tensor(xp.asarray(x)),
        rm,
        rv,
        md.Tensor(xp.asarray(gamma)),
        md.Tensor(xp.asarray(beta)),
        training=True,
        momentum=0.3,
        eps=1e-3,
    )
    axes = (0,) + tuple(range(2, len(shape)))
    b = (1, 3) + (1,) * (len(shape) - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    expected = (x - mean.reshape(b)) / np.sqrt(var.reshape(b) + 1e-3) * gamma.reshape(b)
    np.testing.assert_allclose(y.numpy(), expected + beta.reshape(b), rtol=1e-10, atol=1e-12)
    m = x.size // 3  # running variance: the unbiased estimate, as PyTorch
    np.testing.assert_allclose(to_numpy(rm), 0.7 * rm0 + 0.3 * mean, rtol=1e-12)
    np.testing.assert_allclose(to_numpy(rv), 0.7 * rv0 + 0.3 * var * m / (m - 1), rtol=1e-12)


def test_batch_norm_eval_uses_running_stats_and_leaves_them(xp):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 4))
    rm, rv = xp.asarray([0.5, -1.0, 2.0]), xp.asarray([1.0, 4.0, 0.25])
    y = F.batch_norm(md.Tensor(xp.asarray(x)), md.Tensor(rm), md.Tensor(rv), training=False)
    expected = (x - to_numpy(rm)[:, None, None]) / np.sqrt(to_numpy(rv)[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10)
    np.testing.assert_array_equal(to_numpy(rm), [0.5, -1.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_dtype_and_channels_last(xp, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    x_cl = nchw_view(xp.ascontiguousarray(xp.asarray(x).transpose(0, 2, 3, 1)))
    g, b = xp.ones(3, dtype), xp.zeros(3, dtype)
    ys = []
    for data in (xp.asarray(x), x_cl):
        t = md.Tensor(data, requires_grad=True)
        y = F.batch_norm(t, None, None, md.Tensor(g), md.Tensor(b), training=True)
        assert y.dtype == dtype
        (y * y).sum().backward()
        assert t.grad.dtype == dtype
        ys.append((y.numpy(), t.grad.numpy()))
    np.testing.assert_allclose(ys[0][0], ys[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys[0][1], ys[1][1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_batch_norm_blocked_path_matches_reference(training, relu, monkeypatch):
    """Channels-last NumPy input takes the cache-blocked, threaded path (42 blocks of wide rows
    here, the last one partial); its output, gradients and running statistics equal the
    reference path's on the NCHW copy, and the fused ReLU equals relu(batch_norm(x))."""
    monkeypatch.setattr(batchnorm_nhwc, "_BLOCK_ELEMENTS", 4096)  # 576 rows, 64 pixels per row
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 7, 40, 50)) * 3 + 2  # 24,000 rows of 7 channels
    gy = rng.standard_normal(x.shape)
    gamma, beta = rng.standard_normal(7), rng.standard_normal(7)
    results = []
    for data in (nchw_view(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), x):
        rm, rv = np.zeros(7), np.ones(7)
        t, g, b = (md.Tensor(a, requires_grad=True) for a in (data, gamma, beta))
        norm = batch_norm_relu if relu else F.batch_norm
        y = norm(t, rm, rv, g, b, training=training, momentum=0.5)
        y.backward(md.Tensor(gy))
        results.append([y.numpy(), t.grad.numpy(), g.grad.numpy(), b.grad.numpy(), rm, rv])
    for fast, reference in zip(*results):
        np.testing.assert_allclose(fast, reference, rtol=1e-9, atol=1e-9)
    if relu:
        unfused = F.relu(F.batch_norm(md.Tensor(x), np.zeros(7), np.ones(7), training=training))
        fused = batch_norm_relu(md.Tensor(x), np.zeros(7), np.ones(7), training=training)
        np.testing.assert_allclose(fused.numpy(), unfused.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sliced", ["x", "gy"])
def test_batch_norm_on_a_channel_slice_of_a_channels_last_buffer(sliced):
    """A channel slice of an NHWC buffer (what split hands to each branch as x, and the gradient of
    a concatenation as gy) takes the blocked path with rows further apart; it matches the
    reference path on contiguous copies."""
    rng = np.random.default_rng(5)
    x = nchw_view(rng.standard_normal((3, 8, 8, 9)))[:, 2:6]  # channels 2..5 of 9
    gy = nchw_view(rng.standard_normal((3, 8, 8, 9)))[:, 3:7]
    if sliced == "x":
        gy = nchw_view(np.ascontiguousarray(gy.transpose(0, 2, 3, 1)))
    else:
        x = nchw_view(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    outs = []
    for data, grad in ((x, gy), (np.ascontiguousarray(x), np.ascontiguousarray(gy))):
        t = md.Tensor(data, requires_grad=True)
        y = batch_norm_relu(t, None, None, training=True)
        y.backward(md.Tensor(grad))
        outs.append((y.numpy(), t.grad.numpy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", ["blocked", "textbook"])
@pytest.mark.parametrize("out", ["channel slice", "dense"])
def test_batch_norm_relu_writes_into_out(path, out, monkeypatch):
    """``out=``: y is written into the array given (a channel slice of a wider channels-last
    buffer, as in an Inception module's output, or a dense one), nothing else of the buffer is
    touched, and values, gradients and running statistics are those of a new array. The blocked
    path runs 3 blocks here, each computed in wide rows and copied into the slice."""
    monkeypatch.setattr(batchnorm_nhwc, "_BLOCK_ELEMENTS", 512)
    rng = np.random.default_rng(6)
    x = nchw_view(rng.standard_normal((3, 8, 8, 5)) * 2 + 1)  # 192 rows of 5 channels
    gy = nchw_view(rng.standard_normal((3, 8, 8, 5)))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    buffer = np.full((3, 8, 8, 9 if out == "channel slice" else 5), 7.0)
    target = nchw_view(buffer)[:, 3:8] if out == "channel slice" else nchw_view(buffer)
    results = []
    for into in (target, None):
        stats = np.zeros(5), np.ones(5)
        t, g, b = (md.Tensor(a, requires_grad=True) for a in (x, gamma, beta))
        with md.textbook(path == "textbook"):
            y = batch_norm_relu(t, *stats, g, b, training=True, momentum=0.5, out=into)
            y.backward(md.Tensor(gy))
        assert into is None or y.data is into
        results.append([y.numpy(), t.grad.numpy(), g.grad.numpy(), b.grad.numpy(), *stats])
    for given, new in zip(*results):
        np.testing.assert_allclose(given, new, rtol=1e-12, atol=1e-12)
    if out == "channel slice":
        assert (buffer[..., :3] == 7.0).all() and (buffer[..., 8:] == 7.0).all()
    with pytest.raises(ValueError, match=r"out must be an array like x .*got ndarray of shape"):
        batch_norm_relu(md.Tensor(x), None, None, training=True, out=np.empty((3, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"out must be an array like x .*float32"):
        batch_norm_relu(md.Tensor(x), None, None, training=True, out=np.empty(x.shape, "f4"))


def test_batch_norm_relu_writes_into_out_on_every_device(xp):
    """The textbook path (CuPy's) writes into ``out`` too, with the values of a new array."""
    rng = np.random.default_rng(7)
    x = xp.asarray(rng.standard_normal((2, 3, 4, 4)))
    out = xp.empty(x.shape)
    y = batch_norm_relu(md.Tensor(x), None, None, training=True, out=out)
    assert y.data is out
    expected = batch_norm_relu(md.Tensor(x), None, None, training=True)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_batch_norm_blocked_statistics_are_accurate_in_float32():
    """Per-block means combined in float64: no drift over 2 million rows with a large mean."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2_000_000, 3)) * 0.1 + 1000.0).astype(np.float32)
    with md.textbook(False):  # the blocked path, whatever MINIDL_TEXTBOOK says
        y = F.batch_norm(md.Tensor(x), None, None, training=True)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected, atol=2e-3)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9])
def test_local_response_norm_matches_loops(xp, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 7, 3, 4)) * 3
    y = F.local_response_norm(md.Tensor(xp.asarray(x)), size, alpha=0.2, beta=0.75, k=2.0)
    np.testing.assert_allclose(
        y.numpy(), ref.local_response_norm(x, size, 0.2, 0.75, 2.0), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_response_norm_dtype(xp, dtype):
    x = md.Tensor(
        xp.asarray(np.random.default_rng(0).standard_normal((2, 6, 3, 3)), dtype=dtype),
        requires_grad=True,
    )
    y = F.local_response_norm(x, 5)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == dtype


def test_local_response_norm_alpha_is_divided_by_size():
    """PyTorch's (and Caffe's) convention; TensorFlow/Chainer's alpha equals ours / size."""
    x = np.zeros((1, 5, 1, 1))
    x[0, 2] = 2.0
    y = F.local_response_norm(md.tensor(x, dtype=np.float64), 5, alpha=1.0, beta=1.0, k=1.0)
    assert y.numpy()[0, 2, 0, 0] == pytest.approx(2.0 / (1.0 + 4.0 / 5))


def test_dropout_train_and_eval(xp):
    xp.random.seed(0)
    x = md.Tensor(xp.ones((200, 500), dtype=np.float32), requires_grad=True)
    y = F.dropout(x, p=0.4, training=True)
    values = y.numpy()
    assert y.dtype == np.float32
    assert set(np.unique(values)) <= {0.0, np.float32(1 / 0.6)}
    assert abs((values == 0).mean() - 0.4) < 0.01
    assert abs(values.mean() - 1.0) < 0.02  # inverted dropout keeps the expectation
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), values)  # dx = mask
    assert F.dropout(x, p=0.4, training=False) is x
    assert F.dropout(x, p=0.0) is x


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\), got"):
        F.dropout(md.tensor(np.ones(3)), p=p)


def test_batch_norm_bad_input():
    x = md.tensor(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(x, None, None, md.tensor(np.ones(4)), md.tensor(np.ones(4)), training=True)
    with pytest.raises(ValueError, match="running_mean must have shape"):
        F.batch_norm(x, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="eval mode"):
        F.batch_norm(x, None, None, training=False)
