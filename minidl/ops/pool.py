"""Pooling: max_pool2d, avg_pool2d (PyTorch semantics) and adaptive_avg_pool2d.

A kh x kw window with stride s and padding p slides over each channel; output size
floor((H + 2p - kh) / s) + 1, or the ceiling with ``ceil_mode`` as long as the last window starts
inside the input or the left padding (PyTorch's rule, see ``layout.output_size``). With x padded
(by -inf for max pooling, by 0 for average pooling; a ceil_mode window may need a little more on
the bottom/right), tap (u, v) of every window is one strided view of the padded input:

    tap_uv[n, c, i, j] = xpad[n, c, i*s + u, j*s + v]

so each pool is a loop over the kh*kw taps, every step a whole-array operation:

    forward                                    backward
    max:  y = max over taps of tap_uv          dtap_uv += gy where arg[n, c, i, j] = (u, v)
          arg = the first tap holding it       (the gradient goes to the maximum only)
    avg:  y = (sum over taps of tap_uv) / count   dtap_uv += gy / count   (every tap)

Max pooling gathers the taps first, one copy of every window as a row of kh*kw values, so the max
and the arg-max are one reduction each (a GPU runs a few kernels instead of three per tap).

and dx is the interior of the padded gradient (what fell on the padding is dropped). Within one tap
no two windows share an input, so ``+=`` on a tap's view adds each gradient exactly once; windows
that overlap meet across taps. Ties go to the first maximum in row-major window order, as in
PyTorch. count is kh*kw with count_include_pad (minus taps past the padded input), else the number
of taps inside the input.

The code below is the reference a learner reads and the one every non-NumPy array (CuPy) runs.
NumPy arrays take ``cpu.pool_blocked``: the same results from separable 1-D passes (kh + kw
instead of kh*kw) over blocks of images on the thread pool. Tests compare the two, and naive loop
references live in tests/reference.py.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck, tie_free
from ..tensor import Tensor
from .dispatch import fast_path
from .layout import check_4d, check_float, output_size, pair


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


def _padded(x, kernel_size, stride, padding, out_hw, value):
    """x inside a (N, C, Hp, Wp) array of ``value``: ``padding`` rows/columns before it, as many
    after, or more where a ceil_mode window runs past them."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = kernel_size, stride, padding, out_hw
    Hp, Wp = max(H + 2 * ph, (Ho - 1) * sh + kh), max(W + 2 * pw, (Wo - 1) * sw + kw)
    xpad = xp.full((N, C, Hp, Wp), value, x.dtype)
    xpad[:, :, ph : ph + H, pw : pw + W] = x
    return xpad


def _taps(a, kernel_size, stride, out_hw):
    """For each tap (u, v) in row-major order, the view tap_uv[..., i, j] = a[..., i*sh + u,
    j*sw + v] of the padded array ``a``: that tap of every window."""
    (kh, kw), (sh, sw), (Ho, Wo) = kernel_size, stride, out_hw
    for u in range(kh):
        for v in range(kw):
            yield a[:, :, u : u + sh * Ho : sh, v : v + sw * Wo : sw]


def _windows(a, kernel_size, stride, out_hw):
    """Every window of the padded array ``a`` as a row: (N, C, Ho, Wo, kh*kw), its taps in
    row-major order (one copy)."""
    (kh, kw), (sh, sw), (Ho, Wo) = kernel_size, stride, out_hw
    views = get_array_module(a).lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))
    views = views[:, :, : sh * (Ho - 1) + 1 : sh, : sw * (Wo - 1) + 1 : sw]
    return views.reshape(views.shape[:4] + (kh * kw,))  # a strided view: reshape copies


def _interior(apad, padding, in_hw):
    """The input's part of a padded array (the gradient that fell on the padding is dropped)."""
    (ph, pw), (H, W) = padding, in_hw
    return apad[:, :, ph : ph + H, pw : pw + W]


