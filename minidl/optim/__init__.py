"""``minidl.optim``: optimizers and learning-rate schedules (PyTorch's torch.optim)."""

from . import lr_scheduler, swa_utils
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler", "swa_utils"]
