"""CuPy's module-level names, simulated with NumPy behind the device border.

Every name is checked against the snapshot of real CuPy: a NumPy name CuPy lacks raises
``AttributeError``; a CuPy name not simulated here raises ``NotImplementedError``. Functions unwrap
device arrays, refuse host arrays, run NumPy and wrap the results (scalars as 0-d device arrays).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ._array import _count, buffers, count_kernel, count_launch, count_sync, ndarray, unwrap, wrap
from ._names import API, no_such_name, not_simulated

_KINDS: dict[str, str] = API["cupy"]
_Order = Literal["K", "A", "C", "F"]  # memory layouts, as NumPy's ``order`` takes them
_UFUNC_METHODS = frozenset(API["ufunc"])


def _returning(out: Any, result: Any) -> Any:
    """``out`` itself when NumPy wrote into its buffer (so ``a += b`` keeps ``a``), else wrapped."""
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    if isinstance(out, ndarray) and result is out._a:
        return out
    return wrap(result)


# CuPy 14.2's ufunc (cupy/_core/_kernel.pyx): the keywords ``__call__`` takes; the ufuncs whose
# ``at`` has a scatter kernel; ``reduce``/``accumulate`` exist for add and multiply only and
# ``reduceat`` for add only. Every other use raises there, so it raises here.
_UFUNC_KEYWORDS = frozenset({"out", "dtype", "casting"})
_METHOD_SUPPORT = {
    "at": frozenset(
        {"add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"}
    ),
    "reduce": frozenset({"add", "multiply"}),
    "accumulate": frozenset({"add", "multiply"}),
    "reduceat": frozenset({"add"}),
}


def _refuse_sequences(name: str, args: tuple) -> None:
    """CuPy's ufuncs take device arrays and scalars: a list or tuple is not converted."""
    for a in args:
        if isinstance(a, (list, tuple)):
            raise TypeError(f"Unsupported type {type(a)} (cupy.{name} takes arrays and scalars)")


class ufunc:  # noqa: N801 (CuPy's name)
    """A CuPy ufunc: elementwise on device arrays and Python/NumPy scalars only.

    As CuPy's: only the keywords ``out``, ``dtype`` and ``casting``; a new output is always
    C-contiguous (NumPy would keep its inputs' layout); one kernel launch per call."""

    def __init__(self, name: str, numpy_ufunc: Any):
        self.__name__ = self.name = name
        self._np = numpy_ufunc
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs

    def __repr__(self) -> str:
        return f"<ufunc '{self.name}'>"

    def __call__(self, *args, **kwargs):
        if set(kwargs) - _UFUNC_KEYWORDS:
            raise TypeError(
                f"Wrong arguments {dict((k, kwargs[k]) for k in set(kwargs) - _UFUNC_KEYWORDS)}"
            )
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for '{self.name}'. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        _refuse_sequences(self.name, args[: self.nin])
        count_launch()
        result = self._np(*unwrap(args), **unwrap(kwargs))
        if kwargs.get("out") is None and len(args) == self.nin:
            result = _c_order(result)
        return _returning(kwargs.get("out"), result)

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in _UFUNC_METHODS:
            raise AttributeError(f"'cupy.ufunc' object has no attribute {name!r}")
        if name in _METHOD_SUPPORT and self.name not in _METHOD_SUPPORT[name]:
            raise NotImplementedError(f"`{self.name}.{name}` is not supported yet")
        method = getattr(self._np, name)
        if name == "at":  # in place, returns None

            def at(a, indices, b=None):
                count_launch()
                method(*unwrap((a, indices) if b is None else (a, indices, b)))

            return at

        def call(*args, **kwargs):
            count_launch()
            return _returning(kwargs.get("out"), method(*unwrap(args), **unwrap(kwargs)))

        return call


