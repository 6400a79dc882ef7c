"""Activation layers."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module


class ReLU(Module):
    """max(x, 0), elementwise, any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)
