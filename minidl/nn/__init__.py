"""``minidl.nn``: modules, parameters, layers and weight initialisation (PyTorch's torch.nn)."""

from . import init
from .activation import ReLU
from .containers import ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .module import IncompatibleKeys, Module
from .norm import BatchNorm2d, LocalResponseNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "IncompatibleKeys",
    "LocalResponseNorm",
    "Linear",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "init",
]
