"""Pooling: forward against naive loops over a grid, arg-max routing, adaptive windows, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import reference as ref
from helpers.fast_paths import PATHS, use_path

import minidl as md
import minidl.functional as F
from minidl.gradcheck import check_grad
from minidl.ops.layout import nchw_view
from minidl.ops.pool import adaptive_windows
from minidl.registry import tie_free

SHAPES = [(1, 1, 7, 5), (2, 3, 6, 9), (1, 2, 8, 8)]
KERNELS = [(2, 2), (3, 3), (2, 3), (5, 4), (7, 7)]
STRIDES = [None, 1, 2, 3, (1, 2)]
PADDINGS = [0, 1, 2, 3, (1, 0)]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _grid():
    for shape, k, s, p, ceil in itertools.product(
        SHAPES, KERNELS, STRIDES, PADDINGS, [False, True]
    ):
        pp = _pair(p)
        if pp[0] > k[0] // 2 or pp[1] > k[1] // 2:
            continue  # PyTorch's limit: padding at most half the kernel
        if k[0] > shape[2] + 2 * pp[0] or k[1] > shape[3] + 2 * pp[1]:
            continue
        yield shape, k, s, p, ceil


GRID = list(_grid())


@pytest.fixture(params=PATHS)
def path(request, xp, monkeypatch):
    """The pools' fast NumPy path (pool_blocked) or their textbook code (what CuPy arrays run)."""
    use_path(request.param, xp, monkeypatch)


@pytest.mark.parametrize("shape,k,stride,padding,ceil_mode", GRID)
def test_pools_match_naive_loops(xp, path, shape, k, stride, padding, ceil_mode):
    rng = np.random.default_rng(0)
    x = tie_free(rng, shape)
    s = k if stride is None else _pair(stride)
    p = _pair(padding)
    t = md.Tensor(xp.asarray(x))
    y = F.max_pool2d(t, k, stride, padding, ceil_mode)
    np.testing.assert_array_equal(y.numpy(), ref.max_pool2d(x, k, s, p, ceil_mode))
    for include in (True, False):
        y = F.avg_pool2d(t, k, stride, padding, ceil_mode, count_include_pad=include)
        np.testing.assert_allclose(
            y.numpy(), ref.avg_pool2d(x, k, s, p, ceil_mode, include), rtol=1e-12, atol=1e-12
        )


def test_grid_covers_partial_last_windows():
    """The grid above includes ceil_mode cases whose last window hangs past the input."""
    partial = [
        (shape, k, s, p)
        for shape, k, s, p, ceil in GRID
        if ceil
        and s is not None
        and ref.pool_output_size(shape[2], k[0], _pair(s)[0], _pair(p)[0], True)
        > ref.pool_output_size(shape[2], k[0], _pair(s)[0], _pair(p)[0], False)
    ]
    assert len(partial) > 10


@pytest.mark.parametrize(
    "size,k,s,p,ceil,expected",
    [
        (112, 3, 2, 0, True, 56),  # GoogLeNet's stem pools round up (Caffe's rule)
        (112, 3, 2, 0, False, 55),
        (14, 2, 2, 0, True, 7),
        (5, 2, 2, 1, True, 3),  # a 4th window would start in the right padding: dropped
        (6, 3, 2, 1, True, 4),
    ],
)
def test_ceil_mode_output_size(size, k, s, p, ceil, expected):
    y = F.max_pool2d(md.tensor(np.zeros((1, 1, size, size))), k, s, p, ceil_mode=ceil)
    assert y.shape == (1, 1, expected, expected)


def test_max_pool_padding_is_minus_infinity(xp, path):
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: zero padding would win
    y = F.max_pool2d(md.Tensor(xp.asarray(x)), 3, 1, 1).numpy()
    np.testing.assert_array_equal(y, ref.max_pool2d(x, (3, 3), (1, 1), (1, 1)))
    assert (y < 0).all()


def test_max_pool_backward_routes_to_first_argmax_on_ties(xp, path):
    x = md.Tensor(xp.asarray(np.zeros((1, 1, 2, 2))), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1.0, 0.0], [0.0, 0.0]])
    # overlapping windows: the gradient of each window lands on its (first) maximum
    v = np.array([[1.0, 3.0, 2.0], [3.0, 0.0, 3.0]])[None, None]
    x = md.Tensor(xp.asarray(v), requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[0, 2, 0], [0, 0, 0]])


