"""The ``F`` namespace: ``import minidl.functional as F`` (PyTorch's torch.nn.functional)."""

from .ops.activation import log_softmax, relu, sigmoid, softmax, tanh
from .ops.arithmetic import exp, log
from .ops.linalg import linear, matmul
from .ops.shape import concat, flatten, reshape

__all__ = [
    "concat", "exp", "flatten", "linear", "log", "log_softmax", "matmul", "relu", "reshape",
    "sigmoid", "softmax", "tanh",
]