def _c_order(result: Any) -> Any:
    if isinstance(result, tuple):
        return tuple(np.ascontiguousarray(r) for r in result)
    return np.ascontiguousarray(result) if isinstance(result, np.ndarray) else result


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    """A device array of ``a``; host data is copied over (a counted transfer)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    host = np.asarray(a, dtype=dtype, order=order)
    _count("to_device_calls")
    _count("to_device_bytes", host.nbytes)
    return wrap(np.array(host, copy=True))


def array(
    obj: Any, dtype: Any = None, copy: bool = True, order: _Order = "K", subok=False, ndmin=0
):
    """``cupy.array``: always a new device array unless ``copy=False`` allows a view."""
    if isinstance(obj, ndarray):
        return wrap(np.array(obj._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return asarray(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a: Any, stream: Any = None, order: _Order = "C", out: Any = None, blocking=True):
    """A host array of ``a`` (a counted transfer when ``a`` is on the device)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args: Any):
    """This simulation if any argument is one of its arrays, else NumPy (as CuPy's)."""
    import sys

    if any(isinstance(a, ndarray) for a in args):
        return sys.modules[__package__]
    return np


def fuse(*args, **kwargs):
    """``cupy.fuse`` compiles a kernel on a GPU; here the function runs as it is."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def _memory_pool():
    from .cuda import MemoryPool

    return MemoryPool.default


def _pinned_memory_pool():
    from .cuda import PinnedMemoryPool

    return PinnedMemoryPool.default


_SPECIAL = {
    "asarray": asarray,
    "asanyarray": asarray,
    "array": array,
    "asnumpy": asnumpy,
    "get_array_module": get_array_module,
    "fuse": fuse,
    "get_default_memory_pool": _memory_pool,
    "get_default_pinned_memory_pool": _pinned_memory_pool,
    "ndarray": ndarray,
    "ufunc": ufunc,
}

ufuncs: dict[str, ufunc] = {
    name: ufunc(name, getattr(np, name))
    for name, kind in _KINDS.items()
    if kind == "ufunc" and isinstance(getattr(np, name, None), np.ufunc)
}
# NumPy calls the division ufunc "divide" and aliases "true_divide" to it
if "true_divide" in _KINDS and "true_divide" not in ufuncs:
    ufuncs["true_divide"] = ufunc("true_divide", np.true_divide)
_cache: dict[str, Any] = {}


# functions whose result's size depends on the data: CuPy reads a count back (a synchronisation)
_DATA_DEPENDENT = frozenset(
    {
        "nonzero",
        "flatnonzero",
        "argwhere",
        "unique",
        "extract",
        "compress",
        "setdiff1d",
        "intersect1d",
        "union1d",
        "trim_zeros",
    }
)


def _function(name: str, target: Any):
    def simulated(*args, **kwargs):
        args, kwargs = unwrap(args), unwrap(kwargs)
        if name in _DATA_DEPENDENT or (name == "where" and len(args) == 1):
            count_sync()
        result = target(*args, **kwargs)
        count_kernel(result, [] if kwargs.get("out") is not None else buffers(args))
        return _returning(kwargs.get("out"), result)

    simulated.__name__ = simulated.__qualname__ = name
    simulated.__doc__ = f"cupy.{name}, simulated with numpy.{name}."
    return simulated


def function_for(name: str) -> Any:
    """The simulated function CuPy calls ``name``, or None (then NumPy raises its TypeError)."""
    try:
        value = lookup(name)
    except (AttributeError, NotImplementedError):
        return None
    return value if callable(value) else None


def lookup(name: str) -> Any:
    """The simulated value of ``cupy.<name>``."""
    if name in _cache:
        return _cache[name]
    kind = _KINDS.get(name)
    if kind is None:
        raise no_such_name("cupy", name)
    if name in _SPECIAL:
        value = _SPECIAL[name]
    elif name in ufuncs:
        value = ufuncs[name]
    elif kind == "module":
        value = _submodule(name)
    elif kind == "function" and callable(getattr(np, name, None)):
        value = _function(name, getattr(np, name))
    elif kind in ("class", "value") and hasattr(np, name):
        value = getattr(np, name)  # dtypes, finfo, newaxis, pi, inf: CuPy re-exports NumPy's
    else:
        raise not_simulated(name)
    _cache[name] = value
    return value


def _submodule(name: str):
    import importlib

    if name not in ("random", "cuda", "lib"):
        raise not_simulated(name)
    return importlib.import_module(f"{__package__}.{name}")
