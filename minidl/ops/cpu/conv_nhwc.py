"""Convolution on the CPU: channels-last, in cache-sized chunks, on the thread pool (NumPy only).

The same math as the textbook ``conv.Conv2d`` (read that first): y = cols @ Wm^T, dW = gy^T cols,
dx = col2im(gy Wm), db = sum gy, with im2col rows in channels-last order (u, v, c). Only the order
of the work differs, for speed on a small CPU; ``conv.Conv2d`` sends NumPy arrays here
(``applies``) and everything else (CuPy) to its own code.

Chunks. The batch is processed in chunks of a few images, so that each chunk's columns are still
in the cache when the GEMM reads them, and the full im2col matrix (kh*kw times the input) never
exists: backward rebuilds a chunk's columns (or those of gy) instead of keeping them. The chunks
are shared out over the thread pool (``parallel.gemm_blocks``; NumPy releases the GIL in copies,
ufuncs and GEMMs): each thread gathers its chunk's columns and runs the chunk's GEMMs itself, with
OpenBLAS single-threaded meanwhile. A narrow layer's chunk GEMMs are small, and splitting each one
over every core (then waiting for all) cost more than it gained: one thread per chunk cut the
time of a training step's convolutions by 23% on 2 cores (bench/README.md). The chunks' weight
gradients are added in chunk order, so the sum does not depend on which thread finished first.

im2col in NHWC. In a zero-padded NHWC image the kw taps of one window row are adjacent, so the
columns are a strided *view* of the padded input and im2col is one copy of it (see
``_im2col_nhwc``).

1x1. A 1x1 convolution needs no im2col: every row of cols would be one pixel's C channels, i.e.
the NHWC input itself, so it is a plain matrix product over channels.

Stride 1. dx is then itself a convolution: of gy padded by k-1-p with the kernel flipped in space
and its in/out channels swapped, i.e. a gather (im2col of gy) and a GEMM, no scatter-add. Those
columns of gy then also give dW, as x^T @ gcols with the kernel flipped back, so x's columns need
not be rebuilt (used for inputs of ``_DW_FROM_GCOLS_MIN_CHANNELS`` channels or more; see
``_weight_grad_from_gcols``).

The thresholds (``_CHUNK_BYTES``, ``_DW_FROM_GCOLS_MIN_CHANNELS``, and ``parallel.WORKERS``) are
read when a convolution runs, so tests can shrink them and send small inputs through every route.
"""

from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from ..layout import nchw_view, output_size, valid_range
from . import parallel
from .channels import copy_channels
from .parallel import parallel_batches

# each thread's chunk about a core's L2 (2 MB here): a training step ran ~2% faster than with
# 4 MB chunks, 10% faster than with 8 MB (two alternating runs, width 0.25, batch 128)
_CHUNK_BYTES = 2 << 20
# Below this many input channels the GEMM x^T @ gcols (a thin C x kh*kw*O output) runs at down to
# a third of the speed of g^T @ cols: more than the rebuild of x's columns saves (C = 4..80 tried)
_DW_FROM_GCOLS_MIN_CHANNELS = 32


def applies(x) -> bool:
    """True for NumPy arrays, the ones this path serves (threads and ``as_strided`` views are
    NumPy tools; a CuPy kernel already uses the whole device)."""
    return get_array_module(x) is np


def nhwc(x):
    """A C-contiguous N x H x W x C array with the values of the NCHW array ``x``.

    A view when ``x`` is channels-last already; otherwise one transposing copy, split over the
    batch on the thread pool.
    """
    t = x.transpose(0, 2, 3, 1)
    if t.flags.c_contiguous:
        return t
    xp = get_array_module(x)
    out = xp.empty(t.shape, x.dtype)

    def work(lo, hi):
        out[lo:hi] = t[lo:hi]

    parallel_batches(xp, t.shape[0], work, t.size)
    return out


