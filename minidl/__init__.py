"""minidl: a deep-learning framework written by hand in NumPy, with CuPy as the GPU backend.

>>> import minidl as md
>>> x = md.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4.], dtype=float32)
"""

from . import backend, data, functional, nn, ops, optim
from . import functional as F
from .backend import is_gpu_available
from .function import Function, is_grad_enabled, no_grad, set_grad_enabled
from .ops.dispatch import textbook
from .ops.shape import concat, split
from .serialization import load, save
from .tensor import Tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "F",
    "Function",
    "Tensor",
    "backend",
    "concat",
    "split",
    "data",
    "functional",
    "is_gpu_available",
    "is_grad_enabled",
    "load",
    "nn",
    "no_grad",
    "ops",
    "optim",
    "save",
    "set_grad_enabled",
    "tensor",
    "textbook",
]
