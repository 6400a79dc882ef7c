"""``md.save`` / ``md.load``: state dicts and training checkpoints as ``.npz`` files.

An object is a nest of dicts, lists and tuples whose leaves are arrays (NumPy or CuPy), Tensors,
Python numbers, strings, bools or None. ``save`` stores every array as one ``.npy`` member of the
zip and the nest itself as JSON (member ``__minidl__``), where each array appears as a reference;
dict keys keep their type (the optimizer's state is keyed by int). No pickle: loading a file
cannot run code. GPU arrays are saved from host copies; everything loads on the CPU (NumPy
arrays, Tensors as Tensors).

Writing is atomic: the zip goes to a temporary file in the same folder, is flushed to disk, then
``os.replace``-d over ``path``, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from . import backend
from .tensor import Tensor

_STRUCTURE = "__minidl__"
_FORMAT = 1


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (e.g. ``model.state_dict()`` or a checkpoint dict) to ``path`` atomically."""
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    structure = {"format": _FORMAT, "root": _encode(obj, arrays, "obj")}
    arrays[_STRUCTURE] = np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder!r} for {path!r} does not exist")
    with atomic_open(path) as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once fully written and synced to disk.

    Writes go to a temporary file in the same folder, renamed over ``path`` on success and removed
    on any error (Ctrl-C included), so ``path`` is always the old file or the complete new one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str | os.PathLike) -> Any:
    """Read an object written by ``save`` (arrays come back as NumPy arrays on the CPU)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            members = {name: npz[name] for name in npz.files}  # read all: checks every CRC
        if _STRUCTURE not in members:
            return members  # a plain .npz from elsewhere: its arrays by name
        structure = json.loads(members.pop(_STRUCTURE).tobytes().decode())
        return _decode(structure["root"], members)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ValueError(
            f"load: {path!r} is not a readable minidl/.npz file (truncated or corrupt?): "
            f"{type(e).__name__}: {e}"
        ) from e


def _encode(obj: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """JSON-able description of ``obj``; arrays are moved into ``arrays`` under fresh names."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj  # JSON keeps 1 and 1.0 apart, and nan/inf round-trip in Python's json
    if isinstance(obj, Tensor):
        return {"tensor": _store(obj.data, arrays, where)}
    if isinstance(obj, np.generic):
        return {"scalar": _store(np.asarray(obj), arrays, where)}
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # numpy or cupy array
        return {"array": _store(obj, arrays, where)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None), tuple)):
                raise TypeError(
                    f"save: dict keys must be str/int/float/bool/tuple, got {k!r} at {where}"
                )
            items.append([_encode(k, arrays, where), _encode(v, arrays, f"{where}[{k!r}]")])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    raise TypeError(
        f"save: cannot store {type(obj).__name__} at {where}; expected arrays, Tensors, numbers, "
        f"strings, None, and dicts/lists/tuples of those"
    )


def _store(array: Any, arrays: dict[str, np.ndarray], where: str) -> str:
    host = backend.to_numpy(array)
    if host.dtype == object:
        raise TypeError(f"save: object arrays cannot be stored (at {where})")
    name = f"a{len(arrays)}"
    arrays[name] = host
    return name


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(node, dict):
        return node
    (kind, value), *_ = node.items()
    if kind == "array":
        return arrays[value]
    if kind == "tensor":
        return Tensor(arrays[value])
    if kind == "scalar":
        return arrays[value][()]
    if kind == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value}
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value)
    raise ValueError(f"unknown entry {kind!r} in the file's structure")
