"""Fully connected layer and Flatten."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter


def check_size(value: Any, name: str, layer: str, minimum: int = 1) -> int:
    """A layer's size argument, an int >= ``minimum``, or a clear error naming it.

    Stricter than PyTorch, which builds zero-sized layers (nn.Linear(0, 3), nn.Conv2d(3, 3, 0))
    and fails, or silently returns empty or bias-only outputs, only later.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value}")
    return int(value)


class Linear(Module):
    """y = x @ W^T + b: x (N, *, in_features) -> y (N, *, out_features).

    Parameters: ``weight`` (out_features, in_features), ``bias`` (out_features,) or None.
    Default initialisation (PyTorch's): weight ``kaiming_uniform_(a=sqrt(5))``, i.e.
    U(-1/sqrt(in_features), 1/sqrt(in_features)); bias U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = check_size(in_features, "in_features", "Linear")
        self.out_features = check_size(out_features, "out_features", "Linear")
        self.weight = Parameter(np.empty((out_features, in_features), np.float32))
        self.bias = Parameter(np.empty(out_features, np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """Merge axes ``start_dim`` .. ``end_dim``: (N, C, H, W) -> (N, C*H*W) by default (start_dim=1
    keeps the batch axis, as PyTorch's nn.Flatten; F.flatten's default start_dim is 0)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