class MaxPool2d(Function):
    """y[n, c, i, j] = max of x over window (i, j) (padding counts as -inf).

    dx: each gy[n, c, i, j] is added to the element that was the window's maximum (the first one
    in row-major window order on ties). Saved for backward: the arg-max tap of each window.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.args = (kernel_size, stride, padding, ceil_mode)

    def forward(self, x):
        k, s, p, out = _window_args("max_pool2d", x, *self.args)
        self.geometry = (k, s, p, x.shape[2:])
        want = self.needs_input_grad[0]  # backward will run: keep the arg-max
        self.fast = fast_path(x, "pool_blocked")  # NumPy: separable passes, blocked, threaded
        if self.fast:
            y, self.argmax = self.fast.max_pool(x, k, s, p, out, want)
            return y
        xpad = _padded(x, k, s, p, out, -np.inf)
        windows = _windows(xpad, k, s, out)  # N x C x Ho x Wo x kh*kw
        y = windows.max(axis=-1)
        # on a tie argmax keeps the first tap, as PyTorch; the smallest dtype that holds kh*kw
        arg = windows.argmax(axis=-1).astype(np.min_scalar_type(k[0] * k[1] - 1)) if want else None
        self.argmax, self.pad_shape = arg, xpad.shape
        return y

    def backward(self, gy):
        k, s, p, in_hw = self.geometry
        argmax, self.argmax = self.argmax, None  # freed when backward is done
        if self.fast:
            return self.fast.max_pool_backward(gy, argmax, k, s, p, in_hw)
        xp = get_array_module(gy)
        # each window's gradient as a row: gy at its arg-max tap, zero elsewhere
        taps = xp.arange(k[0] * k[1], dtype=argmax.dtype)
        gwindows = (argmax[..., None] == taps) * gy[..., None]  # N x C x Ho x Wo x kh*kw
        gpad = xp.zeros(self.pad_shape, gy.dtype)
        for t, dtap in enumerate(_taps(gpad, k, s, gy.shape[2:])):
            dtap += gwindows[..., t]
        return _interior(gpad, p, in_hw)


def _window_counts(xp, k, s, p, size, out_size, include_pad, dtype):
    """Per output position along one axis: how many taps its average divides by.

    PyTorch's rule: with count_include_pad the window is clipped to the padded input (so a
    ceil_mode window running past the padding counts less), otherwise to the input itself."""
    start = xp.arange(out_size) * s - p
    stop = xp.minimum(start + k, size + p)
    if not include_pad:
        start, stop = xp.maximum(start, 0), xp.minimum(stop, size)
    return (stop - start).astype(dtype)


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
        k, s, p, out = _window_args("avg_pool2d", x, *self.args)
        (H, W), (Ho, Wo) = x.shape[2:], out
        self.geometry = (k, s, p, (H, W))
        ch = _window_counts(xp, k[0], s[0], p[0], H, Ho, self.count_include_pad, x.dtype)
        cw = _window_counts(xp, k[1], s[1], p[1], W, Wo, self.count_include_pad, x.dtype)
        self.inv_count = 1 / (ch[:, None] * cw[None, :])  # Ho x Wo
        self.fast = fast_path(x, "pool_blocked")  # NumPy: separable passes, threaded
        if self.fast:
            y = self.fast.window_sums(x, k, s, p, out)
        else:
            xpad = _padded(x, k, s, p, out, 0)
            self.pad_shape = xpad.shape
            y = xp.zeros(x.shape[:2] + out, x.dtype)
            for tap in _taps(xpad, k, s, out):
                y += tap
        y *= self.inv_count
        return y

    def backward(self, gy):
        k, s, p, in_hw = self.geometry
        g = gy * self.inv_count
        if self.fast:
            return self.fast.window_sums_backward(g, k, s, p, in_hw)
        gpad = get_array_module(g).zeros(self.pad_shape, g.dtype)
        for dtap in _taps(gpad, k, s, g.shape[2:]):
            dtap += g
        return _interior(gpad, p, in_hw)


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive window i: [floor(i*size/out), ceil((i+1)*size/out)); may overlap."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(xp, size, out, dtype):
    """A (out, size) matrix whose row i averages window i: y = A @ x along that axis.

    Built with ``xp`` from the window bounds of ``adaptive_windows`` (vectorised), so on a GPU it
    is made on the device instead of copied over from the host at every call."""
    i = xp.arange(out)
    lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
    j = xp.arange(size)
    inside = (j >= lo[:, None]) & (j < hi[:, None])
    return inside.astype(dtype) / (hi - lo)[:, None].astype(dtype)


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


def max_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
) -> Tensor:
    """2-D max pooling (PyTorch's F.max_pool2d); stride defaults to kernel_size."""
    return MaxPool2d(kernel_size, stride, padding, ceil_mode)(x)


def avg_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """2-D average pooling (PyTorch's F.avg_pool2d); stride defaults to kernel_size."""
    return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad)(x)


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int, int]) -> Tensor:
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
