"""Shape ops: reshape transpose flatten getitem concat.

None of these change values, only where they sit, so each backward puts the gradient back where
the value came from: reshape back, transpose by the inverse permutation, scatter into the indexed
places, split the concatenation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module, scatter_add
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ._layout import channels_adjacent, nchw_view
from ._parallel import parallel_batches


class Reshape(Function):
    """y = x viewed with a new shape;  dx = gy viewed with the old one."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(
                f"reshape: shape {self.shape} is invalid for an input of shape {x.shape} "
                f"({x.size} elements)"
            ) from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    """y = x with axes permuted;  dx = gy permuted by the inverse permutation."""

    def __init__(self, axes: tuple[int, ...] | None):
        self.axes = axes

    def forward(self, x):
        axes = self.axes if self.axes else tuple(range(x.ndim))[::-1]
        if sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes must permute {x.ndim} axes, got {tuple(axes)}")
        self.inverse = tuple(np.argsort([a % x.ndim for a in axes]))
        return x.transpose(axes)

    def backward(self, gy):
        return gy.transpose(self.inverse)


class GetItem(Function):
    """y = x[index] (basic slicing or integer-array indexing);  dx = zeros with gy added at index.

    Integer-array indices may repeat an element (``x[[0, 0]]``); its gradients must then be summed,
    which ``scatter_add`` (``np.add.at``) does and plain ``dx[index] += gy`` would not.
    """

    def __init__(self, index: Any):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.in_shape, self.dtype)
        scatter_add(gx, self.index, gy)
        return gx


class Concat(Function):
    """y = the inputs joined along ``axis``;  dx_i = the slice of gy that x_i filled."""

    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        first = xs[0]
        axis = self.axis % first.ndim
        for i, x in enumerate(xs):
            if x.ndim != first.ndim or any(
                a != b for d, (a, b) in enumerate(zip(x.shape, first.shape)) if d != axis
            ):
                raise ValueError(
                    f"concat: tensors must match in every axis but axis={self.axis}; tensor 0 "
                    f"has shape {first.shape}, tensor {i} has shape {x.shape}"
                )
        self.axis = axis
        self.bounds = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return _join(xs, axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        return tuple(xp.split(gy, self.bounds, axis=self.axis))


class Split(Function):
    """(y_1, ..., y_k) = consecutive slices of x along ``axis`` (views);  dx = the gys joined.

    The adjoint of concat: forward and backward swap roles.
    """

    def __init__(self, sections, axis: int):
        self.sections, self.axis = tuple(int(n) for n in sections), axis

    def forward(self, x):
        axis = self.axis % x.ndim
        if sum(self.sections) != x.shape[axis] or min(self.sections) < 1:
            raise ValueError(
                f"split: sections must be positive and add up to x.shape[{self.axis}] = "
                f"{x.shape[axis]}, got {list(self.sections)}"
            )
        self.axis = axis
        bounds = np.cumsum(self.sections)[:-1]
        return tuple(get_array_module(x).split(x, bounds, axis=axis))

    def backward(self, *gys):
        return _join(gys, self.axis)


def _join(xs, axis):
    """The arrays ``xs`` concatenated along ``axis``; on channels, channels-last when all of them
    keep their channels adjacent (channels-last, or a channel slice of a channels-last buffer:
    split's gradients are often one of each)."""
    xp = get_array_module(xs[0])
    if axis == 1 and xs[0].ndim == 4 and all(map(channels_adjacent, xs)):
        return _concat_channels_last(xp, xs, np.cumsum([x.shape[1] for x in xs])[:-1])
    return xp.concatenate(xs, axis=axis)


def _concat_channels_last(xp, xs, bounds):
    """Channels-last inputs joined on channels into a channels-last output (np.concatenate would
    return NCHW order, a transposing copy that every consumer would then undo)."""
    N, _, H, W = xs[0].shape
    out = xp.empty((N, H, W, int(bounds[-1]) + xs[-1].shape[1]), xs[0].dtype)
    starts = [0, *(int(b) for b in bounds)]

    def work(lo, hi):
        for x, c0 in zip(xs, starts):
            out[lo:hi, :, :, c0 : c0 + x.shape[1]] = x[lo:hi].transpose(0, 2, 3, 1)

    parallel_batches(xp, N, work, out.size)
    return nchw_view(out)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    return Reshape(tuple(int(s) for s in shape))(x)


def transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], tuple | list):
        axes = tuple(axes[0])
    return Transpose(tuple(axes) or None)(x)


def flatten(x, start_dim: int = 1):
    """Merge the axes from ``start_dim`` on: (N, C, H, W) -> (N, C*H*W) for start_dim=1."""
    return reshape(x, *x.shape[:start_dim], -1)


def getitem(x, index):
    from ..tensor import Tensor

    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def concat(tensors, axis: int = 0):
    """Join tensors along an existing axis (``torch.cat``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: tensors must be a non-empty sequence, got an empty one")
    return Concat(axis)(*tensors)


def split(x, sections, axis: int = 0):
    """Consecutive slices of ``x`` along ``axis``, of the sizes in ``sections`` (``torch.split``
    with a list of sizes); a tuple of views."""
    return Split(sections, axis)(x)


# ------------------------------------------------------------------ gradient checks
@register_gradcheck("reshape")
def _reshape_cases(rng):
    yield GradCase("3x4 -> 2x6", lambda x: reshape(x, 2, 6), [rng.standard_normal((3, 4))])


@register_gradcheck("transpose")
def _transpose_cases(rng):
    yield GradCase("reverse", lambda x: x.T, [rng.standard_normal((3, 4))])
    yield GradCase(
        "(0,2,3,1)", lambda x: transpose(x, 0, 2, 3, 1), [rng.standard_normal((2, 3, 2, 4))]
    )


@register_gradcheck("getitem")
def _getitem_cases(rng):
    yield GradCase("slice", lambda x: x[1:, ::2], [rng.standard_normal((3, 5))])
    yield GradCase(
        "int array, repeats", lambda x: x[np.array([0, 2, 0])], [rng.standard_normal((3, 4))]
    )
    yield GradCase(
        "pairs (rows, cols)",
        lambda x: x[np.arange(3), np.array([1, 0, 1])],
        [rng.standard_normal((3, 2))],
    )


@register_gradcheck("concat")
def _concat_cases(rng):
    yield GradCase(
        "axis=1, three inputs",
        lambda a, b, c: concat([a, b, c], axis=1),
        [
            rng.standard_normal((2, 3, 2)),
            rng.standard_normal((2, 1, 2)),
            rng.standard_normal((2, 4, 2)),
        ],
    )


@register_gradcheck("split")
def _split_cases(rng):
    def keep_two(x):  # the middle slice gets no gradient: backward fills in zeros for it
        a, _, c = split(x, [1, 2, 2], axis=1)
        return concat([c, a], axis=1)

    yield GradCase("axis=1, one unused", keep_two, [rng.standard_normal((2, 5, 3))])
    yield GradCase(
        "channels-last 4-D",
        lambda x: concat(split(transpose(x, 0, 3, 1, 2), [2, 1], axis=1)[::-1], axis=1),
        [rng.standard_normal((2, 3, 2, 3))],
    )
