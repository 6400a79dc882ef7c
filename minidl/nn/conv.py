"""2-D convolution layer."""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from . import init
from .linear import check_size
from .module import Module
from .parameter import Parameter


def _pair(v: int | tuple[int, int], name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        v = (v, v)
    if not isinstance(v, tuple | list) or len(v) != 2:
        raise TypeError(f"Conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return check_size(v[0], name, "Conv2d", minimum), check_size(v[1], name, "Conv2d", minimum)


class Conv2d(Module):
    """Cross-correlation: x (N, in_channels, H, W) -> (N, out_channels, H', W'),
    H' = (H + 2 * padding - kernel) // stride + 1.

    Parameters: ``weight`` (out_channels, in_channels, kh, kw), ``bias`` (out_channels,) or None.
    Default initialisation (PyTorch's): weight ``kaiming_uniform_(a=sqrt(5))``, i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels * kh * kw; bias the same range.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels = check_size(in_channels, "in_channels", "Conv2d")
        self.out_channels = check_size(out_channels, "out_channels", "Conv2d")
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, np.float32))
        self.bias = Parameter(np.empty(out_channels, np.float32)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fans(self.weight.shape)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s
