"""The simulated device array, and the rules at the host/device border.

``ndarray`` holds a NumPy buffer but is *not* a NumPy array (not a subclass): NumPy cannot read it
implicitly, every value that crosses to the host is an explicit, counted transfer or
synchronisation, and host arrays may not be mixed into device computations. These are CuPy's rules
(its "Differences between CuPy and NumPy" page); code that passes on this simulation does not
depend on the host and the device sharing memory.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._names import API

IMPLICIT_CONVERSION = (
    "Implicit conversion to a NumPy array is not allowed. "
    "Please use `.get()` to construct a NumPy array explicitly."
)
_NDARRAY_NAMES = frozenset(API["ndarray"])
# methods whose result's size depends on the data: CuPy synchronises to learn it
_DATA_DEPENDENT_METHODS = frozenset({"nonzero", "compress"})


@dataclass
class Stats:
    """What crossed the host/device border, for tests to assert on (``cupy_sim.stats``)."""

    syncs: int = 0  # device values read by the host: float(), item(), a mask's count, ...
    launches: int = 0  # kernels a GPU would run: ufuncs, reductions, copies, matmuls, gathers
    to_device_calls: int = 0
    to_device_bytes: int = 0
    to_host_calls: int = 0
    to_host_bytes: int = 0
    created: dict[str, int] = field(default_factory=dict)  # dtype name -> arrays made on the device
    device_bytes: int = 0  # held by live device buffers (the memory pool's used_bytes)
    peak_device_bytes: int = 0

    def reset(self) -> None:
        """Zero the counters; live buffers stay counted in ``device_bytes``."""
        live = device_bytes()
        vars(self).update(vars(Stats()))  # every field back to its default
        self.device_bytes = self.peak_device_bytes = live


stats = Stats()
_lock = threading.Lock()  # the loader and ops may run on several threads


def _count(attr: str, n: int = 1) -> None:
    with _lock:
        setattr(stats, attr, getattr(stats, attr) + n)


def count_launch(n: int = 1) -> None:
    """``n`` kernel launches: every ufunc call, reduction, copy, matmul and indexing op."""
    _count("launches", n)


def count_sync() -> None:
    """One synchronisation: the host waits for the device to hand back a value."""
    _count("syncs")


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def buffers(value: Any) -> list[np.ndarray]:
    """The NumPy buffers (their owners) inside an unwrapped argument list, one level deep."""
    found = []
    for v in value if isinstance(value, (tuple, list)) else (value,):
        for w in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(w, np.ndarray):
                found.append(_root(w))
    return found


def count_kernel(result: Any, inputs: list[np.ndarray]) -> None:
    """One launch unless ``result`` is only a view of an input (reshape, transpose, slice)."""
    if isinstance(result, tuple) and result:
        result = result[0]
    if isinstance(result, np.ndarray) and any(_root(result) is b for b in inputs):
        return
    count_launch()


def has_mask(index: Any) -> bool:
    """True when an (unwrapped) index holds a boolean array: its result's size is data."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray) and p.dtype == np.bool_ for p in parts)


def has_array(index: Any) -> bool:
    """True when an (unwrapped) index holds an array or a list: advanced indexing."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (np.ndarray, list)) for p in parts)


def _is_itself(a: np.ndarray, index: Any, value: Any) -> bool:
    """True when ``value`` is exactly the region ``a[index]`` (same memory, shape, strides)."""
    if not isinstance(value, np.ndarray) or has_array(index):
        return False
    region = a[index]
    return (
        region.__array_interface__["data"][0] == value.__array_interface__["data"][0]
        and region.shape == value.shape
        and region.strides == value.strides
    )


def _note_created(a: np.ndarray) -> None:
    new_buffer = a.base is None and a.nbytes > 0  # not a view
    with _lock:
        stats.created[a.dtype.name] = stats.created.get(a.dtype.name, 0) + 1
        if new_buffer:
            _drain_freed()
            stats.device_bytes += a.nbytes
            stats.peak_device_bytes = max(stats.peak_device_bytes, stats.device_bytes)
    if new_buffer:
        weakref.finalize(a, _freed.append, a.nbytes)


# Finalizers run inside the garbage collector, which may strike while _lock is held: they only
# append here (atomic, no lock) and the counts are settled under the lock later.
_freed: list[int] = []


def _drain_freed() -> None:
    while _freed:
        stats.device_bytes -= _freed.pop()


def device_bytes() -> int:
    """Bytes held by live device buffers now."""
    with _lock:
        _drain_freed()
        return stats.device_bytes


def mixed_error(what: Any) -> TypeError:
    """CuPy's error for a host array given to a device computation."""
    return TypeError(
        f"Unsupported type {type(what)}: a host numpy.ndarray cannot be mixed with device "
        "arrays; move it with cupy.asarray() first (cupy-sim follows CuPy's rule)"
    )


