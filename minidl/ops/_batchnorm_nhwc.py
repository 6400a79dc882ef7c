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

from ._layout import nchw_view
from ._parallel import parallel_blocks

_BLOCK_ELEMENTS = 256 << 10  # 1 MB of float32 per operand: fewer Python calls; blocks stay in L3


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


def _block_rows(channels: int) -> int:
    return max(1, _BLOCK_ELEMENTS // channels)


def _for_blocks(rows: int, channels: int, work) -> None:
    """Call ``work(k, r0, r1)`` for every block k of rows, blocks split over the thread pool."""
    step = _block_rows(channels)
    parallel_blocks(np, rows, step, lambda r0, r1: work(r0 // step, r0, r1), rows * channels)


def _per_block(rows: int, channels: int):
    """float64 zeros, one row per block: the blocks' partial sums, added up after the pass."""
    return np.zeros((-(-rows // _block_rows(channels)), channels))


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
    means, sq = _per_block(M, C), _per_block(M, C)
    counts = np.zeros(len(means))

    def work(k, r0, r1):
        xb = xr[r0:r1]
        mu = np.einsum("ij->j", xb) / (r1 - r0)
        d = xb - mu
        counts[k], means[k], sq[k] = r1 - r0, mu, np.einsum("ij,ij->j", d, d)

    _for_blocks(M, C, work)
    mean = counts @ means / M
    var = (sq.sum(axis=0) + counts @ np.square(means - mean)) / M
    return mean, var


def affine(x, scale, shift, relu: bool):
    """y = x * scale + shift per channel (then max(y, 0) with ``relu``), in x's layout."""
    xr = as_rows(x)
    M, C = xr.shape
    yr = np.empty_like(xr)

    def work(k, r0, r1):
        yb = yr[r0:r1]
        np.multiply(xr[r0:r1], scale, out=yb)
        yb += shift
        if relu:
            np.maximum(yb, 0, out=yb)

    _for_blocks(M, C, work)
    return _like(x, yr)


def backward(gy, x, y, mean, invstd, scale, training: bool, relu: bool):
    """(dx, dgamma, dbeta) of y = [relu](x * scale + shift); see the module docstring.

    ``y`` (the forward output) is only read with ``relu``; mean/invstd/scale are per-channel."""
    gr, xr = as_rows(gy), as_rows(x)
    yr = as_rows(y) if relu else None
    M, C = xr.shape
    dtype = xr.dtype

    sums_g, sums_gd = _per_block(M, C), _per_block(M, C)
    mean32 = mean.astype(dtype)
    dxr = np.empty_like(xr)  # holds g after pass 1, dx after pass 2

    def reduce_work(k, r0, r1):
        g = dxr[r0:r1]
        if relu:
            np.multiply(gr[r0:r1], yr[r0:r1] > 0, out=g)
        else:
            g[...] = gr[r0:r1]
        sums_g[k] = np.einsum("ij->j", g)
        sums_gd[k] = np.einsum("ij,ij->j", g, xr[r0:r1] - mean32)

    _for_blocks(M, C, reduce_work)
    dbeta = sums_g.sum(axis=0)
    dgamma = invstd * sums_gd.sum(axis=0)
    if training:
        a = -scale * invstd * dgamma / M
        b = -scale * dbeta / M - mean * a
    else:
        a = b = np.zeros(C)
    a32, b32, scale32 = a.astype(dtype), b.astype(dtype), scale.astype(dtype)

    def dx_work(k, r0, r1):
        out = dxr[r0:r1]
        out *= scale32
        if training:
            out += xr[r0:r1] * a32
            out += b32

    _for_blocks(M, C, dx_work)
    return _like(x, dxr), dgamma.astype(dtype), dbeta.astype(dtype)