def _taps(kh, kw, sh, sw, ph, pw, H, W, Ho, Wo):
    """For each kernel offset (u, v): the output rows/columns it touches inside the input."""
    for u in range(kh):
        i0, i1, hi = valid_range(Ho, u, sh, ph, H)
        for v in range(kw):
            j0, j1, wi = valid_range(Wo, v, sw, pw, W)
            yield u, v, (i0, i1, hi), (j0, j1, wi)


def _im2col_nhwc(xh, kernel_size, stride, padding, out_hw, threaded=True):
    """cols (N, Ho, Wo, kh, kw, C) from an NHWC array (any strides); padding taps are zero.

    In a zero-padded NHWC image the kw taps of one window row are adjacent: xpad[n, i*s + u,
    j*s + v, c] for v < kw, c < C is one contiguous run of kw*C values. So cols, viewed as
    (N, Ho, Wo, kh, kw*C), is a strided *view* of xpad (``as_strided``: no copy) and im2col is one
    copy of that view, moving runs of kw*C values rather than kh*kw separate runs of C, which
    matters for the narrow layers (C = 4..32) of a small network. The copy is split over the batch
    on the thread pool (``threaded``; not when a pool thread calls it for its own chunk).
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
        copy_channels(rows[lo:hi], windows)  # each window row's kw*C values as one item

    parallel_batches(xp, N, work, cols.size) if threaded else work(0, N)
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
    copy_channels(xpad[:, ph : ph + H, pw : pw + W], xh)  # xh: often a narrow channel slice
    return xpad


def _col2im_nhwc(cols, in_hw, stride, padding, threaded=True):
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

    parallel_batches(xp, N, work, cols.size) if threaded else work(0, N)
    return out


def _chunks(n, bytes_per_item):
    """Batch ranges whose im2col matrices stay cache-sized (a few MB).

    Working chunk by chunk, im2col writes and the GEMM reads the columns while they are still in
    the L3 cache, instead of streaming one huge matrix through DRAM twice; and the full matrix is
    never held, so backward can afford to rebuild it instead of keeping it.
    """
    step = max(parallel.WORKERS, _CHUNK_BYTES // max(1, bytes_per_item))  # >= 1 image per thread
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _in_chunks(n, bytes_per_item, chunk, elements):
    """``chunk(lo, hi)`` for each of ``_chunks``' batch ranges, the chunks shared out over the
    thread pool, each thread running its chunks' GEMMs itself (``parallel.gemm_blocks``)."""
    ranges = _chunks(n, bytes_per_item)
    if ranges:
        parallel.gemm_blocks(np, n, ranges[0][1] - ranges[0][0], chunk, elements)


