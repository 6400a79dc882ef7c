"""Activations: relu sigmoid tanh softmax log_softmax.

Each saves what its derivative needs, and usually that is the output itself:
sigmoid' = y (1 - y), tanh' = 1 - y^2, and softmax's Jacobian is diag(y) - y y^T.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck, tie_free
from ..tensor import Tensor
from .shape import normalize_axis


class ReLU(Function):
    """y = max(x, 0);  dx = gy where x > 0, else 0."""

    def forward(self, x):
        y = get_array_module(x).maximum(x, 0)
        self.y = y
        return y

    def backward(self, gy):
        return gy * (self.y > 0)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x), computed as 0.5 tanh(x/2) + 0.5 (no overflow);  dx = gy y (1 - y)."""

    def forward(self, x):
        xp = get_array_module(x)
        self.y = xp.tanh(x * 0.5) * 0.5 + 0.5
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Tanh(Function):
    """y = tanh x;  dx = gy (1 - y^2)."""

    def forward(self, x):
        self.y = get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Softmax(Function):
    """y_i = e^(x_i - max x) / sum_j e^(x_j - max x) along ``axis``.

    dx = y * (gy - sum(gy * y)): the Jacobian-vector product of diag(y) - y y^T without building it.
    """

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        self.axis = normalize_axis(self.axis, x.ndim, "softmax")
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis`` (max subtracted first, so no overflow).

    dx = gy - softmax(x) * sum(gy).
    """

    def __init__(self, axis: int = -1):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        self.axis = normalize_axis(self.axis, x.ndim, "log_softmax")
        shifted = x - x.max(axis=self.axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def relu(x: Tensor) -> Tensor:
    return ReLU()(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid()(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh()(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax(axis)(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax(axis)(x)


@register_gradcheck("relu")
def _relu_cases(rng):
    yield GradCase("tie-free 3x4", relu, [tie_free(rng, (3, 4))])
    yield GradCase("large (directional)", relu, [tie_free(rng, (4, 8, 8))])


@register_gradcheck("sigmoid")
def _sigmoid_cases(rng):
    yield GradCase("3x4", sigmoid, [rng.standard_normal((3, 4)) * 3])


@register_gradcheck("tanh")
def _tanh_cases(rng):
    yield GradCase("3x4", tanh, [rng.standard_normal((3, 4))])


@register_gradcheck("softmax")
def _softmax_cases(rng):
    yield GradCase("axis=-1", softmax, [rng.standard_normal((3, 5))])
    yield GradCase("axis=1 of 3-D", lambda x: softmax(x, axis=1), [rng.standard_normal((2, 4, 3))])


@register_gradcheck("log_softmax")
def _log_softmax_cases(rng):
    yield GradCase("axis=-1", log_softmax, [rng.standard_normal((3, 5))])
    yield GradCase("axis=0", lambda x: log_softmax(x, axis=0), [rng.standard_normal((4, 3))])
