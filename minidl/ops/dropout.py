"""Dropout (Srivastava et al. 2014), the *inverted* variant used by PyTorch.

In training each element is kept with probability 1 - p and the kept ones are scaled by 1/(1 - p),
so the expected output equals the input and evaluation needs no rescaling:

    mask = (u >= p) / (1 - p),  u ~ U[0, 1)      y = x * mask      dx = gy * mask

In evaluation (training=False) dropout is the identity. The random numbers come from the array
module's global generator (``numpy.random.seed`` / ``cupy.random.seed`` make runs repeatable).
"""

from __future__ import annotations

from ..backend import get_array_module, to_device
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor


class Dropout(Function):
    """y = x * mask, mask = keep / (1 - p) drawn once in forward; dx = gy * mask."""

    def __init__(self, p=0.5, mask=None):
        self.p, self.mask = p, mask

    def forward(self, x):
        xp = get_array_module(x)
        if self.mask is None:
            keep = xp.random.random(x.shape) >= self.p
            self.mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p))
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """PyTorch's F.dropout (inverted): zero each element with probability p, scale the rest by
    1/(1-p); the identity when not ``training`` or p == 0."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be a probability in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    return Dropout(p)(x)


@register_gradcheck("dropout")
def _dropout_cases(rng):
    mask = (rng.random((3, 4, 2)) >= 0.3) / 0.7  # a fixed mask: the check re-runs forward

    def fixed(x):
        return Dropout(0.3, to_device(mask, x.device))(x)

    yield GradCase("p=0.3, fixed mask", fixed, [rng.standard_normal((3, 4, 2))])
