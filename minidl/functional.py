"""The ``F`` namespace: ``import minidl.functional as F`` (PyTorch's torch.nn.functional)."""

from .ops.activation import log_softmax, relu, sigmoid, softmax, tanh
from .ops.arithmetic import exp, log
from .ops.conv import conv2d
from .ops.dropout import dropout
from .ops.linalg import linear, matmul
from .ops.loss import cross_entropy
from .ops.norm import batch_norm, local_response_norm
from .ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .ops.shape import concat, flatten, reshape, split

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "concat",
    "conv2d",
    "cross_entropy",
    "dropout",
    "exp",
    "flatten",
    "linear",
    "local_response_norm",
    "log",
    "log_softmax",
    "matmul",
    "max_pool2d",
    "relu",
    "reshape",
    "sigmoid",
    "softmax",
    "split",
    "tanh",
]
