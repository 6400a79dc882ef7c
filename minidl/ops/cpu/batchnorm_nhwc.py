"""Batch norm (and an optional fused ReLU) on channels-last data: blocked for the cache, threaded.

The same math as the reference path in ``norm.BatchNorm`` (read that first); only the order of the
work differs. Channels-last data is an (M, C) matrix, one row per pixel (M = N*H*W), so per-channel
statistics are column sums. The rows are walked in blocks of about 1 MB, split over the thread
pool, and everything a block needs is computed while it sits in cache; so one pass over memory
does several of the reference path's whole-array steps:

forward, training
    pass 1, per block b: its row count n_b, mean mu_b and centred sum of squares S_b. The blocks
    are combined in float64 with Chan et al.'s pairwise rule (exact, and stable in float32):
        mean = sum n_b mu_b / m,    m * var = sum S_b + n_b (mu_b - mean)^2
    pass 2: y = x * scale + shift, then max(y, 0) when the ReLU is fused.
backward, training (g = gy, or gy * (y > 0) with the fused ReLU; xhat = (x - mean) invstd)
    pass 1: g into dx's buffer; dbeta = sum g,  dgamma = invstd * sum g (x - mean)
    pass 2: in place, dx = scale (g - dbeta/m - xhat dgamma/m) = g * scale + x * A + B, with
            A = -scale invstd dgamma / m,   B = -scale dbeta / m - mean A
eval: only pass 2 (y = x * scale + shift; dx = g * scale).
"""

from __future__ import annotations

import numpy as np

from ..layout import nchw_view
from .channels import copy_channels
from .parallel import parallel_blocks

_BLOCK_ELEMENTS = 256 << 10  # 1 MB of float32 per operand: fewer Python calls; blocks stay in L3
_ROW_ELEMENTS = 1024  # a block's rows are regrouped into rows of about this many values


def as_rows(a):
    """The (M, C) matrix of pixels x channels of a channels-last 4-D array or a 2-D array (a view
    when the layout allows; a copy otherwise, e.g. for an NCHW-contiguous gradient)."""
    if a.ndim == 2:
        return a
    return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])


def applies(x) -> bool:
    """True for the NumPy arrays this path serves: those whose ``as_rows`` is a view with
    adjacent channels, i.e. 2-D (N, C) or channels-last 4-D, possibly a channel slice of a wider
    buffer (rows then sit further apart: correct, if slower per element)."""
    if type(x) is not np.ndarray or x.ndim not in (2, 4):
        return False
    t = x if x.ndim == 2 else x.transpose(0, 2, 3, 1)
    if t.shape[-1] > 1 and t.strides[-1] != t.itemsize:
        return False
    # the leading axes (N, H, W) must merge into one axis of rows: each steps over the next
    lead = [(n, st) for n, st in zip(t.shape[:-1], t.strides[:-1]) if n > 1]
    return all(outer == inner * n for (_, outer), (n, inner) in zip(lead, lead[1:]))


def _dense(rows) -> bool:
    """True when the (M, C) matrix is one contiguous run (not a channel slice of a wider one)."""
    return rows.strides[0] == rows.shape[1] * rows.itemsize or rows.shape[0] == 1


