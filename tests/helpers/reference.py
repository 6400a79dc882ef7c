"""Naive loop references for the image ops: slow, obvious, independent of minidl's code paths.

Each loops over output positions (and kernel offsets) and reads windows straight off the
definitions; only the (N, C) axes are vectorised. Inputs and outputs are NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np


def pad(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0)):
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = pad(x, ph, pw)
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, O, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]  # N C kh kw
            for o in range(O):
                y[:, o, i, j] = (window * w[o]).sum(axis=(1, 2, 3))
    if b is not None:
        y += b[None, :, None, None]
    return y


def pool_output_size(size, k, s, p, ceil_mode):
    """PyTorch's formula, written independently: ceil/floor of (size + 2p - k)/s + 1, minus one if
    the last window would start in the right padding."""
    rounding = math.ceil if ceil_mode else math.floor
    out = rounding((size + 2 * p - k) / s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, k, s, p, ceil_mode=False):
    N, C, H, W = x.shape
    Ho = pool_output_size(H, k[0], s[0], p[0], ceil_mode)
    Wo = pool_output_size(W, k[1], s[1], p[1], ceil_mode)
    y = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h_lo, h_hi = max(h0, 0), min(h0 + k[0], H)
            w_lo, w_hi = max(w0, 0), min(w0 + k[1], W)
            y[:, :, i, j] = x[:, :, h_lo:h_hi, w_lo:w_hi].max(axis=(2, 3))
    return y


def avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True):
    N, C, H, W = x.shape
    Ho = pool_output_size(H, k[0], s[0], p[0], ceil_mode)
    Wo = pool_output_size(W, k[1], s[1], p[1], ceil_mode)
    y = np.empty((N, C, Ho, Wo), x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])  # clipped to padded input
            h_lo, h_hi, w_lo, w_hi = max(h0, 0), min(h1, H), max(w0, 0), min(w1, W)
            total = x[:, :, h_lo:h_hi, w_lo:w_hi].sum(axis=(2, 3))
            count = (h1 - h0) * (w1 - w0) if count_include_pad else (h_hi - h_lo) * (w_hi - w_lo)
            y[:, :, i, j] = total / count
    return y


def adaptive_avg_pool2d(x, out):
    N, C, H, W = x.shape
    y = np.empty((N, C) + tuple(out), x.dtype)
    for i in range(out[0]):
        for j in range(out[1]):
            h0, h1 = math.floor(i * H / out[0]), math.ceil((i + 1) * H / out[0])
            w0, w1 = math.floor(j * W / out[1]), math.ceil((j + 1) * W / out[1])
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def local_response_norm(x, size, alpha, beta, k):
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        energy = (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / (k + alpha / size * energy) ** beta
    return y
