"""Pooling: max_pool2d, avg_pool2d (PyTorch semantics) and adaptive_avg_pool2d.

A kh x kw window with stride s and padding p slides over each channel; output size
floor((H + 2p - kh) / s) + 1, or the ceiling with ``ceil_mode`` as long as the last window starts
inside the input or the left padding (PyTorch's rule, see ``_layout.output_size``).

Both pools are *separable*: a max (or sum) over a kh x kw window is a max over kw columns followed
by a max over kh rows. So each is done in two 1-D passes, one per kernel offset along that axis
(kh + kw strided passes instead of kh * kw), and each pass is split over the batch on the thread
pool. The windows' taps that fall into the padding are simply skipped, which is padding with -inf
for max pooling and with 0 for average pooling.

max_pool2d backward routes each output gradient to the arg-max of its window. The 1-D passes record
their arg-max as a small integer offset (int8), so backward runs the two passes in reverse: rows
first (gy to the row maxima), then columns. Ties go to the first maximum in row-major window order,
as in PyTorch (the first row holding the maximum, then its first column).

Naive loop references for both pools live in tests/reference.py and the forward outputs are
compared against them.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..function import Function, is_grad_enabled
from ..registry import GradCase, register_gradcheck, tie_free
from ._layout import check_4d, check_float, empty_like_layout, output_size, pair, valid_range
from ._parallel import parallel_batches, parallel_blocks


def _window_args(op, x, kernel_size, stride, padding, ceil_mode):
    check_4d(x, "x", op)
    check_float(x, "x", op)
    k = pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else pair(stride, "stride", op, 1)
    p = pair(padding, "padding", op, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: padding must be at most half the kernel size, got padding {p} for "
            f"kernel_size {k}"
        )
    H, W = x.shape[2:]
    if k[0] > H + 2 * p[0] or k[1] > W + 2 * p[1]:
        raise ValueError(
            f"{op}: kernel_size {k} is larger than the padded input ({H + 2 * p[0]}, "
            f"{W + 2 * p[1]}) (input {H}x{W}, padding {p})"
        )
    out = (output_size(H, k[0], s[0], p[0], ceil_mode), output_size(W, k[1], s[1], p[1], ceil_mode))
    return k, s, p, out


def _shape_along(x, axis, n):
    shape = list(x.shape)
    shape[axis] = n
    return tuple(shape)


def _axis_slice(axis, start, stop, step=1):
    """An index selecting start:stop:step along ``axis`` (2 or 3) of an NCHW array."""
    index = [slice(None)] * 4
    index[axis] = slice(start, stop, step)
    return tuple(index)


def _taps(k, s, p, size, out_size):
    """For each kernel offset along one axis: (offset, output slice, input slice)."""
    for t in range(k):
        o0, o1, i0 = valid_range(out_size, t, s, p, size)
        if o1 > o0:
            yield t, (o0, o1), (i0, i0 + s * (o1 - o0 - 1) + 1, s)


def _max_1d(x, axis, k, s, p, out_size, idx=None, out=None):
    """Max over windows along one axis into ``out`` (allocated when None), and the arg-max
    offsets (int8) into ``idx`` when given. Serial: the callers split the batch over threads."""
    xp = get_array_module(x)
    y = empty_like_layout(x, _shape_along(x, axis, out_size)) if out is None else out
    taps = list(_taps(k, s, p, x.shape[axis], out_size))
    better = empty_like_layout(y, y.shape, bool) if idx is not None and len(taps) > 1 else None
    for n, (t, (o0, o1), (i0, i1, step)) in enumerate(taps):
        o = _axis_slice(axis, o0, o1)
        ys, xs = y[o], x[_axis_slice(axis, i0, i1, step)]
        if n == 0:  # the first tap covers every window but those starting in the padding
            y[_axis_slice(axis, 0, o0)] = -xp.inf
            y[_axis_slice(axis, o1, None)] = -xp.inf
            ys[...] = xs
            if idx is not None:
                idx[...] = t
            continue
        if idx is not None and n == 1 and (taps[0][0], t) == (0, 1):
            # idx is 0 everywhere yet: after the first two offsets it is just (x_1 > y)
            xp.greater(xs, ys, out=idx[o].view(bool))
        elif idx is not None:
            # arg-max without masked copies (slow in NumPy): offsets grow with t, so
            # idx = max(idx, t * (x_t > y)) sets t exactly where x_t is a new strict maximum
            b = better[o]
            xp.greater(xs, ys, out=b)
            bi = b.view(xp.int8)
            xp.multiply(bi, t, out=bi)
            xp.maximum(idx[o], bi, out=idx[o])
        xp.maximum(ys, xs, out=ys)
    return y


def _max_1d_backward(gy, idx, axis, k, s, p, size, out=None):
    """Route gy to the arg-max offsets ``idx`` along one axis: the adjoint of ``_max_1d``."""
    xp = get_array_module(gy)
    gx = empty_like_layout(gy, _shape_along(gy, axis, size)) if out is None else out
    hit, routed = empty_like_layout(gy, gy.shape, bool), empty_like_layout(gy, gy.shape)
    for n, (t, (o0, o1), (i0, i1, step)) in enumerate(_taps(k, s, p, size, gy.shape[axis])):
        o = _axis_slice(axis, o0, o1)
        xp.equal(idx[o], t, out=hit[o])
        target = gx[_axis_slice(axis, i0, i1, step)]
        if n == 0 and step == 1:  # the first offset's inputs form one run: write it outright
            gx[_axis_slice(axis, 0, i0)] = 0
            gx[_axis_slice(axis, i1, None)] = 0
            xp.multiply(gy[o], hit[o], out=target)
            continue
        if n == 0:
            gx[...] = 0
        xp.multiply(gy[o], hit[o], out=routed[o])
        target += routed[o]
    return gx


_BLOCK_BYTES = 1024 << 10


def _in_blocks(xp, x, work) -> None:
    """Call ``work(b0, b1)`` on blocks of a few images (~1 MB of ``x``), split over the thread
    pool: both 1-D passes of a block run while its data and temporaries sit in the cache. (Each
    NumPy call hands the GIL back and forth between the threads; with 256 KB blocks those
    hand-offs made the pooling 2-3x slower than with 1 MB ones.)"""
    step = max(1, _BLOCK_BYTES // max(1, x[:1].nbytes))
    parallel_blocks(xp, x.shape[0], step, work, x.size * 3)


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x over window (i, j) (padding counts as -inf).

    dx: each gy[n, c, i, j] is added to the element that was the window's maximum.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.args = (kernel_size, stride, padding, ceil_mode)

    def forward(self, x):
        (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = _window_args("max_pool2d", x, *self.args)
        N, C, H, W = x.shape
        self.geometry = ((kh, kw), (sh, sw), (ph, pw), (H, W))
        want = is_grad_enabled() and self.needs_input_grad[0]
        y = empty_like_layout(x, (N, C, Ho, Wo))
        idx_w = empty_like_layout(x, (N, C, H, Wo), np.int8) if want else None
        idx_h = empty_like_layout(x, (N, C, Ho, Wo), np.int8) if want else None

        def work(b0, b1):
            r = _max_1d(x[b0:b1], 3, kw, sw, pw, Wo, idx_w[b0:b1] if want else None)  # H x Wo
            _max_1d(r, 2, kh, sh, ph, Ho, idx_h[b0:b1] if want else None, out=y[b0:b1])

        _in_blocks(get_array_module(x), x, work)
        self.idx_w, self.idx_h = idx_w, idx_h
        return y

    def backward(self, gy):
        (kh, kw), (sh, sw), (ph, pw), (H, W) = self.geometry
        N, C = gy.shape[:2]
        gx = empty_like_layout(gy, (N, C, H, W))

        def work(b0, b1):
            gr = _max_1d_backward(gy[b0:b1], self.idx_h[b0:b1], 2, kh, sh, ph, H)  # H x Wo
            _max_1d_backward(gr, self.idx_w[b0:b1], 3, kw, sw, pw, W, out=gx[b0:b1])

        _in_blocks(get_array_module(gy), gx, work)
        self.idx_h = self.idx_w = None
        return gx


def _sum_1d(x, axis, k, s, p, out_size):
    """Sum over windows along one axis (taps in the padding contribute 0)."""
    xp = get_array_module(x)
    y = empty_like_layout(x, _shape_along(x, axis, out_size))
    taps = list(_taps(k, s, p, x.shape[axis], out_size))

    def work(lo, hi):
        yb, xb = y[lo:hi], x[lo:hi]
        yb[...] = 0
        for _, (o0, o1), (i0, i1, step) in taps:
            yb[_axis_slice(axis, o0, o1)] += xb[_axis_slice(axis, i0, i1, step)]

    parallel_batches(xp, x.shape[0], work, y.size * k)
    return y


def _sum_1d_backward(gy, axis, k, s, p, size):
    """The adjoint of ``_sum_1d``: each window's gradient added back to all its taps."""
    xp = get_array_module(gy)
    gx = empty_like_layout(gy, _shape_along(gy, axis, size))
    taps = list(_taps(k, s, p, size, gy.shape[axis]))

    def work(lo, hi):
        gb, gxb = gy[lo:hi], gx[lo:hi]
        gxb[...] = 0
        for _, (o0, o1), (i0, i1, step) in taps:
            gxb[_axis_slice(axis, i0, i1, step)] += gb[_axis_slice(axis, o0, o1)]

    parallel_batches(xp, gy.shape[0], work, gy.size * k)
    return gx