class _Blocks:
    """How a pass walks an (M, C) matrix: blocks of rows, shared out over the thread pool.

    NumPy broadcasts a per-channel vector over (rows, C) with an inner loop of only C values, and
    for a narrow layer (C = 4..48) the loop's overhead costs more than the arithmetic. So when all
    operands are dense, a block of r rows is viewed as r/k rows of k*C values (k consecutive pixels
    side by side, a free reshape) and each per-channel vector is tiled k times to match; a column
    sum of the wide view is folded back to C sums. The same values, 1.3-3x faster per pass.
    """

    def __init__(self, *operands):
        M, C = operands[0].shape
        self.M, self.C = M, C
        k = 1
        if all(_dense(a) for a in operands):
            k = 1 << (max(1, _ROW_ELEMENTS // C).bit_length() - 1)  # a power of 2 ...
            while M % k:  # ... that divides M, so every block is k whole pixels wide
                k //= 2
        self.k = k
        self.step = max(k, _BLOCK_ELEMENTS // C // k * k)

    def wide(self, block):
        """A block of rows (r, C), r a multiple of k, as (r/k, k*C)."""
        return block.reshape(-1, self.k * self.C)

    def tile(self, per_channel):
        """A per-channel vector (C,) repeated to match a wide row (k*C,)."""
        return np.tile(per_channel, self.k)

    def column_sums(self, wide_block, other=None):
        """Per-channel sums (C,) of a wide block, or of its product with ``other``."""
        if other is None:
            sums = np.einsum("ij->j", wide_block)
        else:
            sums = np.einsum("ij,ij->j", wide_block, other)
        return sums.reshape(self.k, self.C).sum(axis=0)

    def partial_sums(self):
        """float64 zeros, one row per block: the blocks' partial sums, added up after the pass."""
        return np.zeros((-(-self.M // self.step), self.C))

    def run(self, work) -> None:
        """Call ``work(b, r0, r1)`` for every block b of rows r0:r1, blocks split over threads."""
        step = self.step
        parallel_blocks(np, self.M, step, lambda r0, r1: work(r0 // step, r0, r1), self.M * self.C)


def _like(x, rows):
    """``rows`` (M, C) reshaped back to the shape and channels-last layout of ``x``."""
    if x.ndim == 2:
        return rows
    N, C, H, W = x.shape
    return nchw_view(rows.reshape(N, H, W, C))


def statistics(x):
    """Per-channel mean and biased variance of ``x`` over all but axis 1, in float64."""
    xr = as_rows(x)
    M, C = xr.shape
    blocks = _Blocks(xr)
    means, sq = blocks.partial_sums(), blocks.partial_sums()
    counts = np.zeros(len(means))

    def work(b, r0, r1):
        xb = blocks.wide(xr[r0:r1])
        mu = blocks.column_sums(xb) / (r1 - r0)
        d = xb - blocks.tile(mu)
        counts[b], means[b], sq[b] = r1 - r0, mu, blocks.column_sums(d, d)

    blocks.run(work)
    mean = counts @ means / M
    var = (sq.sum(axis=0) + counts @ np.square(means - mean)) / M
    return mean, var


def affine(x, scale, shift, relu: bool, out=None):
    """y = x * scale + shift per channel (then max(y, 0) with ``relu``), in x's layout; into
    ``out`` when given (returned), which may be a channel slice of a wider buffer."""
    xr = as_rows(x)
    yr = np.empty(xr.shape, xr.dtype) if out is None else as_rows(out)
    # a channel slice (out, inside a concatenation) has rows too narrow for fast passes: each
    # block is computed dense, in wide rows, and copied into the slice while it is in the cache
    in_place = _dense(yr)
    blocks = _Blocks(xr, *([yr] if in_place else []))
    scale_t, shift_t = blocks.tile(scale), blocks.tile(shift)

    def work(b, r0, r1):
        yb = blocks.wide(yr[r0:r1] if in_place else np.empty((r1 - r0, blocks.C), xr.dtype))
        np.multiply(blocks.wide(xr[r0:r1]), scale_t, out=yb)
        yb += shift_t
        if relu:
            np.maximum(yb, 0, out=yb)
        if not in_place:
            copy_channels(yr[r0:r1], yb.reshape(r1 - r0, blocks.C))

    blocks.run(work)
    return _like(x, yr) if out is None else out


def backward(gy, x, y, mean, invstd, scale, training: bool, relu: bool):
    """(dx, dgamma, dbeta) of y = [relu](x * scale + shift); see the module docstring.

    ``y`` (the forward output) is only read with ``relu``; mean/invstd/scale are per-channel."""
    gr, xr = as_rows(gy), as_rows(x)
    yr = as_rows(y) if relu else None
    M, C = xr.shape
    dtype = xr.dtype
    dxr = np.empty(xr.shape, dtype)  # holds g after pass 1, dx after pass 2
    # gy is often a channel slice of the gradient of a concatenation: it is read once, in (r, C)
    # rows, into dx's dense buffer; every later step works on wide rows
    blocks = _Blocks(xr, dxr)  # gr and yr are only read in rows (r, C), never wide
    sums_g, sums_gd = blocks.partial_sums(), blocks.partial_sums()
    mean_t = blocks.tile(mean.astype(dtype))

    def reduce_work(b, r0, r1):
        if yr is not None:  # relu
            np.multiply(gr[r0:r1], yr[r0:r1] > 0, out=dxr[r0:r1])
        else:
            dxr[r0:r1] = gr[r0:r1]
        g = blocks.wide(dxr[r0:r1])
        sums_g[b] = blocks.column_sums(g)
        sums_gd[b] = blocks.column_sums(g, blocks.wide(xr[r0:r1]) - mean_t)

    blocks.run(reduce_work)
    dbeta = sums_g.sum(axis=0)
    dgamma = invstd * sums_gd.sum(axis=0)
    if training:
        a = -scale * invstd * dgamma / M
        b = -scale * dbeta / M - mean * a
    else:
        a = b = np.zeros(C)
    a_t, b_t, scale_t = (blocks.tile(v.astype(dtype)) for v in (a, b, scale))

    def dx_work(_, r0, r1):
        out = blocks.wide(dxr[r0:r1])
        out *= scale_t
        if training:
            out += blocks.wide(xr[r0:r1]) * a_t
            out += b_t

    blocks.run(dx_work)
    return _like(x, dxr), dgamma.astype(dtype), dbeta.astype(dtype)
