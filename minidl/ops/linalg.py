"""Matrix products: matmul (batched, broadcasting the batch axes) and linear.

For y = a @ b on the last two axes: da = gy @ b^T and db = a^T @ gy; batch axes that were
broadcast are summed back with ``sum_to``. A 1-D operand follows NumPy's and PyTorch's rule: a
vector on the left is a row (1, k), on the right a column (k, 1), and that added axis is dropped
from the result (vector @ vector is a scalar).
"""

from __future__ import annotations

from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor
from .arithmetic import sum_to


def _swap(m):
    return m.swapaxes(-1, -2)


class MatMul(Function):
    """y = a @ b, a (..., n, k), b (..., k, m) -> y (..., n, m); a (k,) acts as (1, k) and
    b (k,) as (k, 1), with that axis dropped from y."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and "
                f"{b.shape}"
            )
        self.a_vector, self.b_vector = a.ndim == 1, b.ndim == 1
        a = a.reshape(1, -1) if self.a_vector else a  # row
        b = b.reshape(-1, 1) if self.b_vector else b  # column
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions must match, got a {a.shape} (k={a.shape[-1]}) and "
                f"b {b.shape} (k={b.shape[-2]})"
            )
        self.a, self.b = a, b
        y = a @ b
        if self.a_vector:
            y = y[..., 0, :]
        return y[..., 0] if self.b_vector else y

    def backward(self, gy):
        if self.b_vector:  # put back the axes forward dropped, in reverse order
            gy = gy[..., None]
        if self.a_vector:
            gy = gy[..., None, :]
        a, b = self.a, self.b
        ga = sum_to(gy @ _swap(b), a.shape) if self.needs_input_grad[0] else None
        gb = sum_to(_swap(a) @ gy, b.shape) if self.needs_input_grad[1] else None
        ga = ga[0] if self.a_vector and ga is not None else ga
        gb = gb[:, 0] if self.b_vector and gb is not None else gb
        return ga, gb


class Linear(Function):
    """y = x @ W^T + b, x (..., in), W (out, in), b (out,) -> y (..., out) (PyTorch's layout).

    dx = gy @ W,  dW = gy^T @ x (summed over all leading axes),  db = gy summed over leading axes.
    """

    def forward(self, x, w, b=None):
        if w.ndim != 2:
            raise ValueError(
                f"linear: weight must be 2-D (out_features, in_features), got shape {w.shape}"
            )
        if x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"linear: input features must equal weight.shape[1]; got input {x.shape} and "
                f"weight {w.shape}"
            )
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(
                f"linear: bias must have shape (out_features,) = ({w.shape[0]},) to match "
                f"weight {w.shape}, got {b.shape}"
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


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return MatMul()(a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    return Linear()(x, weight) if bias is None else Linear()(x, weight, bias)


# NumPy's and PyTorch's 1-D rules: (name, a's shape, b's shape)
MATMUL_VECTOR_CASES = [
    ("vector @ vector", (4,), (4,)),
    ("matrix @ vector", (3, 4), (4,)),
    ("vector @ matrix", (4,), (4, 3)),
    ("batched @ vector", (2, 3, 4), (4,)),
    ("vector @ batched", (4,), (2, 4, 3)),
]


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
    for name, a_shape, b_shape in MATMUL_VECTOR_CASES:
        yield GradCase(name, matmul, [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


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
