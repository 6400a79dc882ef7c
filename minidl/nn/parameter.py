"""Parameter: a Tensor that a Module registers as learnable."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor with ``requires_grad=True`` that ``Module.__setattr__`` registers.

    ``Parameter(array)`` or ``Parameter(tensor)`` (shares the tensor's data).
    """

    def __init__(self, data: Any, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