def unwrap(value: Any) -> Any:
    """The NumPy buffers inside ``value`` (arrays, tuples, lists, dicts); host arrays raise."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise mixed_error(value)
    if isinstance(value, (tuple, list)):
        return type(value)(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def wrap(value: Any) -> Any:
    """Device arrays for the NumPy results of a computation (scalars become 0-d arrays, as CuPy)."""
    if isinstance(value, np.ndarray):
        return _new(value)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return _new(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(wrap(v) for v in value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _new(a: np.ndarray) -> ndarray:
    out = object.__new__(ndarray)
    out._a = a
    _note_created(a)
    return out


def check_unique_scatter(index: Any, shape: tuple[int, ...]) -> None:
    """Raise if an assignment through integer index arrays would write one element twice.

    CuPy leaves such an element undefined (whichever GPU thread writes last); NumPy keeps the last
    value. Scatter-adds belong in ``cupyx.scatter_add`` / ``add.at``.
    """
    parts = index if isinstance(index, tuple) else (index,)
    if not any(
        isinstance(p, (np.ndarray, list)) and np.asarray(p).dtype.kind in "iu" for p in parts
    ):
        return
    hits = np.zeros(shape, dtype=np.int32)
    np.add.at(hits, index, 1)
    if hits.size and hits.max() > 1:
        raise ValueError(
            "assignment through an integer index array with duplicate indices: CuPy leaves the "
            "result undefined; use cupyx.scatter_add or cupy.add.at to accumulate"
        )


class ndarray:  # noqa: N801 (CuPy's name)
    """A device array: NumPy storage behind CuPy's border (see the module docstring)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy-sim: ndarray(memptr=..., strides=...) is not simulated")
        self._a = np.empty(shape, dtype=dtype, order=order)
        _note_created(self._a)

    # -- the border -------------------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError(IMPLICIT_CONVERSION)

    def get(self, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
        """Copy to the host (a counted transfer, and a synchronisation: it waits for the data)."""
        count_sync()
        _count("to_host_calls")
        _count("to_host_bytes", self._a.nbytes)
        host = np.array(self._a, order=order, copy=True)
        if out is None:
            return host
        out[...] = host
        return out

    def set(self, arr: np.ndarray, stream=None) -> None:
        """Copy a host array into this one (a counted transfer)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        _count("to_device_calls")
        _count("to_device_bytes", arr.nbytes)
        self._a[...] = arr

    def _sync(self) -> np.ndarray:
        count_sync()
        return self._a

    def item(self, *args):
        return self._sync().item(*args)

    def tolist(self):
        return self._sync().tolist()

    def __float__(self) -> float:
        return float(self._sync())

    def __int__(self) -> int:
        return int(self._sync())

    def __bool__(self) -> bool:
        return bool(self._sync())

    def __complex__(self) -> complex:
        return complex(self._sync())

    def __repr__(self) -> str:
        return repr(self._sync())

    def __str__(self) -> str:
        return str(self._sync())

    def __format__(self, spec: str) -> str:
        return format(self._sync(), spec) if self.ndim == 0 else str(self)

    # -- NumPy protocols: dispatch to the simulated CuPy, or refuse -------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import _namespace

        if method == "__call__":
            sim = _namespace.function_for(ufunc.__name__)
        else:
            sim = getattr(_namespace.ufuncs.get(ufunc.__name__), method, None)
        return NotImplemented if sim is None else sim(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import _namespace

        sim = _namespace.function_for(func.__name__)
        if sim is None:
            return NotImplemented
        return sim(*args, **kwargs)

    # -- plain attributes and methods, only those CuPy's ndarray has --------------------------
    def __getattr__(self, name: str):
        if name not in _NDARRAY_NAMES or not hasattr(np.ndarray, name):
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        value = getattr(self._a, name)
        if not callable(value):
            return wrap(value)
        if name in _DATA_DEPENDENT_METHODS:
            count_sync()  # the result's size is read back before it can be allocated

        def method(*args, **kwargs):
            result = value(*unwrap(args), **unwrap(kwargs))
            count_kernel(result, [] if "out" in kwargs else [_root(self._a)])
            return wrap(result)

        return method

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @shape.setter
    def shape(self, value) -> None:
        self._a.shape = value

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def data(self):
        """A stand-in for CuPy's ``MemoryPointer``: only its address, never the bytes."""
        return _MemoryPointer(self._a.__array_interface__["data"][0])

    @property
    def device(self):
        from .cuda import Device

        return Device(0)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return (wrap(row) for row in self._a)

    def __getitem__(self, index):
        index = unwrap(index)
        if has_mask(index):
            count_sync()  # CuPy reads the mask's count back to size the result
        if has_array(index):
            count_launch()  # a gather; basic slicing is a view and launches nothing
        return wrap(self._a[index])

    def __setitem__(self, index, value) -> None:
        index = unwrap(index)
        if isinstance(value, (list, tuple)) and not has_array(index):
            # CuPy fills a basic slice with a scalar only (cupy.ndarray.fill)
            raise TypeError(f"Unsupported type {type(value)}")
        if has_mask(index):
            count_sync()  # CuPy reads the mask's count back, as for a masked get
        check_unique_scatter(index, self._a.shape)
        value = unwrap(value)
        if not _is_itself(self._a, index, value):  # CuPy skips a[i] = a[i] (a += b on a slice)
            count_launch()
        self._a[index] = value

    def __copy__(self):
        count_launch()
        return wrap(self._a.copy())

    def __deepcopy__(self, memo):
        count_launch()
        return wrap(self._a.copy())

    def __reduce__(self):
        # CuPy arrays pickle (through the host); keep that, counted as a transfer
        return (_from_host, (self.get(),))

    # unhashable, as cupy.ndarray (mutable); typeshed marks list's __hash__ the same way
    __hash__ = None  # type: ignore[assignment]


def _from_host(host: np.ndarray) -> ndarray:
    _count("to_device_calls")
    _count("to_device_bytes", host.nbytes)
    return wrap(np.array(host))


class _MemoryPointer:
    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr


def _operator(ufunc_name: str, reflected: bool = False, inplace: bool = False):
    def op(self, other):
        from . import _namespace

        ufunc = _namespace.lookup(ufunc_name)
        if isinstance(other, np.ndarray):
            raise mixed_error(other)
        if inplace:
            return ufunc(self, other, out=self)
        return ufunc(other, self) if reflected else ufunc(self, other)

    return op


_BINARY = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "truediv": "true_divide",
    "floordiv": "floor_divide",
    "mod": "remainder",
    "pow": "power",
    "matmul": "matmul",
    "and": "bitwise_and",
    "or": "bitwise_or",
    "xor": "bitwise_xor",
    "lshift": "left_shift",
    "rshift": "right_shift",
}
for _name, _ufunc in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _operator(_ufunc))
    setattr(ndarray, f"__r{_name}__", _operator(_ufunc, reflected=True))
    if f"__i{_name}__" in _NDARRAY_NAMES:
        setattr(ndarray, f"__i{_name}__", _operator(_ufunc, inplace=True))
for _name, _ufunc in {
    "lt": "less",
    "le": "less_equal",
    "gt": "greater",
    "ge": "greater_equal",
    "eq": "equal",
    "ne": "not_equal",
}.items():
    setattr(ndarray, f"__{_name}__", _operator(_ufunc))


def _unary(ufunc_name: str):
    def op(self):
        from . import _namespace

        return _namespace.lookup(ufunc_name)(self)

    return op


for _name, _ufunc in {
    "neg": "negative",
    "pos": "positive",
    "abs": "absolute",
    "invert": "invert",
}.items():
    setattr(ndarray, f"__{_name}__", _unary(_ufunc))