def _max_pool_backward_loops(x, gy, k, s, p):
    """Naive reference: each window's gradient to its first maximum in row-major order."""
    gx = np.zeros_like(x)
    N, C, H, W = x.shape
    for n, c, i, j in np.ndindex(*gy.shape):
        rows = range(max(0, i * s - p), min(H, i * s - p + k))
        cols = range(max(0, j * s - p), min(W, j * s - p + k))
        window = [(x[n, c, r, q], r, q) for r in rows for q in cols]
        best = max(v for v, _, _ in window)
        _, r, q = next(w for w in window if w[0] == best)
        gx[n, c, r, q] += gy[n, c, i, j]
    return gx


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_3x3_with_many_ties_routes_like_loops(xp, path, stride, channels_last):
    """ReLU outputs tie often (zeros): every window's gradient goes to its first maximum."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (2, 3, 6, 7)).astype(np.float64)
    data = xp.asarray(x)
    if channels_last:
        data = nchw_view(xp.ascontiguousarray(data.transpose(0, 2, 3, 1)))
    t = md.Tensor(data, requires_grad=True)
    y = F.max_pool2d(t, 3, stride, 1)
    np.testing.assert_array_equal(y.numpy(), ref.max_pool2d(x, (3, 3), (stride,) * 2, (1, 1)))
    gy = rng.standard_normal(y.shape)
    y.backward(xp.asarray(gy))
    np.testing.assert_allclose(
        t.grad.numpy(), _max_pool_backward_loops(x, gy, 3, stride, 1), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_dtype_and_channels_last(xp, path, dtype):
    rng = np.random.default_rng(1)
    x = tie_free(rng, (2, 3, 7, 6)).astype(dtype)
    x_cl = nchw_view(xp.ascontiguousarray(xp.asarray(x).transpose(0, 2, 3, 1)))
    for fn in (
        lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True),
        lambda t: F.avg_pool2d(t, 3, 1, 1),
        lambda t: F.adaptive_avg_pool2d(t, (3, 2)),
    ):
        a, b = md.Tensor(xp.asarray(x), requires_grad=True), md.Tensor(x_cl, requires_grad=True)
        ya, yb = fn(a), fn(b)
        assert ya.dtype == yb.dtype == dtype
        np.testing.assert_allclose(ya.numpy(), yb.numpy(), rtol=1e-6)
        g = rng.standard_normal(ya.shape).astype(dtype)
        ya.backward(xp.asarray(g))
        yb.backward(xp.asarray(g))
        assert a.grad.dtype == dtype
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "pool",
    [
        lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
        lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1)),
        lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        lambda x: F.avg_pool2d(x, (3, 2), 1, (1, 0)),
    ],
    ids=["max 3x3 s2 p1 ceil", "max 2x3 s(1,2) p1", "avg 3x3 s2 p1 ceil excl", "avg 3x2 s1 p(1,0)"],
)
def test_pool_gradients_directional(xp, path, pool):
    """Each path's backward against central differences (tie-free input: max is smooth there)."""
    x = tie_free(np.random.default_rng(7), (2, 3, 9, 8))
    check_grad(pool, [xp.asarray(x)], tol=1e-6, full_limit=0)


@pytest.mark.parametrize("size,out", [(14, 4), (7, 3), (5, 5), (9, 1), (10, 7), (3, 6)])
def test_adaptive_avg_pool_matches_window_rule(xp, size, out):
    rng = np.random.default_rng(size * out)
    x = rng.standard_normal((2, 3, size, size + 1))
    y = F.adaptive_avg_pool2d(md.Tensor(xp.asarray(x)), (out, out + 1)).numpy()
    np.testing.assert_allclose(y, ref.adaptive_avg_pool2d(x, (out, out + 1)), rtol=1e-12)


def test_adaptive_windows_overlap_14_to_4():
    assert adaptive_windows(14, 4) == [(0, 4), (3, 7), (7, 11), (10, 14)]


@pytest.mark.parametrize(
    "call,error,words",
    [
        (lambda x: F.max_pool2d(x, 3, 1, 2), ValueError, ["padding", "half", "(2, 2)", "(3, 3)"]),
        (lambda x: F.avg_pool2d(x, 2, padding=(0, 2)), ValueError, ["padding", "(0, 2)"]),
        (lambda x: F.max_pool2d(x, 3, stride=0), ValueError, ["stride", ">= 1", "0"]),
        (lambda x: F.avg_pool2d(x, 3, stride=-1), ValueError, ["stride", "-1"]),
        (lambda x: F.max_pool2d(x, 9), ValueError, ["kernel_size", "(9, 9)", "(5, 5)"]),
        (lambda x: F.max_pool2d(x, 2.0), TypeError, ["kernel_size", "int", "2.0"]),
        (lambda x: F.max_pool2d(x[0], 2), ValueError, ["4-D", "3-D"]),
        (lambda x: F.adaptive_avg_pool2d(x, 0), ValueError, ["output_size", ">= 1", "0"]),
    ],
)
def test_pool_bad_input(call, error, words):
    x = md.tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(error) as info:
        call(x)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_max_pool_on_the_device_never_synchronises():
    """The arg-max is written with copyto(where=): a boolean-mask assignment would read the
    mask's count back on CuPy, once per tap (9 syncs for a 3x3 pool)."""
    from minidl import backend

    with backend.simulate_cuda() as sim:
        x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)), device="cuda")
        x.requires_grad = True
        sim.stats.reset()
        F.max_pool2d(x, 3, stride=2, padding=1).sum().backward()
        assert sim.stats.syncs == 0
