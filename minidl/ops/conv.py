"""2-D convolution by im2col + one matrix product, and its adjoint col2im.

A convolution y = conv2d(x, W) + b with x (N, C, H, W), weight (O, C, kh, kw), stride s, zero
padding p has outputs Ho = floor((H + 2p - kh) / s) + 1 (same for Wo) and

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xpad[n, c, i*s + u, j*s + v].

im2col ("image to columns") copies every receptive field into one row of a matrix:

    cols[n, i, j, u, v, c] = xpad[n, c, i*s + u, j*s + v]      cols: (N, Ho, Wo, kh, kw, C)

so that, with cols viewed as (N*Ho*Wo, kh*kw*C) and the weight reordered to (O, kh*kw*C),

    y (N*Ho*Wo, O) = cols @ Wm^T                               (one GEMM does all the arithmetic)

The rows are in channels-last order (u, v, c): each row is kh*kw contiguous runs of C values, which
copies faster than PyTorch-style (c, u, v) rows, and the product comes out as an N x Ho x Wo x O
buffer; conv2d returns its NCHW *view* (see ``_layout``), so no transpose is ever paid.

Backward, with gy viewed as (N*Ho*Wo, O):

    dW (O, kh*kw*C) = gy^T @ cols        db = gy summed over rows
    dcols           = gy @ Wm            dx = col2im(dcols)

col2im is the adjoint of im2col: each element of dcols is *added* back to the pixel it was copied
from (overlapping windows add up), and padding positions are dropped. With stride 1 a cheaper
route gives the same dx: it is the convolution of gy (padded by k-1-p) with the kernel flipped in
space and its in/out channels swapped, i.e. a gather (im2col of gy) and a GEMM, no scatter-add.
Those columns of gy then also give dW, as x^T @ gcols with the kernel flipped back, so x's columns
need not be rebuilt (used for inputs of 32 channels or more; see ``_weight_grad_from_gcols``).

For speed on the CPU the batch is processed in chunks of a few images, so that each chunk's
columns are still in the cache when the GEMM reads them, and the full im2col matrix (kh*kw times
the input) never exists: backward rebuilds a chunk's columns (or those of gy) instead of keeping
them.

A 1x1 convolution needs no im2col: every row of cols would be one pixel's C channels, i.e. the
NHWC input itself, so it is a plain matrix product over channels.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..function import Function, is_grad_enabled
from ..registry import GradCase, register_gradcheck
from ._layout import check_4d, check_float, nchw_view, nhwc, output_size, pair, valid_range
from ._parallel import WORKERS, parallel_batches


def _taps(kh, kw, sh, sw, ph, pw, H, W, Ho, Wo):
    """For each kernel offset (u, v): the output rows/columns it touches inside the input."""
    for u in range(kh):
        i0, i1, hi = valid_range(Ho, u, sh, ph, H)
        for v in range(kw):
            j0, j1, wi = valid_range(Wo, v, sw, pw, W)
            yield u, v, (i0, i1, hi), (j0, j1, wi)


def _im2col_nhwc(xh, kernel_size, stride, padding, out_hw):
    """cols (N, Ho, Wo, kh, kw, C) from an NHWC array (any strides); padding taps are zero.

    In a zero-padded NHWC image the kw taps of one window row are adjacent: xpad[n, i*s + u,
    j*s + v, c] for v < kw, c < C is one contiguous run of kw*C values. So cols, viewed as
    (N, Ho, Wo, kh, kw*C), is a strided *view* of xpad (``as_strided``: no copy) and im2col is one
    copy of that view, moving runs of kw*C values rather than kh*kw separate runs of C, which
    matters for the narrow layers (C = 4..32) of a small network. The copy is split over the batch
    on the thread pool.
    """
    xp = get_array_module(xh)
    N, H, W, C = xh.shape
    (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = kernel_size, stride, padding, out_hw
    if ph == pw == 0 and not xh.flags.c_contiguous:  # the window view below needs C order;
        xh = xp.ascontiguousarray(xh)  # with padding, the padded copy provides it
    cols = xp.empty((N, Ho, Wo, kh, kw, C), xh.dtype)
    rows = cols.reshape(N, Ho, Wo, kh, kw * C)

    def work(lo, hi):
        xpad = _zero_pad(xh[lo:hi], ph, pw)
        # C-contiguous strides, spelled out: NumPy may report any stride for an axis of length 1
        s3 = xpad.itemsize
        s2, s1 = C * s3, xpad.shape[2] * C * s3
        s0 = xpad.shape[1] * s1
        windows = xp.lib.stride_tricks.as_strided(
            xpad, (hi - lo, Ho, Wo, kh, kw * C), (s0, sh * s1, sw * s2, s1, s3)
        )
        rows[lo:hi] = windows

    parallel_batches(xp, N, work, cols.size)
    return cols


def _zero_pad(xh, ph, pw):
    """xh (N, H, W, C) with ph zero rows and pw zero columns added on each side (xh if none)."""
    if ph == pw == 0:
        return xh
    N, H, W, C = xh.shape
    xpad = get_array_module(xh).empty((N, H + 2 * ph, W + 2 * pw, C), xh.dtype)
    xpad[:, :ph] = 0
    xpad[:, ph + H :] = 0
    xpad[:, ph : ph + H, :pw] = 0
    xpad[:, ph : ph + H, pw + W :] = 0
    xpad[:, ph : ph + H, pw : pw + W] = xh
    return xpad


def _col2im_nhwc(cols, in_hw, stride, padding):
    """The adjoint of ``_im2col_nhwc``: sum cols (N, Ho, Wo, kh, kw, C) back into (N, H, W, C)."""
    xp = get_array_module(cols)
    N, Ho, Wo, kh, kw, C = cols.shape
    (H, W), (sh, sw), (ph, pw) = in_hw, stride, padding
    out = xp.zeros((N, H, W, C), cols.dtype)
    taps = list(_taps(kh, kw, sh, sw, ph, pw, H, W, Ho, Wo))

    def work(lo, hi):
        for u, v, (i0, i1, hs), (j0, j1, ws) in taps:
            out[
                lo:hi, hs : hs + sh * (i1 - i0 - 1) + 1 : sh, ws : ws + sw * (j1 - j0 - 1) + 1 : sw
            ] += cols[lo:hi, i0:i1, j0:j1, u, v, :]

    parallel_batches(xp, N, work, cols.size)
    return out


def im2col(x, kernel_size, stride=1, padding=0):
    """Receptive fields of the NCHW array ``x`` as rows: (N, Ho, Wo, kh, kw, C).

    ``cols.reshape(N * Ho * Wo, kh * kw * C) @ w.transpose(0, 2, 3, 1).reshape(O, -1).T`` is the
    convolution with weight ``w`` (O, C, kh, kw), as an (N*Ho*Wo, O) matrix.
    """
    check_4d(x, "x", "im2col")
    k = pair(kernel_size, "kernel_size", "im2col", 1)
    s, p = pair(stride, "stride", "im2col", 1), pair(padding, "padding", "im2col", 0)
    H, W = x.shape[2:]
    out_hw = (output_size(H, k[0], s[0], p[0]), output_size(W, k[1], s[1], p[1]))
    return _im2col_nhwc(nhwc(x), k, s, p, out_hw)


def col2im(cols, input_size, stride=1, padding=0):
    """The adjoint of ``im2col``: cols (N, Ho, Wo, kh, kw, C) summed into an NCHW array of spatial
    size ``input_size`` = (H, W) (a channels-last view); taps in the padding are dropped."""
    s, p = pair(stride, "stride", "col2im", 1), pair(padding, "padding", "col2im", 0)
    return nchw_view(_col2im_nhwc(cols, tuple(input_size), s, p))


_CHUNK_BYTES = 4 << 20
# Below this many input channels the GEMM x^T @ gcols (a thin C x kh*kw*O output) runs at down to
# a third of the speed of g^T @ cols: more than the rebuild of x's columns saves (C = 4..80 tried)
_DW_FROM_GCOLS_MIN_CHANNELS = 32


def _chunks(xp, n, bytes_per_item):
    """Batch ranges whose im2col matrices stay cache-sized (a few MB) on the CPU.

    Working chunk by chunk, im2col writes and the GEMM reads the columns while they are still in
    the L3 cache, instead of streaming one huge matrix through DRAM twice; and the full matrix is
    never held, so backward can afford to rebuild it instead of keeping it. On the GPU one chunk.
    """
    if xp is not np:
        return [(0, n)]
    step = max(WORKERS, _CHUNK_BYTES // max(1, bytes_per_item))  # >= 1 image per thread
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class Conv2d(Function):
    """y = conv2d(x, W) + b, NCHW, weight (O, C, kh, kw); see the module docstring for the math.

    The batch is processed in cache-sized chunks: im2col of a chunk (its zero-padded copy also
    puts an NCHW x in NHWC order), then its GEMM. Saved for backward: x as an NHWC-ordered view
    and the weight; backward rebuilds each chunk's columns rather than keeping the whole im2col
    matrix, which is kh*kw times the input; or, at stride 1 with dx wanted and C >= 32, takes dW
    from the columns of g it builds for dx anyway (``_weight_grad_from_gcols``). The output is
    an NCHW view over an NHWC buffer (channels last).
    """

    def __init__(self, stride=1, padding=0):
        self.stride = pair(stride, "stride", "conv2d", 1)
        self.padding = pair(padding, "padding", "conv2d", 0)

    def forward(self, x, w, b=None):
        _check_conv_args(x, w, b, self.padding)
        xp = get_array_module(x)
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
        self.in_hw, self.w_shape = (H, W), w.shape
        wm = w.transpose(0, 2, 3, 1).reshape(O, kh * kw * C)  # rows in (u, v, c) order, as cols
        if kh == kw == 1:
            xh = nhwc(x)
            # 1x1: a matrix product over channels; stride and padding only select/extend pixels
            xh = _zero_pad(xh, ph, pw)
            if sh > 1 or sw > 1:
                xh = xp.ascontiguousarray(xh[:, ::sh, ::sw][:, :Ho, :Wo])
            y = xh.reshape(N * Ho * Wo, C) @ wm.T
            if b is not None:
                y += b
        else:
            # NHWC order, a view: im2col copies it into a zero-padded buffer anyway, so with
            # padding any layout will do (NCHW, or a channel slice of a channels-last tensor);
            # without, one threaded transposing copy
            xh = x.transpose(0, 2, 3, 1)
            if not xh.flags.c_contiguous and (ph, pw) == (0, 0):
                xh = nhwc(x)
            y = xp.empty((N, Ho, Wo, O), x.dtype)
            for lo, hi in _chunks(xp, N, Ho * Wo * kh * kw * C * x.itemsize):
                cols = _im2col_nhwc(xh[lo:hi], (kh, kw), self.stride, self.padding, (Ho, Wo))
                out = y[lo:hi].reshape(-1, O)
                xp.matmul(cols.reshape(-1, kh * kw * C), wm.T, out=out)
                if b is not None:
                    out += b
        if is_grad_enabled() and any(self.needs_input_grad):
            self.xh = xh if self.needs_input_grad[1] else None
            self.wm = wm
        return nchw_view(y.reshape(N, Ho, Wo, O))

    def backward(self, gy):
        xp = get_array_module(gy)
        N, O, Ho, Wo = gy.shape
        _, C, kh, kw = self.w_shape
        (H, W), (sh, sw), (ph, pw) = self.in_hw, self.stride, self.padding
        need = self.needs_input_grad + (False,)  # (x, weight, bias); bias may be absent
        if kh == kw == 1:
            gm = nhwc(gy).reshape(-1, O)
            gb = gm.sum(axis=0) if need[2] else None
            gw = (gm.T @ self.xh.reshape(-1, C)).reshape(O, C, 1, 1) if need[1] else None
            gx = (
                _scatter_1x1(
                    (gm @ self.wm).reshape(N, Ho, Wo, C), (H, W), self.stride, self.padding
                )
                if need[0]
                else None
            )
            self.xh = None
            return gx, gw, gb
        # stride 1: dx is itself a convolution, of g zero-padded by k-1-p with the kernel flipped
        # in space and in/out channels swapped (each input pixel collects the outputs it fed):
        # a gather (im2col of g) and a GEMM, much cheaper than col2im's scatter-add
        as_conv = (sh, sw) == (1, 1) and ph < kh and pw < kw
        # ... and then the columns of g give dW too, without rebuilding x's columns (see
        # _weight_grad_from_gcols); the GEMM that does it is slower for narrow inputs
        dw_from_gcols = as_conv and need[0] and need[1] and C >= _DW_FROM_GCOLS_MIN_CHANNELS
        if need[0] and as_conv:
            flipped = self.wm.reshape(O, kh, kw, C)[:, ::-1, ::-1, :]  # (O, u', v', C)
            wflip = flipped.transpose(1, 2, 0, 3).reshape(kh * kw * O, C)  # rows (u', v', o)
        gb = xp.einsum("nohw->o", gy) if need[2] else None
        gwm = xp.zeros((O, kh * kw * C), gy.dtype) if need[1] and not dw_from_gcols else None
        gwt = xp.zeros((C, kh * kw * O), gy.dtype) if dw_from_gcols else None
        gx = xp.empty((N, H, W, C), gy.dtype) if need[0] else None
        per_image = max(Ho * Wo * kh * kw * C, H * W * kh * kw * O) * gy.itemsize
        for lo, hi in _chunks(xp, N, per_image):
            g = gy[lo:hi].transpose(0, 2, 3, 1)  # chunk x Ho x Wo x O, a view
            if (need[1] and not dw_from_gcols) or (need[0] and not as_conv):
                gc = xp.ascontiguousarray(g).reshape(-1, O)  # g's rows, for the GEMMs below
            if need[1] and not dw_from_gcols:
                cols = _im2col_nhwc(self.xh[lo:hi], (kh, kw), self.stride, self.padding, (Ho, Wo))
                gwm += gc.T @ cols.reshape(-1, kh * kw * C)
            if need[0] and as_conv:
                gcols = _im2col_nhwc(g, (kh, kw), (1, 1), (kh - 1 - ph, kw - 1 - pw), (H, W))
                gcols = gcols.reshape(-1, kh * kw * O)
                xp.matmul(gcols, wflip, out=gx[lo:hi].reshape(-1, C))
                if dw_from_gcols:
                    gwt += _xt_gcols(self.xh[lo:hi], gcols)
            elif need[0]:
                dcols = (gc @ self.wm).reshape(hi - lo, Ho, Wo, kh, kw, C)
                gx[lo:hi] = _col2im_nhwc(dcols, (H, W), self.stride, self.padding)
        self.xh = None
        if dw_from_gcols:
            gw = _weight_grad_from_gcols(gwt, O, kh, kw)
        elif need[1]:
            gw = gwm.reshape(O, kh, kw, C).transpose(0, 3, 1, 2).copy()
        else:
            gw = None
        return (nchw_view(gx) if need[0] else None), gw, gb


def _xt_gcols(xh, gcols):
    """x^T @ gcols (C, K) for a chunk of the input, xh (n, H, W, C) an NHWC-ordered view."""
    n, H, W, C = xh.shape
    if xh.strides[3] == xh.itemsize:  # each pixel's C values adjacent: one GEMM over all pixels
        return xh.reshape(-1, C).T @ gcols
    # an NCHW input: each image is a contiguous (C, H*W) matrix, so one GEMM per image
    return (xh.transpose(0, 3, 1, 2).reshape(n, C, H * W) @ gcols.reshape(n, H * W, -1)).sum(0)


def _weight_grad_from_gcols(gwt, O, kh, kw):
    """dW (O, C, kh, kw) from gwt = x^T @ gcols (C, kh*kw*O), for a stride-1 convolution.

    gcols[n, i, j, u', v', o] = gpad[n, i + u', j + v', o], with g padded by k-1-p; and with the
    input pixel (i, j) = (i0 + u - p, j0 + v - p) of output (i0, j0) under tap (u, v),
    gpad[n, i + k-1-u, j + k-1-v, o] = g[n, i0, j0, o]. So the sum over pixels of
    x[., c] * gcols[., (k-1-u, k-1-v, o)] is exactly dW[o, c, u, v] = sum x[., c] * g[., o] over
    the pairs that tap (u, v) joins: the weight gradient with the kernel flipped back.
    """
    C = gwt.shape[0]
    flipped = gwt.reshape(C, kh, kw, O)[:, ::-1, ::-1, :]
    return flipped.transpose(3, 0, 1, 2).copy()


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


def _scatter_1x1(g, in_hw, stride, padding):
    """dx of a 1x1 convolution: g (N, Ho, Wo, C) placed back at the pixels it came from."""
    N, Ho, Wo, C = g.shape
    (H, W), (sh, sw), (ph, pw) = in_hw, stride, padding
    if (sh, sw, ph, pw) == (1, 1, 0, 0):
        return nchw_view(g)
    xp = get_array_module(g)
    padded = xp.zeros((N, H + 2 * ph, W + 2 * pw, C), g.dtype)
    padded[:, : sh * Ho : sh, : sw * Wo : sw] = g
    return nchw_view(padded[:, ph : ph + H, pw : pw + W])


def conv2d(x, weight, bias=None, stride=1, padding=0):
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