def _window_counts(xp, k, s, p, size, out_size, include_pad, dtype):
    """Per output position along one axis: how many taps its average divides by.

    PyTorch's rule: with count_include_pad the window is clipped to the padded input (so a
    ceil_mode window running past the padding counts less), otherwise to the input itself."""
    start = np.arange(out_size) * s - p
    stop = np.minimum(start + k, size + p)
    if not include_pad:
        start, stop = np.maximum(start, 0), np.minimum(stop, size)
    return xp.asarray(stop - start, dtype=dtype)


class AvgPool2d(Function):
    """y[n, c, i, j] = sum of x over window (i, j) / count(i, j);  dx: gy / count spread over the
    window. count is kh*kw with count_include_pad (minus taps past the padded input), else the
    number of taps inside the input; it is separable, count = count_h[i] * count_w[j]."""

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        self.args = (kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = count_include_pad

    def forward(self, x):
        xp = get_array_module(x)
        (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = _window_args("avg_pool2d", x, *self.args)
        H, W = x.shape[2:]
        self.geometry = ((kh, kw), (sh, sw), (ph, pw), (H, W))
        ch = _window_counts(xp, kh, sh, ph, H, Ho, self.count_include_pad, x.dtype)
        cw = _window_counts(xp, kw, sw, pw, W, Wo, self.count_include_pad, x.dtype)
        self.inv_count = 1 / (ch[:, None] * cw[None, :])  # Ho x Wo
        y = _sum_1d(_sum_1d(x, 3, kw, sw, pw, Wo), 2, kh, sh, ph, Ho)
        y *= self.inv_count
        return y

    def backward(self, gy):
        (kh, kw), (sh, sw), (ph, pw), (H, W) = self.geometry
        g = gy * self.inv_count
        return _sum_1d_backward(_sum_1d_backward(g, 2, kh, sh, ph, H), 3, kw, sw, pw, W)


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive window i: [floor(i*size/out), ceil((i+1)*size/out)); may overlap."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(xp, size, out, dtype):
    """A (out, size) matrix whose row i averages window i: y = A @ x along that axis."""
    a = np.zeros((out, size))
    for i, (lo, hi) in enumerate(adaptive_windows(size, out)):
        a[i, lo:hi] = 1.0 / (hi - lo)
    return xp.asarray(a, dtype=dtype)


class AdaptiveAvgPool2d(Function):
    """y = A_h @ x @ A_w^T per (n, c): each output averages its adaptive window.

    The averaging is linear and separable, so it is two small matrix products with the averaging
    matrices A_h (Ho, H) and A_w (Wo, W); backward is the transposed products, dx = A_h^T gy A_w.
    Output size 1 is global average pooling.
    """

    def __init__(self, output_size):
        self.output_size = pair(output_size, "output_size", "adaptive_avg_pool2d", 1)

    def forward(self, x):
        check_4d(x, "x", "adaptive_avg_pool2d")
        check_float(x, "x", "adaptive_avg_pool2d")
        xp = get_array_module(x)
        (Ho, Wo), (H, W) = self.output_size, x.shape[2:]
        self.ah = _averaging_matrix(xp, H, Ho, x.dtype)
        self.aw = _averaging_matrix(xp, W, Wo, x.dtype)
        if (Ho, Wo) == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True)
        return self.ah @ (x @ self.aw.T)

    def backward(self, gy):
        return (self.ah.T @ gy) @ self.aw


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """2-D max pooling (PyTorch's F.max_pool2d); stride defaults to kernel_size."""
    return MaxPool2d(kernel_size, stride, padding, ceil_mode)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling (PyTorch's F.avg_pool2d); stride defaults to kernel_size."""
    return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad)(x)


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (PyTorch's F.adaptive_avg_pool2d)."""
    return AdaptiveAvgPool2d(output_size)(x)


@register_gradcheck("max_pool2d")
def _max_pool_cases(rng):
    yield GradCase("3x3 s1 p1", lambda x: max_pool2d(x, 3, 1, 1), [tie_free(rng, (1, 2, 4, 5))])
    yield GradCase(
        "3x3 s2 ceil", lambda x: max_pool2d(x, 3, 2, ceil_mode=True), [tie_free(rng, (2, 1, 6, 5))]
    )
    yield GradCase(
        "2x3 s(1,2) p(1,1)",
        lambda x: max_pool2d(x, (2, 3), (1, 2), (1, 1)),
        [tie_free(rng, (1, 2, 3, 5))],
    )
    yield GradCase(
        "3x3 s2 p1 (directional)", lambda x: max_pool2d(x, 3, 2, 1), [tie_free(rng, (2, 3, 9, 9))]
    )


@register_gradcheck("avg_pool2d")
def _avg_pool_cases(rng):
    yield GradCase(
        "3x3 s1 p1", lambda x: avg_pool2d(x, 3, 1, 1), [rng.standard_normal((1, 2, 4, 5))]
    )
    yield GradCase(
        "3x3 s2 p1 ceil, excl. pad",
        lambda x: avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        [rng.standard_normal((2, 1, 6, 5))],
    )
    yield GradCase(
        "5x5 s3 (directional)", lambda x: avg_pool2d(x, 5, 3), [rng.standard_normal((2, 3, 14, 14))]
    )


@register_gradcheck("adaptive_avg_pool2d")
def _adaptive_cases(rng):
    yield GradCase(
        "5x7 -> 3x4", lambda x: adaptive_avg_pool2d(x, (3, 4)), [rng.standard_normal((2, 2, 5, 7))]
    )
    yield GradCase(
        "global", lambda x: adaptive_avg_pool2d(x, 1), [rng.standard_normal((2, 3, 4, 4))]
    )
