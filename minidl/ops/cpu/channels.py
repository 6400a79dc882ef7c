"""Copies of channel slices on the CPU: each pixel's channels moved as one item (NumPy only).

The same result as ``dst[...] = src``; only the way NumPy walks the memory differs. A channel
slice of a channels-last buffer (a branch's channels inside an Inception module's output, or
their gradient) keeps each pixel's C values adjacent, the pixels further apart. NumPy copies it
with an inner loop of only C values, and for the narrow branches of a small network (C = 8..16)
the loop's overhead dwarfs the work. Viewed as one item of C values per pixel (a void dtype of
C * itemsize bytes), the same copy is a strided copy of whole items: at C = 8, 0.8 ns a value
against 2.7 (a 1 MB block of rows 64 channels apart; bench/README.md).
"""

from __future__ import annotations

import numpy as np


def applies(x) -> bool:
    """True for NumPy arrays (CuPy has no void dtype; its copy kernel is one launch anyway)."""
    return type(x) is np.ndarray


def copy_channels(dst, src):
    """``dst[...] = src``, channels on the last axis: each pixel's channels moved as one item
    when both arrays have one shape and dtype and keep their channels adjacent; else NumPy's own
    copy (which casts and broadcasts). Returns ``dst``."""
    c = src.shape[-1] if src.ndim else 0
    same = dst.shape == src.shape and dst.dtype == src.dtype
    if same and c > 1 and src.size and all(a.strides[-1] == a.itemsize for a in (dst, src)):
        item = np.dtype((np.void, c * src.itemsize))
        dst.view(item)[..., 0] = src.view(item)[..., 0]
    else:
        dst[...] = src
    return dst
