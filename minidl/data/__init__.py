"""``minidl.data``: the CIFAR-10 data set, a DataLoader and batch-level transforms."""

from . import transforms
from .cifar10 import CIFAR10
from .loader import DataLoader
from .transforms import (
    AlternatingHorizontalFlip,
    Compose,
    Cutout,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    ToFloat,
    cifar10_test_transform,
    cifar10_train_transform,
)

__all__ = [
    "AlternatingHorizontalFlip",
    "CIFAR10",
    "Compose",
    "Cutout",
    "DataLoader",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ToFloat",
    "cifar10_test_transform",
    "cifar10_train_transform",
    "transforms",
]
