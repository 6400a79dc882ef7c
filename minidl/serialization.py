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
import math
import os
import re
import zipfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from . import backend
from .tensor import Tensor

_STRUCTURE = "__minidl__"
_FORMAT = 1
MAX_DEPTH = 64  # how deep dicts, lists and tuples may nest (checkpoints nest 4 deep)
_JSON_LEVELS = 3  # JSON brackets per level: {"dict": [[key, value], ...]}
MAX_BYTES = 1 << 30  # the most a compressed .npz may unpack to (load(max_bytes=))


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
        np.savez(f, allow_pickle=False, **arrays)  # (_store refused object arrays already)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once fully written and synced to disk.

    Writes go to a temporary file in the same folder, renamed over ``path`` on success and removed
    on any error (Ctrl-C included), so ``path`` is always the old file or the complete new one.
    The file gets the permissions of any new file (``0o666`` less the umask); the temporary's name
    ``.<name>.<pid>.<random>.tmp`` carries the writer's process id, so that one left by a killed
    process can be told from one being written (``remove_stale_temp_files``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{_random_tag()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
            break
        except FileExistsError:
            continue
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


_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def _random_tag() -> str:
    return os.urandom(4).hex()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:  # (Windows: no such process)
        return False
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files ``atomic_open`` left in ``folder`` when its process died (a
    kill, a power cut); those of running processes stay. Returns the names removed."""
    removed = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP_NAME.match(name)
        if match and not process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def load(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> Any:
    """Read an object written by ``save`` (arrays come back as NumPy arrays on the CPU).

    A plain ``.npz`` from elsewhere loads as a dict of its arrays. A file that is not a readable
    ``.npz`` raises ``ValueError`` naming it, and so does a file whose declared sizes it cannot
    back: every array's ``.npy`` header must agree with its member's size in the zip, and the
    arrays together may unpack to at most ``max(file size, max_bytes)`` bytes (members
    ``md.save`` writes are stored, never compressed, so its files always fit). All of this is
    checked before an array is allocated; the structure may nest at most ``MAX_DEPTH`` deep.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    try:
        members = _read_npz(path, max(os.path.getsize(path), max_bytes))
        if _STRUCTURE not in members:
            return members  # a plain .npz from elsewhere: its arrays by name
        text = members.pop(_STRUCTURE).tobytes()
        _check_depth(text)
        structure = json.loads(text.decode())
        if not isinstance(structure, dict) or "root" not in structure:
            raise ValueError("its structure has no root entry")
        return _decode(structure["root"], members)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecursionError) as e:
        raise ValueError(
            f"load: {path!r} is not a readable minidl/.npz file (truncated or corrupt?): "
            f"{type(e).__name__}: {e}"
        ) from e


def _read_npz(path: str, limit: int) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, each ``.npy`` header checked against the zip's sizes first."""
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError("this is a single-array .npy file; md.load reads .npz (np.load it)")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > limit:
            raise ValueError(
                f"its members unpack to {total:,} bytes, more than the limit of {limit:,} "
                "(load(..., max_bytes=) raises it)"
            )
        return {_member_name(info): _read_member(archive, info) for info in infos}


def _member_name(info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(".npy"):
        raise ValueError(f"member {info.filename!r} is not a .npy array")
    return info.filename[: -len(".npy")]


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, refused unless its header's shape and dtype fill it exactly."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f"member {info.filename!r}: unsupported .npy version {version}")
        shape, fortran_order, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects (pickles)")
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if f.tell() + nbytes != info.file_size:
            raise ValueError(
                f"member {info.filename!r} declares a {shape} {dtype} array ({nbytes:,} bytes) "
                f"but holds {info.file_size - f.tell():,} bytes of data"
            )
        data = np.empty(nbytes, dtype=np.uint8)
        view, done = data.data, 0  # a memoryview of data's buffer
        while done < nbytes:
            block = f.read(min(nbytes - done, 1 << 24))
            if not block:
                raise ValueError(f"member {info.filename!r} ends early")
            view[done : done + len(block)] = block
            done += len(block)
        f.read(1)  # reading to the end checks the member's CRC
    array = data.view(dtype)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def _check_depth(text: bytes) -> None:
    """Refuse JSON nested deeper than a structure of ``MAX_DEPTH`` levels can be, before parsing
    (the parser and ``_decode`` recurse once per level)."""
    outside = re.sub(rb'"(?:[^"\\]|\\.)*"', b"", text)  # strings may hold brackets
    steps = np.frombuffer(outside, dtype=np.uint8)
    depth = np.cumsum(np.isin(steps, (ord("["), ord("{"))).astype(np.int64)
                      - np.isin(steps, (ord("]"), ord("}"))))  # fmt: skip
    if depth.size and depth.max() > _JSON_LEVELS * MAX_DEPTH + 2:
        raise ValueError(f"its structure nests deeper than {MAX_DEPTH} levels")


def _encode(obj: Any, arrays: dict[str, np.ndarray], where: str, depth: int = 0) -> Any:
    """JSON-able description of ``obj``; arrays are moved into ``arrays`` under fresh names."""
    if depth > MAX_DEPTH:
        raise ValueError(f"save: the object nests deeper than {MAX_DEPTH} levels at {where}")
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
            inside = f"{where}[{k!r}]"
            items.append(
                [_encode(k, arrays, where, depth + 1), _encode(v, arrays, inside, depth + 1)]
            )
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]}
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
    """The object a structure node describes; ValueError for anything ``_encode`` never writes."""
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        raise ValueError(f"a structure entry has keys {sorted(node)[:5]}, expected one")
    ((kind, value),) = node.items()
    if kind in ("array", "tensor", "scalar"):
        if not isinstance(value, str) or value not in arrays:
            raise ValueError(f"an {kind} entry refers to {value!r}, which is not in the file")
        array = arrays[value]
        return array if kind == "array" else Tensor(array) if kind == "tensor" else array[()]
    if kind not in ("dict", "list", "tuple") or not isinstance(value, list):
        raise ValueError(f"unknown entry {kind!r} in the file's structure")
    if kind == "list":
        return [_decode(v, arrays) for v in value]
    if kind == "tuple":
        return tuple(_decode(v, arrays) for v in value)
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        raise ValueError("a dict entry is not a list of [key, value] pairs")
    items = [(_decode(k, arrays), _decode(v, arrays)) for k, v in value]
    try:
        return dict(items)
    except TypeError:
        raise ValueError("a dict entry has an unhashable key") from None
