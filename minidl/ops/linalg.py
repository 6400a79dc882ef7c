"""Matrix products: matmul (batched, broadcasting the batch axes) and linear.

For y = a @ b on the last two axes: da = gy @ b^T and db = a^T @ gy; batch axes that were
broadcast are summed back with ``sum_to``.
"""

from __future__ import annotations

from ..function import Function
from ..registry import GradCase, register_gradcheck
from .arithmetic import sum_to


def _swap(m):
    return m.swapaxes(-1, -2)


class MatMul(Function):
    """y = a @ b, a (..., n, k), b (..., k, m) -> y (..., n, m)."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(
                f"matmul: both operands need at least 2 dimensions, got shapes {a.shape} and "
                f"{b.shape}"
            )
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions must match, got a {a.shape} (k={a.shape[-1]}) and "
                f"b {b.shape} (k={b.shape[-2]})"
            )
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        ga = sum_to(gy @ _swap(self.b), self.a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(_swap(self.a) @ gy, self.b.shape) if self.needs_input_grad[1] else None
        return ga, gb


class Linear(Function):
    """y = x @ W^T + b, x (..., in), W (out, in), b (out,) -> y (..., out) (PyTorch's layout).

    dx = gy @ W,  dW = gy^T @ x (summed over all leading axes),  db = gy summed over leading axes.
    """

    def forward(self, x, w, b=None):
        if x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"linear: input features must equal weight.shape[1]; got input {x.shape} and "
                f"weight {w.shape}"
            )
        self.x, self.w = x, w
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x2 = self.x.reshape(-1, self.x.shape[-1])
        g2 = gy.reshape(-1, gy.shape[-1])
        gx = gy @ self.w if self.needs_input_grad[0] else None
        gw = g2.T @ x2 if self.needs_input_grad[1] else None
        gb = g2.sum(axis=0) if len(self.needs_input_grad) > 2 and self.needs_input_grad[2] else None
        return gx, gw, gb


def matmul(a, b):
    return MatMul()(a, b)


def linear(x, weight, bias=None):
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


@register_gradcheck("matmul")
def _matmul_cases(rng):
    yield GradCase("2-D", matmul, [rng.standard_normal((3, 4)), rng.standard_normal((4, 5))])
    yield GradCase(
        "batched, broadcast b",
        matmul,
        [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 2))],
    )
    yield GradCase(
        "batched both", matmul, [rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((3, 4, 2))]
    )


@register_gradcheck("linear")
def _linear_cases(rng):
    yield GradCase(
        "with bias",
        linear,
        [rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)],
    )
    yield GradCase(
        "no bias, 3-D input", linear, [rng.standard_normal((2, 5, 4)), rng.standard_normal((3, 4))]
    )
