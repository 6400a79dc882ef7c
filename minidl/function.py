"""Function: one differentiable step of a computation, and the graph it records.

Calling a Function unwraps its Tensor inputs to raw arrays, runs ``forward`` on them and wraps the
results. When gradients are enabled and some input requires one, it also remembers its inputs,
(weak references to) its outputs and a *generation* one above its youngest input, so that
``Tensor.backward`` can visit functions in reverse topological order.

Subclasses implement ``forward(*arrays) -> array | tuple`` and
``backward(*grad_outputs) -> array | tuple`` on raw NumPy/CuPy arrays. ``self.needs_input_grad``
tells forward and backward which input gradients are wanted (backward returns ``None`` for the
others), so an op can skip work nobody asked for, e.g. the input gradient of a network's first
convolution. Under ``no_grad()`` it is all False, so forward need not check the grad mode before
saving what backward would need.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .backend import device_of

_grad_enabled = True

# Set by minidl.profiler.profile(): a callable (op, phase) -> context manager timing that phase.
op_timer: Callable[[str, str], contextlib.AbstractContextManager[Any]] | None = None


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool) -> Iterator[None]:
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, bool(mode)
    try:
        yield
    finally:
        _grad_enabled = previous


def timed(op: str, phase: str) -> contextlib.AbstractContextManager[Any]:
    """The profiler's timer for one phase ("forward" or "backward") of ``op``, when one is on."""
    return contextlib.nullcontext() if op_timer is None else op_timer(op, phase)


def no_grad() -> contextlib.AbstractContextManager[None]:
    """Context manager: ops inside record no graph (inference, evaluation, optimizer steps)."""
    return set_grad_enabled(False)


class Function:
    """Base class of every differentiable op; see the module docstring."""

    generation: int = 0
    inputs: tuple = ()
    outputs: tuple = ()
    needs_input_grad: tuple[bool, ...] = ()

    def __call__(self, *inputs: Any) -> Any:
        from .tensor import Tensor, as_tensor

        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        tensors = tuple(as_tensor(x, like=like) for x in inputs)
        _check_same_device(type(self).__name__, tensors)
        self.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        record = any(self.needs_input_grad)

        with timed(self.name, "forward"):
            ys = self.forward(*(t.data for t in tensors))
        ys = ys if isinstance(ys, tuple) else (ys,)
        outputs = tuple(Tensor(y, requires_grad=record) for y in ys)
        if record:
            self.generation = max(t.generation for t in tensors)
            for out in outputs:
                out.creator = self
                out.generation = self.generation + 1
            self.inputs = tensors
            self.outputs = tuple(weakref.ref(out) for out in outputs)
            self.output_meta = tuple((y.shape, y.dtype) for y in ys)
        return outputs if len(outputs) > 1 else outputs[0]

    def forward(self, *xs: Any) -> Any:
        raise NotImplementedError

    def backward(self, *gys: Any) -> Any:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__


def _check_same_device(op: str, tensors: tuple) -> None:
    devices = {device_of(t.data) for t in tensors}
    if len(devices) > 1:
        listed = ", ".join(f"input {i} on {device_of(t.data)!r}" for i, t in enumerate(tensors))
        raise ValueError(
            f"{op}: all inputs must be on the same device, got {listed}; move them with .to(device)"
        )
