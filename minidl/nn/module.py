"""Module: the base class of layers and models (PyTorch's ``torch.nn.Module``).

Assigning a ``Parameter``, a ``Module`` or (after ``register_buffer``) a buffer Tensor to an
attribute registers it, so ``parameters()``, ``state_dict()``, ``train()``/``eval()`` and
``to(device)`` find everything by walking the tree of submodules. State-dict keys are the dotted
attribute paths, exactly as in PyTorch (``inception3a.branch2.0.conv.weight``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import numpy as np

from .. import backend
from ..backend import get_array_module
from ..tensor import Tensor
from .parameter import Parameter

_M = TypeVar("_M", bound="Module")  # the methods that return self keep the subclass's type


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not load.

    ``mismatched_keys`` holds ``(key, expected_shape, given_shape)`` triples.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]
    mismatched_keys: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    def __bool__(self) -> bool:
        return bool(self.missing_keys or self.unexpected_keys or self.mismatched_keys)

    def describe(self) -> str:
        lines = [f"  missing key: {k}" for k in self.missing_keys]
        lines += [f"  unexpected key: {k}" for k in self.unexpected_keys]
        lines += [
            f"  wrong shape for {k}: the model has {want}, the state dict has {got}"
            for k, want, got in self.mismatched_keys
        ]
        return "\n".join(lines)


class Module:
    """Base class: subclasses set attributes in ``__init__`` and define ``forward``.

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x)
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran; call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter {name!r}: expected a "
                    f"Parameter or None"
                )
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} to buffer {name!r}: expected a Tensor "
                    f"or None"
                )
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to submodule {name!r}: expected a "
                    f"Module or None"
                )
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if any(name in r for r in (self._parameters, self._buffers, self._modules)):
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a non-learnable state Tensor (BatchNorm's running statistics).

        Persistent buffers appear in ``state_dict()``; all buffers move with ``to(device)``.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"buffer {name!r} must be a Tensor or None, got {type(tensor).__name__}"
            )
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (or None, for an absent optional parameter such as a bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"parameter {name!r} must be a Parameter or None, got {type(param)}")
        self._forget(name)
        self._parameters[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a submodule under ``name`` (used by containers with names like "0")."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name!r} must be a Module or None, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    # ----------------------------------------------------------------- running
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ----------------------------------------------------------------- walking the tree
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module ("" is itself) and every descendant, once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m)
                for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, recurse: bool) -> Iterator[tuple[str, Any]]:
        """The entries of ``registry`` ("_parameters": Parameters, "_buffers": Tensors)."""
        seen: set[int] = set()
        walk = self.named_modules() if recurse else iter([("", self)])
        for prefix, module in walk:
            for name, t in getattr(module, registry).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)``; a parameter shared by two modules comes once."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse):
            yield p

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse):
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def apply(self: _M, fn: Callable[[Module], Any]) -> _M:
        """Call ``fn`` on every submodule (children first) and on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----------------------------------------------------------------- modes and devices
    def train(self: _M, mode: bool = True) -> _M:
        """Set training mode (dropout active, batch norm uses batch statistics) recursively."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self: _M) -> _M:
        """Evaluation mode (``train(False)``): dropout off, batch norm uses running statistics."""
        return self.train(False)

    def to(self: _M, device: str | None = None, dtype: Any = None) -> _M:
        """Move every parameter, gradient and buffer to ``device`` and/or cast the floating ones
        to ``dtype`` (integer buffers such as ``num_batches_tracked`` keep theirs); returns self.

        The Parameter objects stay the same (only their ``.data`` changes), so an optimizer built
        before the move still holds them.
        """
        device = None if device is None else backend.check_device(device)
        for t in list(self.parameters()) + list(self.buffers()):
            for holder in (t, t.grad):
                if holder is None:
                    continue
                if device is not None:
                    holder.data = backend.to_device(holder.data, device)
                if dtype is not None and holder.data.dtype.kind == "f":
                    holder.data = holder.data.astype(dtype)
        return self

    def float(self: _M) -> _M:
        """Floating parameters and buffers to float32 (the default)."""
        return self.to(dtype=np.float32)

    def double(self: _M) -> _M:
        """Floating parameters and buffers to float64 (for gradient checks of whole models)."""
        return self.to(dtype=np.float64)

    def cpu(self: _M) -> _M:
        return self.to("cpu")

    def cuda(self: _M) -> _M:
        return self.to("cuda")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``.grad = None``, PyTorch's default), or fill it
        with zeros in place when ``set_to_none=False``."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # ----------------------------------------------------------------- state dict
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict[str, Tensor]:
        """Parameters and persistent buffers by dotted name: each module's own parameters, then
        its buffers, then its children's entries (PyTorch's order).

        The values are detached Tensors sharing memory with the module (save them, or copy);
        ``keep_vars=True`` gives the Parameter and buffer objects themselves.
        """
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, t in self._parameters.items():
            if t is not None:
                out[prefix + name] = t if keep_vars else t.detach()
        for name, t in self._buffers.items():
            if t is not None and name not in self._non_persistent:
                out[prefix + name] = t if keep_vars else t.detach()
        for name, m in self._modules.items():
            if m is not None:
                out.update(m.state_dict(prefix=f"{prefix}{name}.", keep_vars=keep_vars))
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy values (Tensors or arrays) into the parameters and buffers, in place.

        Checks everything first: with ``strict=True`` any missing, unexpected or wrongly shaped
        key raises a ValueError listing all of them (and nothing is loaded). With
        ``strict=False`` the matching keys are loaded and the others returned.
        Values are cast to the parameter's dtype and copied to its device.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = self.state_dict(keep_vars=True)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched = []
        for key, target in targets.items():
            if key in state_dict:
                got = tuple(np.shape(_raw(state_dict[key])))
                if got != target.shape:
                    mismatched.append((key, target.shape, got))
        result = IncompatibleKeys(missing, unexpected, mismatched)
        if strict and result:
            raise ValueError(
                f"load_state_dict for {type(self).__name__}: the state dict does not match the "
                f"model (nothing was loaded):\n{result.describe()}"
            )
        bad = {k for k, _, _ in mismatched}
        for key, target in targets.items():
            if key in state_dict and key not in bad:
                value = backend.to_device(_raw(state_dict[key]), target.device)
                xp = get_array_module(target.data)
                target.data[...] = xp.asarray(value, dtype=target.dtype)
        return result

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr line (its settings)."""
        return ""

    def __repr__(self) -> str:
        children = [f"({name}): {m!r}" for name, m in self._modules.items() if m is not None]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        body = "\n".join("  " + line.replace("\n", "\n  ") for line in lines)
        return f"{type(self).__name__}(\n{body}\n)"


def _raw(value: Any) -> Any:
    """The array inside a Tensor (or the value itself)."""
    return value.data if isinstance(value, Tensor) else value
