"""Elementwise arithmetic: add sub mul div neg pow exp log (and cast).

Binary ops broadcast like NumPy. Broadcasting copies an input along new or size-1 axes, so in
backward each copy's gradient must be summed back: ``sum_to(gy, x.shape)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor


def sum_to(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` down to ``shape``: the backward of broadcasting ``shape`` up to ``g.shape``.

    Leading axes that broadcasting added are summed away; axes where ``shape`` has size 1 are
    summed with keepdims.  Example: g (2, 3, 4) -> shape (3, 1) sums axis 0, then axis 2.
    """
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class Add(Function):
    """y = a + b;  da = gy, db = gy (summed back over broadcast axes)."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    """y = a - b;  da = gy, db = -gy."""

    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, gy):
        gb = sum_to(-gy, self.shapes[1]) if self.needs_input_grad[1] else None
        return sum_to(gy, self.shapes[0]), gb


class Mul(Function):
    """y = a * b;  da = gy * b, db = gy * a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = sum_to(gy * self.b, self.a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(gy * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    """y = a / b;  da = gy / b, db = -gy * a / b^2 = -gy * y / b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        a, b = self.a, self.b
        ga = sum_to(gy / b, a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    """y = -x;  dx = -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """y = x ** c for a constant c;  dx = gy * c * x^(c-1)."""

    def __init__(self, c: float):
        self.c = c

    def forward(self, x):
        self.x = x
        return x**self.c

    def backward(self, gy):
        return gy * (self.c * self.x ** (self.c - 1))


class Exp(Function):
    """y = e^x;  dx = gy * y (the output is its own derivative)."""

    def forward(self, x):
        self.y = get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    """y = ln x;  dx = gy / x."""

    def forward(self, x):
        self.x = x
        return get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Cast(Function):
    """y = x as another dtype;  dx = gy cast back."""

    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.in_dtype)


def add(a: Tensor | float, b: Tensor | float) -> Tensor:
    return Add()(a, b)


def sub(a: Tensor | float, b: Tensor | float) -> Tensor:
    return Sub()(a, b)


def mul(a: Tensor | float, b: Tensor | float) -> Tensor:
    return Mul()(a, b)


def div(a: Tensor | float, b: Tensor | float) -> Tensor:
    return Div()(a, b)


def neg(x: Tensor) -> Tensor:
    return Neg()(x)


def pow(x: Tensor, c: float) -> Tensor:
    scalar = np.isscalar(c)  # (not tested in the `if`: NumPy's TypeGuard would retype c)
    if not scalar:
        raise TypeError(f"pow: exponent must be a Python number, got {type(c).__name__}")
    return Pow(c)(x)


def exp(x: Tensor) -> Tensor:
    return Exp()(x)


def log(x: Tensor) -> Tensor:
    return Log()(x)


def cast(x: Tensor, dtype: Any) -> Tensor:
    return Cast(dtype)(x)


# ------------------------------------------------------------------ gradient checks
def _binary_cases(rng, fn, positive_b=False):
    def b(shape):
        v = rng.standard_normal(shape)
        return np.abs(v) + 0.5 if positive_b else v

    yield GradCase("same shape", fn, [rng.standard_normal((3, 4)), b((3, 4))])
    yield GradCase("broadcast row", fn, [rng.standard_normal((2, 3, 4)), b((4,))])
    yield GradCase("broadcast keepdim", fn, [rng.standard_normal((3, 1)), b((2, 1, 5))])
    yield GradCase("scalar operand", fn, [rng.standard_normal((3, 4)), b(())])
    yield GradCase("large (directional)", fn, [rng.standard_normal((8, 16, 9)), b((16, 1))])


register_gradcheck("add")(lambda rng: _binary_cases(rng, lambda a, b: a + b))
register_gradcheck("sub")(lambda rng: _binary_cases(rng, lambda a, b: a - b))
register_gradcheck("mul")(lambda rng: _binary_cases(rng, lambda a, b: a * b))
register_gradcheck("div")(lambda rng: _binary_cases(rng, lambda a, b: a / b, positive_b=True))


@register_gradcheck("neg")
def _neg_cases(rng):
    yield GradCase("3x4", lambda x: -x, [rng.standard_normal((3, 4))])


@register_gradcheck("pow")
def _pow_cases(rng):
    x = np.abs(rng.standard_normal((3, 4))) + 0.5
    yield GradCase("x**3", lambda t: t**3, [x])
    yield GradCase("x**-0.5", lambda t: t**-0.5, [x])


@register_gradcheck("exp")
def _exp_cases(rng):
    yield GradCase("3x4", exp, [rng.standard_normal((3, 4))])


@register_gradcheck("log")
def _log_cases(rng):
    yield GradCase("3x4", log, [np.abs(rng.standard_normal((3, 4))) + 0.5])
