"""``minidl.nn``: modules, parameters, layers and weight initialisation (PyTorch's torch.nn).

Default initialisation, as PyTorch (override with ``minidl.nn.init`` after construction):

- Linear, Conv2d: weight ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  with fan_in = in_features or in_channels * kh * kw; bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- BatchNorm2d: weight ones, bias zeros; running_mean zeros, running_var ones.
- LocalResponseNorm, pooling, Dropout, ReLU, Flatten: no parameters.

Parameters are float32; ``init.manual_seed(s)`` makes construction reproducible.
"""

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
