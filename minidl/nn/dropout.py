"""Dropout layer."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    rest by 1 / (1 - p); in evaluation, the identity. Any shape."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:  # as F.dropout: p = 1 would scale by 1 / 0
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
