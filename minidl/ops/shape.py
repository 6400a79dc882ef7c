"""Shape ops: reshape transpose flatten getitem concat split.

None of these change values, only where they sit, so each backward puts the gradient back where
the value came from: reshape back, transpose by the inverse permutation, scatter into the indexed
places, split the concatenation.

Axes count from the end when negative (-1 is the last), as in NumPy and PyTorch; an axis out of
range raises ``AxisError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ..backend import device_of, get_array_module, scatter_add, to_device
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor
from .dispatch import fast_path
from .layout import channels_adjacent, nchw_view


class AxisError(IndexError, ValueError):
    """An axis out of range: an IndexError, as PyTorch's "Dimension out of range" (and NumPy's
    AxisError), and a ValueError, as minidl's other argument errors."""


def normalize_axis(axis: Any, ndim: int, op: str, name: str = "axis") -> int:
    """``axis`` as an index in [0, ndim), or a clear error naming the op and the argument."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise TypeError(f"{op}: {name} must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise AxisError(
            f"{op}: {name}={axis} is out of range for a {ndim}-D tensor (expected an axis in "
            f"[{-ndim}, {ndim - 1}])"
        )
    return int(axis) % ndim


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
        axes = tuple(normalize_axis(a, x.ndim, "transpose", "axes") for a in axes)
        if sorted(axes) != list(range(x.ndim)):
            raise ValueError(
                f"transpose: axes must permute the {x.ndim} axes, got {tuple(self.axes or ())}"
            )
        self.inverse = tuple(int(i) for i in np.argsort(axes))
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
        axis = normalize_axis(self.axis, first.ndim, "concat")
        for i, x in enumerate(xs):
            if x.ndim != first.ndim or any(
                a != b for d, (a, b) in enumerate(zip(x.shape, first.shape)) if d != axis
            ):
                raise ValueError(
                    f"concat: tensors must match in every axis but axis={self.axis}; tensor 0 "
                    f"has shape {first.shape}, tensor {i} has shape {x.shape}"
                )
        self.axis = axis
        self.bounds = _bounds([x.shape[axis] for x in xs])
        return _join(xs, axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        return tuple(xp.split(gy, self.bounds, axis=self.axis))


class Split(Function):
    """(y_1, ..., y_k) = consecutive slices of x along ``axis`` (views);  dx = the gys joined.

    The adjoint of concat: forward and backward swap roles.
    """

    def __init__(self, sections: tuple[int, ...], axis: int):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        axis = normalize_axis(self.axis, x.ndim, "split")
        if sum(self.sections) != x.shape[axis] or min(self.sections) < 1:
            raise ValueError(
                f"split: sections must be positive and add up to x.shape[{self.axis}] = "
                f"{x.shape[axis]}, got {list(self.sections)}"
            )
        self.axis = axis
        return tuple(get_array_module(x).split(x, _bounds(self.sections), axis=axis))

    def backward(self, *gys):
        return _join(gys, self.axis)


def _bounds(sizes):
    """Where consecutive pieces of these sizes end, but the last: split points, as Python ints."""
    return [int(b) for b in np.cumsum(sizes)[:-1]]


def _join(xs, axis):
    """The arrays ``xs`` concatenated along ``axis``; on channels, channels-last when all of them
    keep their channels adjacent (channels-last, or a channel slice of a channels-last buffer:
    split's gradients are often one of each)."""
    xp = get_array_module(xs[0])
    if axis == 1 and xs[0].ndim == 4 and all(map(channels_adjacent, xs)):
        return _concat_channels_last(xp, xs)
    return xp.concatenate(xs, axis=axis)


def _concat_channels_last(xp, xs):
    """Channels-last inputs joined on channels into a channels-last output (np.concatenate would
    return NCHW order, a transposing copy that every consumer would then undo)."""
    dtype = xp.result_type(*xs)  # promoted, as np.concatenate does
    whole, slices = channel_slots(xs[0], [x.shape[1] for x in xs], dtype)
    _copy_into(xp, list(zip(xs, slices)))
    return whole


def _copy_into(xp, pairs) -> None:
    """``dst[...] = src`` for each (src, dst) pair of N x C x H x W arrays, walked in the
    channels-last order of the destinations; on NumPy split over the batch on the thread pool."""
    if not pairs:
        return
    copy = fast_path(pairs[0][1], "channels")  # NumPy: each pixel's channels moved as one item

    def work(lo, hi):
        for src, dst in pairs:
            d, s = dst[lo:hi].transpose(0, 2, 3, 1), src[lo:hi].transpose(0, 2, 3, 1)
            if copy:
                copy.copy_channels(d, s)
            else:
                d[...] = s

    N, size = pairs[0][1].shape[0], sum(dst.size for _, dst in pairs)
    fast = fast_path(pairs[0][1], "parallel")  # NumPy: the copy split over the batch
    if fast:
        fast.parallel_batches(xp, N, work, size)
    else:
        work(0, N)


def channel_slots(like, sizes: Sequence[int], dtype: Any = None) -> tuple[Any, list[Any]]:
    """An empty N x sum(sizes) x H x W array (channels last in memory) of ``like``'s device and
    dtype (or ``dtype``; ``like`` is N x C x H x W), and its channel slices of ``sizes``, side by
    side.

    An op that writes its output into a slice (``batch_norm_relu(..., out=slice)``) has put it in
    its place in the concatenation already: ``concat_slots`` then copies nothing for it."""
    xp = get_array_module(like)
    N, _, H, W = like.shape
    whole = nchw_view(xp.empty((N, H, W, int(sum(sizes))), like.dtype if dtype is None else dtype))
    return whole, list(xp.split(whole, _bounds(sizes), axis=1))


class ConcatSlots(Concat):
    """Concat on channels into a buffer from ``channel_slots``: an input that already is its
    slice (the same array object: an op wrote its output there) is not copied, the others are.
    Backward as Concat's: the slices of gy."""

    def __init__(self, whole, slices):
        super().__init__(1)
        self.whole, self.slices = whole, slices

    def forward(self, *xs):
        if len(xs) != len(self.slices) or any(
            tuple(x.shape) != tuple(s.shape) for x, s in zip(xs, self.slices)
        ):
            raise ValueError(
                f"concat_slots: tensors must have the slices' shapes "
                f"{[tuple(s.shape) for s in self.slices]}, got {[tuple(x.shape) for x in xs]}"
            )
        self.bounds = _bounds([x.shape[1] for x in xs])
        _copy_into(get_array_module(xs[0]), [(x, s) for x, s in zip(xs, self.slices) if x is not s])
        whole, self.whole, self.slices = self.whole, None, None  # the graph keeps only the output
        return whole


def _ints(args: tuple[int | Sequence[int], ...]) -> Sequence[int]:
    """The ints of ``f(x, 2, 3)`` or ``f(x, (2, 3))``: a shape or axes, as PyTorch takes them."""
    if len(args) == 1 and isinstance(args[0], tuple | list):
        return args[0]
    return cast("tuple[int, ...]", args)  # several ints (a sequence among them fails below)


def reshape(x: Tensor, *shape: int | Sequence[int]) -> Tensor:
    return Reshape(tuple(int(s) for s in _ints(shape)))(x)


def transpose(x: Tensor, *axes: int | Sequence[int]) -> Tensor:
    return Transpose(tuple(_ints(axes)) or None)(x)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """``torch.flatten``: merge the axes ``start_dim`` to ``end_dim`` (both included) into one.

    (N, C, H, W) -> (N*C*H*W,) by default, -> (N, C*H*W) with start_dim=1; a 0-D tensor becomes
    1-D, as in PyTorch.
    """
    shape, ndim = x.shape, max(len(x.shape), 1)
    start = normalize_axis(start_dim, ndim, "flatten", "start_dim")
    end = normalize_axis(end_dim, ndim, "flatten", "end_dim")
    if start > end:
        raise ValueError(
            f"flatten: start_dim={start_dim} must not come after end_dim={end_dim} for an input "
            f"of shape {tuple(shape)}"
        )
    merged = int(np.prod(shape[start : end + 1]))
    return reshape(x, *shape[:start], merged, *shape[end + 1 :])


def getitem(x: Tensor, index: Any) -> Tensor:
    """``x[index]``: slices, ints, and index arrays (NumPy or CuPy arrays or Tensors, moved to
    x's device first, as PyTorch accepts a CPU index for a CUDA tensor)."""
    device = device_of(x.data if isinstance(x, Tensor) else x)
    if isinstance(index, tuple):
        return GetItem(tuple(_index_on(i, device) for i in index))(x)
    return GetItem(_index_on(index, device))(x)


def _index_on(index: Any, device: str) -> Any:
    if isinstance(index, Tensor):
        index = index.data
    return to_device(index, device) if getattr(index, "ndim", 0) > 0 else index


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (``torch.cat``)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: tensors must be a non-empty sequence, got an empty one")
    return Concat(axis)(*tensors)


def concat_slots(tensors: Sequence[Tensor], slots: tuple[Any, list[Any]]) -> Tensor:
    """``concat(tensors, axis=1)`` into ``slots = channel_slots(...)``: the tensors whose data
    already are their slices are not copied. A fused path's tool (``minidl.nn._fused``); the
    result shares memory with those tensors, so it must not be changed in place."""
    return ConcatSlots(*slots)(*tensors)


def split(x: Tensor, sections: Sequence[int], axis: int = 0) -> tuple[Tensor, ...]:
    """Consecutive slices of ``x`` along ``axis``, of the sizes in ``sections`` (``torch.split``
    with a list of sizes); a tuple of views.

    Unlike ``torch.split``, a single int (a chunk size) is not accepted: pass the list of sizes.
    """
    if isinstance(sections, int | np.integer) or not all(
        isinstance(n, int | np.integer) and not isinstance(n, bool) for n in sections
    ):
        raise TypeError(
            f"split: sections must be a list of ints, the size of each piece along axis {axis} "
            f"(e.g. [2, 3]), got {sections!r}"
        )
    return Split(tuple(int(n) for n in sections), axis)(x)


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

    yield GradCase(
        "concat_slots, all copied",
        lambda a, b: concat_slots([a, b], channel_slots(a.data, [2, 3])),
        [rng.standard_normal((2, 2, 3, 2)), rng.standard_normal((2, 3, 3, 2))],
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
