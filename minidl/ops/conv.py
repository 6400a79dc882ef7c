"""2-D convolution by im2col + one matrix product, and its adjoint col2im.

A convolution y = conv2d(x, W) + b with x (N, C, H, W), weight (O, C, kh, kw), stride s, zero
padding p has outputs Ho = floor((H + 2p - kh) / s) + 1 (same for Wo) and

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xpad[n, c, i*s + u, j*s + v].

im2col ("image to columns") copies every receptive field into one row of a matrix:

    cols[n, i, j, u, v, c] = xpad[n, c, i*s + u, j*s + v]      cols: (N, Ho, Wo, kh, kw, C)

With cols viewed as (N*Ho*Wo, K), K = kh*kw*C, the weight reordered the same way to Wm (O, K), and
gy (the gradient of the loss with respect to y) viewed as (N*Ho*Wo, O) like y, forward and
backward are matrix products:

    forward                              backward
    y  = cols @ Wm^T   (N*Ho*Wo, O)      dW    = gy^T @ cols    (O, K)
    y += b             (every row)       db    = gy summed over rows
                                         dcols = gy @ Wm        (N*Ho*Wo, K)
                                         dx    = col2im(dcols)

col2im is the adjoint of im2col: each element of dcols is *added* back to the pixel it was copied
from (overlapping windows add up), and the taps that fell into the padding are dropped.

The rows are in channels-last order (u, v, c), so the product comes out as an N x Ho x Wo x O
buffer; conv2d returns its NCHW *view* (see ``layout``), and no transpose is paid for the output.

The code below is the reference a learner reads and the one every non-NumPy array (CuPy) runs:
im2col is one strided copy per kernel tap (kh*kw copies, each over the whole batch), col2im one
strided add per tap. NumPy arrays take ``cpu.conv_nhwc`` instead: the same math in cache-sized
chunks on the thread pool, a plain GEMM for 1x1 kernels, and a gather instead of col2im's
scatter at stride 1. Tests compare the two.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor
from .dispatch import fast_path
from .layout import check_4d, check_float, nchw_view, output_size, pair


def im2col(x, kernel_size, stride=1, padding=0):
    """Receptive fields of the NCHW array ``x`` as rows: (N, Ho, Wo, kh, kw, C).

    ``cols.reshape(N * Ho * Wo, kh * kw * C) @ w.transpose(0, 2, 3, 1).reshape(O, -1).T`` is the
    convolution with weight ``w`` (O, C, kh, kw), as an (N*Ho*Wo, O) matrix.
    """
    check_4d(x, "x", "im2col")
    kh, kw = pair(kernel_size, "kernel_size", "im2col", 1)
    (sh, sw), (ph, pw) = pair(stride, "stride", "im2col", 1), pair(padding, "padding", "im2col", 0)
    xp = get_array_module(x)
    N, C, H, W = x.shape
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
    xpad = xp.zeros((N, H + 2 * ph, W + 2 * pw, C), x.dtype)  # zero-padded, channels last
    xpad[:, ph : ph + H, pw : pw + W] = x.transpose(0, 2, 3, 1)
    # every kh x kw window of xpad, as a view (N, H', W', C, kh, kw); every stride-th one is used
    windows = xp.lib.stride_tricks.sliding_window_view(xpad, (kh, kw), axis=(1, 2))
    windows = windows[:, : sh * (Ho - 1) + 1 : sh, : sw * (Wo - 1) + 1 : sw]
    # the one copy: each window becomes a row, its values in (u, v, c) order
    return xp.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3))


def col2im(cols, input_size, stride=1, padding=0):
    """The adjoint of ``im2col``: cols (N, Ho, Wo, kh, kw, C) summed into an NCHW array of spatial
    size ``input_size`` = (H, W) (a channels-last view); taps in the padding are dropped."""
    (sh, sw), (ph, pw) = pair(stride, "stride", "col2im", 1), pair(padding, "padding", "col2im", 0)
    xp = get_array_module(cols)
    N, Ho, Wo, kh, kw, C = cols.shape
    H, W = input_size
    xpad = xp.zeros((N, H + 2 * ph, W + 2 * pw, C), cols.dtype)
    for u in range(kh):
        for v in range(kw):  # within one tap no two windows share a pixel: a plain strided add
            xpad[:, u : u + sh * Ho : sh, v : v + sw * Wo : sw] += cols[:, :, :, u, v]
    return nchw_view(xpad[:, ph : ph + H, pw : pw + W])


class Conv2d(Function):
    """y = conv2d(x, W) + b, NCHW, weight (O, C, kh, kw); see the module docstring for the math.

    Saved for backward: x (for dW; its columns are rebuilt rather than kept, they are kh*kw times
    its size) and the reordered weight Wm. The output is an NCHW view over an NHWC buffer.
    """

    def __init__(self, stride=1, padding=0):
        self.stride = pair(stride, "stride", "conv2d", 1)
        self.padding = pair(padding, "padding", "conv2d", 0)

    def forward(self, x, w, b=None):
        _check_conv_args(x, w, b, self.padding)
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        self.in_hw, self.w_shape = (H, W), w.shape
        self.wm = w.transpose(0, 2, 3, 1).reshape(O, kh * kw * C)  # rows in (u, v, c) order
        keep_x = self.needs_input_grad[1]  # dW needs x
        self.fast = fast_path(x, "conv_nhwc")  # NumPy: chunked, channels-last, threaded
        if self.fast:
            y, self.x = self.fast.forward(
                x, self.wm, b, (kh, kw), self.stride, self.padding, keep_x
            )
            return y
        cols = im2col(x, (kh, kw), self.stride, self.padding)  # N x Ho x Wo x kh x kw x C
        Ho, Wo = cols.shape[1:3]
        y = cols.reshape(N * Ho * Wo, kh * kw * C) @ self.wm.T  # all the arithmetic: one GEMM
        if b is not None:
            y += b
        self.x = x if keep_x else None
        return nchw_view(y.reshape(N, Ho, Wo, O))

    def backward(self, gy):
        need = self.needs_input_grad + (False,)  # (x, weight, bias); bias may be absent
        x, self.x = self.x, None  # x is freed when backward is done
        if self.fast:
            return self.fast.backward(
                gy, x, self.wm, self.w_shape, self.in_hw, self.stride, self.padding, need
            )
        xp = get_array_module(gy)
        N, O, Ho, Wo = gy.shape
        _, C, kh, kw = self.w_shape
        g = gy.transpose(0, 2, 3, 1).reshape(N * Ho * Wo, O)  # gy as a matrix, rows as y's
        gb = g.sum(axis=0) if need[2] else None
        gw = None
        if need[1]:  # x's columns rebuilt, used and freed at once (kh*kw times the size of x)
            gwm = g.T @ im2col(x, (kh, kw), self.stride, self.padding).reshape(N * Ho * Wo, -1)
            gw = xp.ascontiguousarray(gwm.reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
        gx = None
        if need[0]:
            dcols = (g @ self.wm).reshape(N, Ho, Wo, kh, kw, C)
            gx = col2im(dcols, self.in_hw, self.stride, self.padding)
        return gx, gw, gb


def _check_conv_args(x, w, b, padding):
    check_4d(x, "x", "conv2d")
    check_float(x, "x", "conv2d")
    if w.ndim != 4:
        raise ValueError(
            f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape "
            f"{tuple(w.shape)}"
        )
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv2d: weight expects {w.shape[1]} input channels (weight.shape[1]), but x has "
            f"{x.shape[1]} channels (x.shape[1]); x {tuple(x.shape)}, weight {tuple(w.shape)}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    if w.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        raise TypeError(
            f"conv2d: weight and bias must have the dtype of x ({x.dtype}), got weight "
            f"{w.dtype}" + (f", bias {b.dtype}" if b is not None else "")
        )
    (H, W), (kh, kw), (ph, pw) = x.shape[2:], w.shape[2:], padding
    if kh > H + 2 * ph or kw > W + 2 * pw:
        raise ValueError(
            f"conv2d: kernel size ({kh}, {kw}) is larger than the padded input "
            f"({H + 2 * ph}, {W + 2 * pw}) (input {H}x{W}, padding {padding})"
        )


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """2-D convolution (PyTorch's F.conv2d): x (N, C, H, W), weight (O, C, kh, kw), bias (O,)."""
    f = Conv2d(stride, padding)
    return f(x, weight) if bias is None else f(x, weight, bias)


@register_gradcheck("conv2d")
def _conv2d_cases(rng):
    def r(*shape):
        return rng.standard_normal(shape)

    yield GradCase(
        "3x3 pad 1, bias",
        lambda x, w, b: conv2d(x, w, b, padding=1),
        [r(2, 2, 4, 4), r(3, 2, 3, 3), r(3)],
    )
    yield GradCase(
        "2x3 stride (2,1) pad (1,0)",
        lambda x, w: conv2d(x, w, stride=(2, 1), padding=(1, 0)),
        [r(1, 2, 5, 4), r(2, 2, 2, 3)],
    )
    yield GradCase(
        "1x1, bias", lambda x, w, b: conv2d(x, w, b), [r(2, 3, 3, 2), r(2, 3, 1, 1), r(2)]
    )
    yield GradCase(
        "1x1 stride 2 pad 1",
        lambda x, w: conv2d(x, w, stride=2, padding=1),
        [r(1, 2, 4, 3), r(2, 2, 1, 1)],
    )
    yield GradCase(
        "5x5 stride 3 pad 2",
        lambda x, w, b: conv2d(x, w, b, stride=3, padding=2),
        [r(1, 1, 7, 8), r(2, 1, 5, 5), r(2)],
    )
    yield GradCase(
        "3x3 (directional)",
        lambda x, w, b: conv2d(x, w, b, padding=1),
        [r(2, 4, 8, 8), r(5, 4, 3, 3), r(5)],
        tol=1e-5,
    )
