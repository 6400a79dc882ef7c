"""Tensor: an array, the gradient it receives, and the Function that created it.

``backward()`` visits the graph's functions youngest generation first, so that every gradient
flowing into a tensor is summed before that tensor's creator passes it further down. Gradients of
intermediate tensors are dropped once used (keep one with ``retain_grad()``); gradients of leaves
(tensors made by the user with ``requires_grad=True``) accumulate across calls, as in PyTorch.
"""

from __future__ import annotations

import builtins
import heapq
from typing import Any

import numpy as np

from . import backend, function
from .backend import get_array_module


class Tensor:
    """A NumPy or CuPy array that records how it was computed.

    Attributes: ``data`` (the array), ``grad`` (a Tensor or None), ``requires_grad``,
    ``creator`` (the Function that made it, None for leaves), ``generation`` (depth in the graph).
    """

    __array_priority__ = 100  # NumPy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            raise TypeError("data must be an array, got a Tensor; use tensor.detach() instead")
        xp = get_array_module(data)
        if not isinstance(data, xp.ndarray):
            data = np.asarray(data)
        if requires_grad and not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {data.dtype}")
        self.data = data
        self.grad: Tensor | None = None
        self.requires_grad = bool(requires_grad)
        self.creator: function.Function | None = None
        self.generation = 0
        self.name = name
        self._retain_grad = False
        self._flat: tuple[Any, Any] | None = None  # (data, grad) views an optimizer's buffers

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.creator is not None:
            extra += f", grad_fn={self.creator.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """A host NumPy array (a copy when the tensor lives on the GPU)."""
        return backend.to_numpy(self.data)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def to(self, device: str) -> Tensor:
        """This tensor on ``device`` ("cpu" or "cuda"); itself when already there."""
        if backend.check_device(device) == self.device:
            return self
        out = Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)
        out.name = self.name
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def astype(self, dtype: Any) -> Tensor:
        from .ops.arithmetic import cast

        return cast(self, dtype)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory, requires no grad)."""
        return Tensor(self.data)

    def requires_grad_(self, mode: bool = True) -> Tensor:
        if mode and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(mode)
        return self

    def retain_grad(self) -> None:
        """Keep this (intermediate) tensor's gradient after backward, as PyTorch's retain_grad."""
        self._retain_grad = True

    def zero_grad(self) -> None:
        self.grad = None

    # ----------------------------------------------------------------- autograd
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf), weighted by ``grad``, into every leaf's ``.grad``.

        ``grad`` is the upstream gradient (same shape as self); it may be omitted for a scalar,
        where it is 1.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        xp = get_array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"grad can be implicitly created only for a scalar output, got shape "
                    f"{self.shape}; pass grad= with that shape"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(
                    f"grad must have the output's shape {self.shape}, got {grad.shape}"
                )
        _run_backward(self, grad)

    # ----------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Tensor:
        from .ops.arithmetic import add

        return add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        from .ops.arithmetic import add

        return add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        from .ops.arithmetic import sub

        return sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        from .ops.arithmetic import sub

        return sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        from .ops.arithmetic import mul

        return mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        from .ops.arithmetic import mul

        return mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        from .ops.arithmetic import div

        return div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        from .ops.arithmetic import div

        return div(other, self)

    def __neg__(self) -> Tensor:
        from .ops.arithmetic import neg

        return neg(self)

    def __pow__(self, exponent: builtins.float) -> Tensor:  # (``float`` is a method here)
        from .ops.arithmetic import pow

        return pow(self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        from .ops.linalg import matmul

        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        from .ops.linalg import matmul

        return matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        from .ops.shape import getitem

        return getitem(self, index)

    # ----------------------------------------------------------------- methods
    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from .ops.reduction import sum

        return sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from .ops.reduction import mean

        return mean(self, axis, keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        from .ops.reduction import max

        return max(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        from .ops.shape import reshape

        return reshape(self, *shape)

    def transpose(self, *axes: Any) -> Tensor:
        from .ops.shape import transpose

        return transpose(self, *axes)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        from .ops.shape import flatten

        return flatten(self, start_dim, end_dim)

    def exp(self) -> Tensor:
        from .ops.arithmetic import exp

        return exp(self)

    def log(self) -> Tensor:
        from .ops.arithmetic import log

        return log(self)

    def relu(self) -> Tensor:
        from .ops.activation import relu

        return relu(self)

    def argmax(self, axis: int | None = None) -> Tensor:
        """Indices of the maxima (not differentiable)."""
        return Tensor(self.data.argmax(axis=axis))


def _run_backward(root: Tensor, grad: Any) -> None:
    """Reverse-topological sweep: pop the youngest function, pass its output grads down."""
    grads: dict[int, Any] = {id(root): grad}
    if root.creator is None:
        _accumulate_leaf(root, grad)
        return
    heap: list[tuple[int, int, Any]] = []
    seen: set[int] = set()

    def push(fn: Any) -> None:
        # ties in generation are broken by discovery order (not id()), so gradients are summed
        # in the same order on every run and training is reproducible bit for bit
        if id(fn) not in seen:
            seen.add(id(fn))
            heapq.heappush(heap, (-fn.generation, len(seen), fn))

    if root._retain_grad:
        _accumulate_leaf(root, grad)
    push(root.creator)
    while heap:
        _, _, fn = heapq.heappop(heap)
        gys = []
        for ref, (shape, dtype) in zip(fn.outputs, fn.output_meta):
            out = ref()
            gy = grads.pop(id(out), None) if out is not None else None
            if gy is None:
                gy = get_array_module(fn.inputs[0].data).zeros(shape, dtype)
            elif out._retain_grad and out is not root:
                _accumulate_leaf(out, gy)
            gys.append(gy)
        with function.timed(fn.name, "backward"):
            gxs = fn.backward(*gys)
        gxs = gxs if isinstance(gxs, tuple) else (gxs,)
        for x, gx in zip(fn.inputs, gxs):
            if not x.requires_grad or gx is None:
                continue
            if tuple(gx.shape) != x.shape:
                raise RuntimeError(
                    f"{fn.name}.backward returned a gradient of shape {tuple(gx.shape)} for an "
                    f"input of shape {x.shape}"
                )
            if x.creator is None:
                _accumulate_leaf(x, gx)
            else:
                key = id(x)
                grads[key] = gx if key not in grads else grads[key] + gx
                push(x.creator)


def _accumulate_leaf(x: Tensor, gx: Any) -> None:
    """Add gx into x.grad. The first gradient is stored as a copy: a backward may hand the same
    array to several inputs (a + b passes gy to both) or a view of the caller's gradient, and
    x.grad is later added to in place."""
    if x.grad is None:
        flat = x._flat  # an optimizer keeps x's gradient in its flat buffer (optim/_flat.py)
        if flat is not None and flat[0] is x.data:
            flat[1][...] = gx
            x.grad = Tensor(flat[1])
        else:
            x.grad = Tensor(gx.astype(x.dtype, copy=True))
    else:
        x.grad.data += gx


def as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """Wrap arrays and Python numbers; numbers take the dtype and device of ``like``."""
    if isinstance(x, Tensor):
        return x
    if like is not None and np.isscalar(x):
        xp = get_array_module(like.data)
        dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else None
        return Tensor(xp.full((), x, dtype=dtype))  # made on the device: no host transfer
    return Tensor(x)


def tensor(
    data: Any, requires_grad: bool = False, dtype: Any = None, device: str = "cpu"
) -> Tensor:
    """Make a tensor (a copy of ``data``): ``md.tensor([[1., 2.]], requires_grad=True)``.

    Without ``dtype``, as ``torch.tensor``: an array (NumPy, CuPy, a Tensor's) or a NumPy scalar
    keeps its dtype, so float64 data stays float64; Python floats (and lists of them) become
    float32, the library's default; Python ints become int64 and bools bool.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None:
        dtype = data.dtype if hasattr(data, "dtype") else _python_dtype(data)
    if backend.device_of(data) != backend.check_device(device):
        data = backend.to_device(data, device)
    xp = backend.module_for(device)
    return Tensor(xp.array(data, dtype=dtype), requires_grad=requires_grad)


def _python_dtype(data: Any) -> np.dtype:
    """torch.tensor's default dtype for Python numbers and (nested) lists of them."""
    inferred = np.asarray(data).dtype
    defaults: dict[str, np.dtype] = {
        "f": np.dtype(np.float32),
        "i": np.dtype(np.int64),
        "c": np.dtype(np.complex64),
    }
    return defaults.get(inferred.kind, inferred)