def forward(x, wm, b, kernel_size, stride, padding, keep_x):
    """``conv.Conv2d``'s forward on NumPy data: (y, xh).

    x (N, C, H, W) any strides, wm the weight as (O, kh*kw*C) rows in (u, v, c) order, b (O,) or
    None. y is an NCHW view over an NHWC buffer (channels last). xh is x as backward's weight
    gradient reads it, an NHWC-ordered view (or, for 1x1, its padded and subsampled pixels); None
    unless ``keep_x``. The batch is processed in cache-sized chunks: im2col of a chunk (its
    zero-padded copy also puts an NCHW x in NHWC order), then its GEMM.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    O = wm.shape[0]
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    Ho, Wo = output_size(H, kh, sh, ph), output_size(W, kw, sw, pw)
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

        def chunk(lo, hi):  # on a pool thread: im2col of the chunk, then its own GEMM
            cols = _im2col_nhwc(xh[lo:hi], (kh, kw), stride, padding, (Ho, Wo), threaded=False)
            out = y[lo:hi].reshape(-1, O)
            xp.matmul(cols.reshape(-1, kh * kw * C), wm.T, out=out)
            if b is not None:
                out += b

        _in_chunks(N, Ho * Wo * kh * kw * C * x.itemsize, chunk, y.size)
    return nchw_view(y.reshape(N, Ho, Wo, O)), (xh if keep_x else None)


def backward(gy, xh, wm, w_shape, in_hw, stride, padding, need):
    """``conv.Conv2d``'s backward on NumPy data: (dx, dW, db), each None unless ``need``-ed.

    gy (N, O, Ho, Wo) any strides; xh as ``forward`` returned it (needed for dW). Each chunk's
    columns are rebuilt rather than kept; or, at stride 1 with dx wanted and C >= the threshold,
    dW comes from the columns of g built for dx anyway (``_weight_grad_from_gcols``).
    """
    xp = get_array_module(gy)
    N, O, Ho, Wo = gy.shape
    _, C, kh, kw = w_shape
    (H, W), (sh, sw), (ph, pw) = in_hw, stride, padding
    if kh == kw == 1:
        gm = nhwc(gy).reshape(-1, O)
        gb = gm.sum(axis=0) if need[2] else None
        gw = (gm.T @ xh.reshape(-1, C)).reshape(O, C, 1, 1) if need[1] else None
        gx = (
            _scatter_1x1((gm @ wm).reshape(N, Ho, Wo, C), (H, W), stride, padding)
            if need[0]
            else None
        )
        return gx, gw, gb
    # stride 1: dx is itself a convolution, of g zero-padded by k-1-p with the kernel flipped
    # in space and in/out channels swapped (each input pixel collects the outputs it fed):
    # a gather (im2col of g) and a GEMM, much cheaper than col2im's scatter-add
    as_conv = (sh, sw) == (1, 1) and ph < kh and pw < kw
    # ... and then the columns of g give dW too, without rebuilding x's columns (see
    # _weight_grad_from_gcols); the GEMM that does it is slower for narrow inputs
    dw_from_gcols = as_conv and need[0] and need[1] and C >= _DW_FROM_GCOLS_MIN_CHANNELS
    if need[0] and as_conv:
        flipped = wm.reshape(O, kh, kw, C)[:, ::-1, ::-1, :]  # (O, u', v', C)
        wflip = flipped.transpose(1, 2, 0, 3).reshape(kh * kw * O, C)  # rows (u', v', o)
    gb = xp.einsum("nohw->o", gy) if need[2] else None
    gx = xp.empty((N, H, W, C), gy.dtype) if need[0] else None
    partial_dw = {}  # the chunks' weight gradients, by first image, added in order afterwards

    def chunk(lo, hi):  # on a pool thread, with single-threaded GEMMs
        g = gy[lo:hi].transpose(0, 2, 3, 1)  # chunk x Ho x Wo x O, a view
        if (need[1] and not dw_from_gcols) or (need[0] and not as_conv):
            gc = xp.ascontiguousarray(g).reshape(-1, O)  # g's rows, for the GEMMs below
        if need[1] and not dw_from_gcols:
            cols = _im2col_nhwc(xh[lo:hi], (kh, kw), stride, padding, (Ho, Wo), threaded=False)
            partial_dw[lo] = gc.T @ cols.reshape(-1, kh * kw * C)
        if gx is not None and as_conv:  # (gx: need[0])
            pad = (kh - 1 - ph, kw - 1 - pw)
            gcols = _im2col_nhwc(g, (kh, kw), (1, 1), pad, (H, W), threaded=False)
            gcols = gcols.reshape(-1, kh * kw * O)
            xp.matmul(gcols, wflip, out=gx[lo:hi].reshape(-1, C))
            if dw_from_gcols:
                partial_dw[lo] = _xt_gcols(xh[lo:hi], gcols)
        elif gx is not None:
            dcols = (gc @ wm).reshape(hi - lo, Ho, Wo, kh, kw, C)
            gx[lo:hi] = _col2im_nhwc(dcols, (H, W), stride, padding, threaded=False)

    per_image = max(Ho * Wo * kh * kw * C, H * W * kh * kw * O) * gy.itemsize
    _in_chunks(N, per_image, chunk, gy.size * kh * kw)
    gw = None
    if need[1]:  # added in chunk order, whichever thread finished first: the same sum every run
        parts = [partial_dw[lo] for lo in sorted(partial_dw)]
        dw = sum(parts[1:], parts[0])
        if dw_from_gcols:
            gw = _weight_grad_from_gcols(dw, O, kh, kw)
        else:
            gw = dw.reshape(O, kh, kw, C).transpose(0, 3, 1, 2).copy()
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
