"""Read PyTorch ``.pth`` files into NumPy arrays without PyTorch.

Since PyTorch 1.6, ``torch.save`` writes a zip archive whose top folder is named after the file
(``archive`` when saved to a buffer)::

    <top>/data.pkl      a pickle of the saved object (a state dict: an OrderedDict of tensors)
    <top>/data/<key>    the raw bytes of each storage the pickle refers to by key
    <top>/byteorder     "little" (absent in old files, which were little-endian too)

Inside ``data.pkl`` a tensor is not data but a *recipe*: a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` whose
``storage`` is a *persistent id*, a tuple ``("storage", storage_type, key, location, numel)``
that the unpickler must resolve itself. Here ``storage_type`` is a typed storage class
(``torch.FloatStorage``, ``torch.LongStorage``...; numel counts elements) or
``torch.UntypedStorage`` (plain bytes; numel counts bytes). ``_rebuild_tensor_v3`` adds a
``dtype`` argument that overrides the storage's element type.

Unpickling runs whatever functions a pickle names, so ``_TorchUnpickler.find_class`` allows only
a short list: the torch names are mapped to the small functions below, ``collections.OrderedDict``
to itself, and anything else is refused. torch is never imported.

A file cannot make the reader allocate more than it backs: the archive's members may unpack to at
most ``max(file size, max_bytes)`` bytes (torch stores them uncompressed), and a tensor may hold
no more elements than its storage (a zero stride repeating one element 2**31 times is refused).
Every problem with a file's content is a ``PthError``, a ``ValueError`` naming the file.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

MAX_BYTES = 1 << 30  # the most a compressed archive may unpack to (load_pth(max_bytes=))


class PthError(ValueError, pickle.UnpicklingError):
    """A ``.pth`` file this reader cannot or will not rebuild (a ValueError; an UnpicklingError
    too, as it was before)."""


# Typed storage classes and the NumPy dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",  # no NumPy dtype: widened to float32 when read
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# torch dtypes, as named in pickles (torch.float32, ...), for untyped storages.
_TORCH_DTYPES = {
    "float64": np.float64,
    "double": np.float64,
    "float32": np.float32,
    "float": np.float32,
    "float16": np.float16,
    "half": np.float16,
    "bfloat16": "bfloat16",
    "int64": np.int64,
    "long": np.int64,
    "int32": np.int32,
    "int": np.int32,
    "int16": np.int16,
    "short": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


class _StorageType:
    """Stands for ``torch.FloatStorage`` & co. in the pickle: it only carries the dtype."""

    def __init__(self, name: str, dtype: Any):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _DType:
    """Stands for a ``torch.float32``-like dtype object in the pickle."""

    def __init__(self, name: str):
        if name not in _TORCH_DTYPES:
            raise pickle.UnpicklingError(f"unsupported torch dtype torch.{name}")
        self.name, self.dtype = name, _TORCH_DTYPES[name]


class _Storage:
    """A storage read from ``<top>/data/<key>``: its bytes, and its element dtype if typed."""

    def __init__(self, raw: bytes, dtype: Any, key: str):
        self.raw, self.dtype, self.key = raw, dtype, key

    def as_array(self, dtype: Any, byteorder: str) -> np.ndarray:
        """The storage as a flat array of ``dtype`` (default: its own; bytes when untyped)."""
        dtype = dtype if dtype is not None else self.dtype if self.dtype is not None else np.uint8
        if dtype == "bfloat16":  # the top 16 bits of a float32
            halves = np.frombuffer(
                self.raw, dtype=np.dtype("<u2" if byteorder == "little" else ">u2")
            )
            return (halves.astype(np.uint32) << 16).view(np.float32)
        dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
        if len(self.raw) % dt.itemsize:
            raise pickle.UnpicklingError(
                f"storage {self.key!r}: {len(self.raw)} bytes are not whole {dt} elements"
            )
        return np.frombuffer(self.raw, dtype=dt).astype(dt.newbyteorder("="), copy=False)


def _rebuild_tensor(
    storage: Any, offset: int, size: Any, stride: Any, dtype: Any = None
) -> np.ndarray:
    """The array a tensor views: ``size`` elements from ``offset`` with ``stride`` (in elements)."""
    if not isinstance(storage, tuple) or not isinstance(storage[0], _Storage):
        raise pickle.UnpicklingError(f"a tensor's storage must be a persistent id, got {storage!r}")
    store, byteorder = storage
    flat = store.as_array(dtype, byteorder)
    if not all(isinstance(n, int) for n in (offset, *size, *stride)):
        raise pickle.UnpicklingError(
            f"tensor offset {offset!r}, size {size!r} and stride {stride!r} must be integers"
        )
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
    if any(s < 0 for s in size):
        raise pickle.UnpicklingError(f"tensor size {size} is negative")
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or last >= flat.size or min(stride, default=0) < 0:
        raise pickle.UnpicklingError(
            f"tensor (offset {offset}, size {size}, stride {stride}) reaches outside its storage "
            f"{store.key!r} of {flat.size} elements"
        )
    if math.prod(size) > flat.size:  # checked before the copy below allocates
        raise pickle.UnpicklingError(
            f"tensor of size {size} ({math.prod(size)} elements) repeats the {flat.size} elements "
            f"of its storage {store.key!r} (stride {stride}): a state dict never does that"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(st * flat.itemsize for st in stride)
    )
    return np.array(view)  # a contiguous copy that owns its memory


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None
):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, hooks, dtype, metadata=None
):
    # v3 names the dtype itself (for dtypes that have no legacy typed-storage class)
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError(f"expected a torch dtype, got {dtype!r}")
    return _rebuild_tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=True, hooks=None, state=None):
    return data  # a Parameter is a tensor that requires grad: its values are all we keep


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)  # a Tensor subclass (e.g. Parameter): rebuild the plain tensor


class _TensorType:
    """Stands for ``torch.Tensor`` / ``torch.nn.Parameter`` as ``new_type`` in the pickle."""


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TensorType,
    ("torch.nn.parameter", "Parameter"): _TensorType,
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` with an allow-list of globals and storages read from the zip."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, top: str, byteorder: str):
        super().__init__(file)
        self.archive, self.top, self.byteorder = archive, top, byteorder
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module in ("torch", "torch.storage") and name in ("UntypedStorage", "TypedStorage"):
            return _StorageType(name, None)
        if module == "torch" and name in _TORCH_DTYPES:
            return _DType(name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: this reader only rebuilds tensors and dicts "
            "(a state dict); save the model's state_dict(), not the model object"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid
        if isinstance(storage_type, _DType):  # some writers name the dtype directly
            dtype = storage_type.dtype
        elif isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        else:
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        key = str(key)
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.top}/data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(
                    f"storage {key!r} is missing from the archive"
                ) from None
            self.storages[key] = _Storage(raw, dtype, key)
        return (self.storages[key], self.byteorder)


def load_pth(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> Any:
    """Load a ``torch.save`` zip file; tensors come back as NumPy arrays (owning their memory).

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``PthError`` (a ``ValueError``
    naming the file) for anything else: not a torch zip archive (e.g. the pre-1.6 format),
    members that would unpack to more than ``max(file size, max_bytes)`` bytes, or content it
    will not or cannot rebuild.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file {path!r}")
    if not zipfile.is_zipfile(path):
        raise PthError(
            f"{path!r} is not a PyTorch zip archive (torch.save since PyTorch 1.6); "
            "re-save it with a recent PyTorch: torch.save(torch.load(old), new)"
        )
    try:
        return _load_archive(path, max(os.path.getsize(path), max_bytes))
    except PthError:
        raise
    except (
        pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError,
        KeyError, OverflowError, struct.error, zipfile.BadZipFile, OSError,
    ) as e:  # fmt: skip
        raise PthError(f"cannot read {path!r}: {type(e).__name__}: {e}") from e


def _load_archive(path: str, limit: int) -> Any:
    with zipfile.ZipFile(path) as archive:
        total = sum(info.file_size for info in archive.infolist())
        if total > limit:
            raise PthError(
                f"{path!r}: its members unpack to {total:,} bytes, more than the limit of "
                f"{limit:,} (load_pth(..., max_bytes=) raises it)"
            )
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise PthError(f"{path!r}: expected one <top>/data.pkl in the archive, found {pickles}")
        top = pickles[0].split("/")[0]
        byteorder = "little"
        if f"{top}/byteorder" in archive.namelist():
            byteorder = archive.read(f"{top}/byteorder").decode().strip()
            if byteorder not in ("little", "big"):
                raise PthError(f"{path!r}: unknown byteorder {byteorder!r}")
        with archive.open(pickles[0]) as f:
            return _TorchUnpickler(f, archive, top, byteorder).load()


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``.pth`` state dict as ``{key: array}`` (``num_batches_tracked`` stays int64).

    Accepts a checkpoint that wraps it as ``{"state_dict": ...}`` or ``{"model": ...}`` too.
    """
    obj = load_pth(path)
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state dict of tensors")
    return dict(obj)
