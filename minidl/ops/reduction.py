"""Reductions: sum mean max, with ``axis`` (int, tuple or None) and ``keepdims``.

Backward of a reduction broadcasts the gradient back over the reduced axes; for that, the axes are
first restored as size-1 axes (``_expand``), whether or not keepdims dropped them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck, tie_free
from ..tensor import Tensor
from .shape import normalize_axis

Axes = int | tuple[int, ...] | None  # an axis, several, or all of them


def _normalize_axes(axis: Any, ndim: int, op: str) -> tuple[int, ...]:
    """``axis`` (None for all, an int or a tuple of ints) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = [
        normalize_axis(a, ndim, op) for a in (axis if isinstance(axis, tuple | list) else [axis])
    ]
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis} names an axis more than once")
    return tuple(sorted(axes))


def _expand(g: Any, in_shape: tuple[int, ...], axes: tuple[int, ...]) -> Any:
    """Reshape a reduced gradient so it broadcasts against the input: reduced axes -> size 1."""
    shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
    return g.reshape(shape)


class Sum(Function):
    """y = sum of x over ``axis``;  dx = gy broadcast back over the summed axes."""

    def __init__(self, axis: Any = None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        self.axes = _normalize_axes(self.axis, x.ndim, self.name.lower())
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.broadcast_to(_expand(gy, self.in_shape, self.axes), self.in_shape)


class Mean(Sum):
    """y = sum(x) / n over ``axis``;  dx = gy / n broadcast back."""

    def forward(self, x):
        y = super().forward(x)
        self.n = int(np.prod([x.shape[a] for a in self.axes]))
        return (y / self.n).astype(x.dtype, copy=False)

    def backward(self, gy):
        return super().backward(gy / self.n)


class Max(Function):
    """y = max of x over ``axis``;  dx = gy where x is the maximum, else 0.

    Ties share the gradient equally (this is a subgradient; PyTorch's ``amax`` does the same).
    """

    def __init__(self, axis: Any = None, keepdims: bool = False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x = x
        self.axes = _normalize_axes(self.axis, x.ndim, self.name.lower())
        self.y = x.max(axis=self.axes, keepdims=True)
        return (
            self.y
            if self.keepdims
            else self.y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])
        )

    def backward(self, gy):
        mask = self.x == self.y
        count = mask.sum(axis=self.axes, keepdims=True)
        return mask * (_expand(gy, self.x.shape, self.axes) / count)


def sum(x: Tensor, axis: Axes = None, keepdims: bool = False) -> Tensor:
    return Sum(axis, keepdims)(x)


def mean(x: Tensor, axis: Axes = None, keepdims: bool = False) -> Tensor:
    return Mean(axis, keepdims)(x)


def max(x: Tensor, axis: Axes = None, keepdims: bool = False) -> Tensor:
    return Max(axis, keepdims)(x)


def _reduction_cases(rng, fn, make):
    yield GradCase("all", lambda x: fn(x), [make((3, 4))])
    yield GradCase("axis=1", lambda x: fn(x, axis=1), [make((2, 3, 4))])
    yield GradCase("axis=(0,2) keepdims", lambda x: fn(x, (0, 2), True), [make((2, 3, 4))])
    yield GradCase("axis=-1 large", lambda x: fn(x, axis=-1), [make((6, 7, 8))])


register_gradcheck("sum")(lambda rng: _reduction_cases(rng, sum, rng.standard_normal))
register_gradcheck("mean")(lambda rng: _reduction_cases(rng, mean, rng.standard_normal))
register_gradcheck("max")(lambda rng: _reduction_cases(rng, max, lambda s: tie_free(rng, s)))
