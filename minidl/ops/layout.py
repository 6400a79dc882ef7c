"""Helpers shared by the image ops (conv, pool): argument checking and the channels-last layout.

The public API is NCHW, as PyTorch's. In memory an NCHW tensor may be a transposed *view* over an
NHWC buffer ("channels last"): ``buf.transpose(0, 3, 1, 2)`` has the logical shape N x C x H x W
but its channels are adjacent in memory. Convolutions are faster on that layout (an im2col row is
then ``kh*kw`` contiguous runs of C values), so conv2d returns such views and the ops after it
accept any strides (the fast CPU convolution's ``cpu.conv_nhwc.nhwc`` turns either layout into a
contiguous NHWC array, for free when the tensor already is a channels-last view).

Textbook helpers only: nothing here imports the thread pool (``minidl.ops.cpu``).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module


def pair(value, name: str, op: str, minimum: int) -> tuple[int, int]:
    """``value`` as (height, width): an int or a pair of ints, each >= ``minimum``."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(items, (tuple, list))
        or len(items) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items)
    ):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def check_4d(x, name: str, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{op}: {name} must be 4-D (N, C, H, W), got {x.ndim}-D input of shape {tuple(x.shape)}"
        )


def check_float(x, name: str, op: str) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point array, got dtype {x.dtype}")


def is_channels_last(x) -> bool:
    """True when the NCHW array ``x`` is a view over a contiguous NHWC buffer."""
    return x.transpose(0, 2, 3, 1).flags.c_contiguous


def channels_adjacent(x) -> bool:
    """True when the NCHW array ``x`` keeps each pixel's channels next to each other in memory:
    channels-last, or a channel slice of a channels-last buffer."""
    return x.shape[1] == 1 or x.strides[1] == x.itemsize


def nchw_view(buf):
    """The NCHW view (channels last in memory) of an N x H x W x C buffer."""
    return buf.transpose(0, 3, 1, 2)


def output_size(size: int, k: int, s: int, p: int, ceil_mode: bool = False) -> int:
    """Number of windows of size k, stride s over ``size`` inputs padded by p on both sides.

    floor((size + 2p - k) / s) + 1, or with ceil_mode the ceiling, except that (PyTorch's rule) the
    last window must start inside the input or the left padding: start (out-1)*s < size + p.
    """
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def valid_range(out_size: int, offset: int, s: int, p: int, size: int) -> tuple[int, int, int]:
    """For kernel offset ``offset``: the outputs [o0, o1) whose tap o*s - p + offset lands inside
    the input [0, size), and the input index of the first one."""
    o0 = max(0, -(-(p - offset) // s))
    o1 = min(out_size, (size - 1 + p - offset) // s + 1)
    o1 = max(o1, o0)
    return o0, o1, o0 * s - p + offset


def empty_like_layout(x, shape, dtype=None):
    """An uninitialised NCHW array of ``shape`` stored in ``x``'s memory order (channels last when
    ``x`` is), so element-wise passes between the two walk memory in the same order."""
    xp = get_array_module(x)
    dtype = x.dtype if dtype is None else dtype
    if is_channels_last(x) and not x.flags.c_contiguous:
        N, C, H, W = shape
        return nchw_view(xp.empty((N, H, W, C), dtype))
    return xp.empty(shape, dtype)
