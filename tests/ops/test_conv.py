"""conv2d: forward against the naive loop reference over a grid, im2col/col2im, layouts, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import reference as ref
from helpers.fast_paths import LAYOUTS, PATHS, as_layout, use_path

import minidl as md
import minidl.functional as F
from minidl.backend import to_numpy
from minidl.gradcheck import check_grad
from minidl.ops import conv
from minidl.ops.cpu import conv_nhwc
from minidl.ops.layout import nchw_view

GRID = [
    # (N, C, H, W), (O, kh, kw), stride, padding
    (n_c_hw, okk, s, p)
    for n_c_hw, okk, s, p in itertools.product(
        [(1, 1, 7, 5), (2, 3, 6, 9)],
        [(2, 3, 3), (1, 2, 4), (3, 1, 1), (2, 5, 5)],
        [1, 2, 3, (2, 1)],
        [0, 1, 3, (0, 2)],
    )
]


@pytest.fixture(params=PATHS)
def path(request, xp, monkeypatch):
    """conv2d's fast NumPy path (conv_nhwc) or its textbook code (what CuPy arrays run)."""
    use_path(request.param, xp, monkeypatch)


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("shape,kernel,stride,padding", GRID)
def test_conv2d_matches_naive_loops(xp, path, shape, kernel, stride, padding):
    rng = np.random.default_rng(hash((shape, kernel, stride, padding)) % 2**32)
    N, C, H, W = shape
    O, kh, kw = kernel
    s, p = _pair(stride), _pair(padding)
    if kh > H + 2 * p[0] or kw > W + 2 * p[1]:
        pytest.skip("kernel larger than the padded input")
    x, w, b = (
        rng.standard_normal(shape),
        rng.standard_normal((O, C, kh, kw)),
        rng.standard_normal(O),
    )
    y = F.conv2d(
        md.Tensor(xp.asarray(x)),
        md.Tensor(xp.asarray(w)),
        md.Tensor(xp.asarray(b)),
        stride=stride,
        padding=padding,
    )
    np.testing.assert_allclose(y.numpy(), ref.conv2d(x, w, b, s, p), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_dtype_and_grads_dtype(xp, path, dtype, k):
    rng = np.random.default_rng(0)
    x = md.Tensor(xp.asarray(rng.standard_normal((2, 3, 5, 5)), dtype=dtype), requires_grad=True)
    w = md.Tensor(xp.asarray(rng.standard_normal((4, 3, k, k)), dtype=dtype), requires_grad=True)
    b = md.Tensor(xp.asarray(rng.standard_normal(4), dtype=dtype), requires_grad=True)
    y = F.conv2d(x, w, b, padding=k // 2)
    assert y.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == dtype
    expected = ref.conv2d(
        *(to_numpy(t.data).astype(np.float64) for t in (x, w, b)), padding=(k // 2, k // 2)
    )
    np.testing.assert_allclose(
        y.numpy(),
        expected,
        rtol=1e-4 if dtype == np.float32 else 1e-10,
        atol=1e-4 if dtype == np.float32 else 1e-10,
    )


def test_channels_last_input_gives_same_result(xp, path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((3, 4, 3, 3))
    x_cl = nchw_view(xp.ascontiguousarray(xp.asarray(x).transpose(0, 2, 3, 1)))
    assert x_cl.shape == x.shape and not x_cl.flags.c_contiguous
    y1 = F.conv2d(md.Tensor(xp.asarray(x)), md.Tensor(xp.asarray(w)), padding=1)
    y2 = F.conv2d(md.Tensor(x_cl), md.Tensor(xp.asarray(w)), padding=1)
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-12)
    # the output is itself a channels-last view: the next convolution needs no transpose
    assert y1.data.transpose(0, 2, 3, 1).flags.c_contiguous


def test_conv2d_grads_on_larger_shapes_directional(xp, path):
    rng = np.random.default_rng(2)
    for stride, padding in [(1, 1), (2, 2), ((1, 2), (0, 1))]:
        inputs = [
            xp.asarray(a)
            for a in (
                rng.standard_normal((2, 5, 9, 8)),
                rng.standard_normal((4, 5, 3, 5)),
                rng.standard_normal(4),
            )
        ]
        check_grad(
            lambda x, w, b, s=stride, p=padding: F.conv2d(x, w, b, stride=s, padding=p),
            inputs,
            tol=1e-5,
            full_limit=0,
        )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "kernel,padding", [((3, 3), (1, 1)), ((5, 5), (2, 2)), ((3, 2), (2, 0)), ((2, 2), (1, 1))]
)
def test_weight_gradient_from_the_columns_of_g(xp, monkeypatch, layout, kernel, padding):
    """Stride 1, input gradient wanted: dW comes from the columns of g that dx is built from
    instead of a rebuild of x's columns. Both routes give the same gradients (any input and
    gradient layout), and the new one passes a float64 gradient check."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 6, 5))
    w = rng.standard_normal((5, 4) + kernel)
    b = rng.standard_normal(5)
    y_shape = ref.conv2d(x, w, b, padding=padding).shape
    gy = rng.standard_normal(y_shape)
    grads = {}
    for route, min_channels in (("rebuild", 10**6), ("from_gcols", 1)):
        monkeypatch.setattr(conv_nhwc, "_DW_FROM_GCOLS_MIN_CHANNELS", min_channels)
        ts = [md.Tensor(as_layout(xp, x, layout), requires_grad=True)]
        ts += [md.Tensor(xp.asarray(a), requires_grad=True) for a in (w, b)]
        F.conv2d(*ts, padding=padding).backward(md.Tensor(as_layout(xp, gy, layout)))
        grads[route] = [t.grad.numpy() for t in ts]
    for new, old in zip(grads["from_gcols"], grads["rebuild"]):
        np.testing.assert_allclose(new, old, rtol=1e-10, atol=1e-10)
    check_grad(
        lambda x, w, b: F.conv2d(x, w, b, padding=padding),
        [xp.asarray(a) for a in (x, w, b)],
        tol=1e-5,
        full_limit=0,
    )


def test_im2col_layout_and_col2im_is_its_adjoint(xp):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6))
    cols = to_numpy(conv.im2col(xp.asarray(x), (2, 3), stride=(2, 1), padding=1))
    assert cols.shape == (2, 3, 6, 2, 3, 3)  # N, Ho, Wo, kh, kw, C
    xpad = ref.pad(x, 1, 1)
    # row (n, i, j) holds the window at (2i, j) of the padded input, channels last
    np.testing.assert_array_equal(cols[1, 2, 4], xpad[1, :, 4:6, 4:7].transpose(1, 2, 0))
    # <im2col(x), c> == <x, col2im(c)>: col2im is the adjoint (the transpose) of im2col
    c = rng.standard_normal(cols.shape)
    back = to_numpy(conv.col2im(xp.asarray(c), (5, 6), stride=(2, 1), padding=1))
    assert back.shape == x.shape
    np.testing.assert_allclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)


def test_1x1_convolution_skips_im2col(xp, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a 1x1 convolution must not build an im2col matrix")

    monkeypatch.setattr(conv_nhwc, "_im2col_nhwc", fail)
    monkeypatch.setattr(conv_nhwc, "_col2im_nhwc", fail)
    rng = np.random.default_rng(4)
    x = md.Tensor(xp.asarray(rng.standard_normal((2, 6, 4, 5))), requires_grad=True)
    w = md.Tensor(xp.asarray(rng.standard_normal((3, 6, 1, 1))), requires_grad=True)
    y = F.conv2d(x, w)
    y.sum().backward()
    expected = np.einsum("nchw,oc->nohw", x.numpy(), w.numpy()[:, :, 0, 0])
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "x_shape,w_shape,kwargs,error,words",
    [
        ((3, 8, 8), (2, 3, 3, 3), {}, ValueError, ["x", "4-D", "3-D"]),
        ((1, 3, 8, 8), (2, 4, 3, 3), {}, ValueError, ["channels", "4", "3"]),
        ((1, 3, 4, 4), (2, 3, 7, 7), {"padding": 1}, ValueError, ["kernel", "(7, 7)", "(6, 6)"]),
        ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 0}, ValueError, ["stride", ">= 1", "0"]),
        ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": -2}, ValueError, ["stride", "-2"]),
        ((1, 3, 8, 8), (2, 3, 3, 3), {"padding": -1}, ValueError, ["padding", ">= 0", "-1"]),
        ((1, 3, 8, 8), (2, 3, 3, 3), {"stride": 1.5}, TypeError, ["stride", "int", "1.5"]),
    ],
)
def test_conv2d_bad_input(x_shape, w_shape, kwargs, error, words):
    x, w = md.tensor(np.zeros(x_shape)), md.tensor(np.zeros(w_shape))
    with pytest.raises(error) as info:
        F.conv2d(x, w, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
