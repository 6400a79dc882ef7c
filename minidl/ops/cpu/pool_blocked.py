"""Pooling on the CPU: separable 1-D passes over blocks of images, on the thread pool (NumPy only).

The same results as the textbook code in ``pool`` (read that first); only the order of the work
differs. ``pool`` sends NumPy arrays here (``applies``) and everything else (CuPy) to its own code.

Both pools are *separable*: a max (or sum) over a kh x kw window is a max over kw columns followed
by a max over kh rows. So each is done in two 1-D passes, one per kernel offset along that axis
(kh + kw strided passes instead of kh * kw), and each pass is split over the batch on the thread
pool. The windows' taps that fall into the padding are simply skipped, which is padding with -inf
for max pooling and with 0 for average pooling.

max_pool2d backward routes each output gradient to the arg-max of its window. The 1-D passes record
their arg-max as a small integer offset (int8), so backward runs the two passes in reverse: rows
first (gy to the row maxima), then columns. Ties go to the first maximum in row-major window order,
as in PyTorch (the first row holding the maximum, then its first column). Max pooling walks the
batch in blocks of about ``_BLOCK_BYTES``, both passes of a block while it sits in the cache.

Along W, a strided pass over a channels-last block moves only C values per inner loop (C = 48..208
in the Inception modules), 2-3x slower per value than one contiguous pass. So the backward of a
stride-1 "same" pool (3x3/1 padded by 1, every Inception's fourth branch) runs its W pass on the
block's flat buffer, where tap t of every window is the value (t - p) * C further on: one
contiguous pass per offset (``flat_along_w``, ``_max_w_flat_backward``). The forward W pass done
the same way (its row ends then recomputed by the strided code) measured no faster as a whole.

The block size and the thread pool's settings (``parallel``) are read when a pool runs, so tests
can shrink them and send small inputs through several blocks and threads.
"""

from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from ..layout import empty_like_layout, valid_range
from .parallel import parallel_batches, parallel_blocks


def applies(x) -> bool:
    """True for NumPy arrays, the ones this path serves (a CuPy kernel already uses the whole
    device; the threads are for NumPy's single-core passes)."""
    return get_array_module(x) is np


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
            assert better is not None  # made for idx with several taps
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


def flat_along_w(*arrays, k, s, p):
    """True when a W pass over ``arrays`` (N, C, H, W) can run on flat offsets: a stride-1
    "same" window (k = 2p + 1 >= 3, as many outputs as inputs), each array dense channels-last."""
    return s == 1 and p >= 1 and k == 2 * p + 1 and all(_flat(a) is not None for a in arrays)


def _flat(a):
    """The flat view of a dense channels-last (N, C, H, W) array's buffer, or None."""
    t = a.transpose(0, 2, 3, 1)
    return t.reshape(-1) if t.flags.c_contiguous else None


def _max_w_flat_backward(gy, idx, k, p, out):
    """``_max_1d_backward`` along W (stride 1, "same": ``flat_along_w``) into ``out``, all three
    dense channels-last, on their flat buffers. Nothing needs repair at the row ends: an arg-max
    offset never points into the padding, so the offset that would reach from a window at a row's
    end into the neighbouring row is never the one it holds, and routes nothing there."""
    gyf, idxf, gxf = _flat(gy), _flat(idx), _flat(out)
    d, n = gy.shape[1], gyf.size
    hit, routed = np.empty(n, bool), np.empty(n, gy.dtype)
    np.equal(idxf, p, out=hit)  # offset p reads the window's own column: every input, once
    np.multiply(gyf, hit, out=gxf)
    for t in range(k):
        shift = (t - p) * d  # offset t of window q reads input q + shift
        if t == p:
            continue
        o, i = slice(max(0, -shift), n - max(0, shift)), slice(max(0, shift), n - max(0, -shift))
        np.equal(idxf[o], t, out=hit[o])
        np.multiply(gyf[o], hit[o], out=routed[o])
        gxf[i] += routed[o]
    return out


_BLOCK_BYTES = 1024 << 10


def _in_blocks(xp, x, work) -> None:
    """Call ``work(b0, b1)`` on blocks of a few images (~1 MB of ``x``), split over the thread
    pool: both 1-D passes of a block run while its data and temporaries sit in the cache. (Each
    NumPy call hands the GIL back and forth between the threads; with 256 KB blocks those
    hand-offs made the pooling 2-3x slower than with 1 MB ones.)"""
    step = max(1, _BLOCK_BYTES // max(1, x[:1].nbytes))
    parallel_blocks(xp, x.shape[0], step, work, x.size * 3)


def max_pool(x, kernel_size, stride, padding, out_hw, want):
    """``pool.MaxPool2d``'s forward on NumPy data: y (in x's layout) and, when ``want``, the
    arg-max offsets (idx_w, idx_h) that ``max_pool_backward`` routes the gradient by."""
    (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = kernel_size, stride, padding, out_hw
    N, C, H, W = x.shape
    y = empty_like_layout(x, (N, C, Ho, Wo))
    idx_w = empty_like_layout(x, (N, C, H, Wo), np.int8) if want else None
    idx_h = empty_like_layout(x, (N, C, Ho, Wo), np.int8) if want else None

    def work(b0, b1):
        r = _max_1d(x[b0:b1], 3, kw, sw, pw, Wo, None if idx_w is None else idx_w[b0:b1])  # H x Wo
        _max_1d(r, 2, kh, sh, ph, Ho, None if idx_h is None else idx_h[b0:b1], out=y[b0:b1])

    _in_blocks(get_array_module(x), x, work)
    return y, ((idx_w, idx_h) if want else None)


def max_pool_backward(gy, argmax, kernel_size, stride, padding, in_hw):
    """``pool.MaxPool2d``'s backward on NumPy data: gy routed to the arg-max ``max_pool`` saved."""
    (kh, kw), (sh, sw), (ph, pw), (H, W) = kernel_size, stride, padding, in_hw
    idx_w, idx_h = argmax
    N, C = gy.shape[:2]
    gx = empty_like_layout(gy, (N, C, H, W))

    def work(b0, b1):
        gr = _max_1d_backward(gy[b0:b1], idx_h[b0:b1], 2, kh, sh, ph, H)  # H x Wo
        iw, out = idx_w[b0:b1], gx[b0:b1]
        if flat_along_w(gr, iw, out, k=kw, s=sw, p=pw):  # W: on flat offsets where it can
            _max_w_flat_backward(gr, iw, kw, pw, out)
        else:
            _max_1d_backward(gr, iw, 3, kw, sw, pw, W, out=out)

    _in_blocks(get_array_module(gy), gx, work)
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


def window_sums(x, kernel_size, stride, padding, out_hw):
    """Each window's sum (taps in the padding count 0): ``pool.AvgPool2d``'s forward before the
    division by the window counts."""
    (kh, kw), (sh, sw), (ph, pw), (Ho, Wo) = kernel_size, stride, padding, out_hw
    return _sum_1d(_sum_1d(x, 3, kw, sw, pw, Wo), 2, kh, sh, ph, Ho)


def window_sums_backward(g, kernel_size, stride, padding, in_hw):
    """The adjoint of ``window_sums``: each window's g added to all of its taps inside the input."""
    (kh, kw), (sh, sw), (ph, pw), (H, W) = kernel_size, stride, padding, in_hw
    return _sum_1d_backward(_sum_1d_backward(g, 2, kh, sh, ph, H), 3, kw, sw, pw, W)
