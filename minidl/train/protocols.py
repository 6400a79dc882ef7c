"""What ``fit`` (``run.py``) asks of the objects it is handed, as structural types.

A ``typing.Protocol`` names the members a function uses; any object that has them fits, with no
base class to inherit (``minidl.nn.Module``, ``minidl.optim.SGD``, ``minidl.optim.OneCycleLR``
and ``minidl.data.DataLoader`` do, and so would a stand-in written for a test). They are read by
a type checker (``mypy``) only: nothing here runs a check at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..tensor import Tensor


class Model(Protocol):
    """A network: called on a batch, it returns logits (or, in training, a tuple whose first
    entry is the logits: GoogLeNet's auxiliary heads); its weights go in and out of
    checkpoints."""

    def __call__(self, x: Tensor) -> Any: ...

    def train(self, mode: bool = True) -> object: ...

    def eval(self) -> object: ...

    def zero_grad(self) -> None: ...

    def state_dict(self) -> Mapping[str, Tensor]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> object: ...


class Averaged(Model, Protocol):
    """A running average of a model's weights (``minidl.optim.swa_utils.AveragedModel``)."""

    def update_parameters(self, model: Any) -> None: ...


class Optimizer(Protocol):
    """Updates the parameters after each backward pass (``train_step``); ``fit`` reads the
    learning rate of the first parameter group, and checkpoints its state."""

    @property
    def param_groups(self) -> Sequence[Mapping[str, Any]]: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class Schedule(Protocol):
    """A learning-rate schedule, stepped after every batch; ``last_epoch`` counts its steps
    (PyTorch's name) and a time budget places it with ``set_step``."""

    @property
    def last_epoch(self) -> int: ...

    def step(self) -> None: ...

    def set_step(self, step: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class Batches(Protocol):
    """Batches ``(x, y)`` to evaluate on: a test loader (``len``: batches per pass)."""

    @property
    def batch_size(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __len__(self) -> int: ...


class Loader(Batches, Protocol):
    """A training loader: batches drawn with its own generator ``rng``, whose state a checkpoint
    keeps so that a resumed run sees the same batches."""

    @property
    def rng(self) -> np.random.Generator: ...
