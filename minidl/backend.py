"""NumPy/CuPy: the array module *is* the device.

A minidl tensor holds a ``numpy.ndarray`` (device ``"cpu"``) or a ``cupy.ndarray`` (device
``"cuda"``). Ops never pick a module themselves: they ask ``get_array_module(array)`` and use what
comes back, so one piece of code runs on both. CuPy is imported only when a user asks for
``"cuda"``; until then no CuPy array can exist, so ``get_array_module`` need not import it either.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")

_INSTALL_HINT = (
    "install the GPU extra matching your CUDA toolkit: pip install 'minidl[cuda13]' "
    "(or 'minidl[cuda12]')"
)


def _loaded_cupy() -> ModuleType | None:
    """CuPy if something already imported it, else None (never triggers the import)."""
    return sys.modules.get("cupy")


def get_array_module(*arrays: Any) -> ModuleType:
    """``cupy`` if any argument is a CuPy array, else ``numpy``."""
    cp = _loaded_cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def import_cupy() -> ModuleType:
    """Import CuPy and check that a GPU answers; a clear error says which of the two is missing."""
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            f"device 'cuda' needs CuPy, which is not installed: {_INSTALL_HINT}"
        ) from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise RuntimeError(f"CuPy is installed but no CUDA GPU could be reached: {e}") from e
    if count == 0:
        raise RuntimeError("CuPy is installed but no CUDA GPU was found (device count is 0)")
    return cupy


def is_gpu_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        import_cupy()
    except RuntimeError:
        return False
    return True


def check_device(device: str) -> str:
    """Normalise a device name ("cpu", "cuda", "cuda:0") to "cpu" or "cuda"."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string 'cpu' or 'cuda', got {type(device).__name__}")
    name = device.split(":")[0].lower()
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return name


def device_of(array: Any) -> str:
    """The device an array lives on: "cuda" for a CuPy array, else "cpu"."""
    return "cuda" if get_array_module(array) is not np else "cpu"


def module_for(device: str) -> ModuleType:
    """The array module of a device name (imports CuPy for "cuda")."""
    return import_cupy() if check_device(device) == "cuda" else np


def to_device(array: Any, device: str) -> Any:
    """Move an array to ``device`` (a no-op when it is already there)."""
    device = check_device(device)
    if device_of(array) == device:
        return array
    if device == "cuda":
        return import_cupy().asarray(array)
    return array.get()


def to_numpy(array: Any) -> np.ndarray:
    """A host NumPy array of ``array`` (copies from the GPU; returns NumPy arrays as they are)."""
    return array.get() if device_of(array) == "cuda" else np.asarray(array)


def scatter_add(target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices summed (unbuffered), on either device."""
    xp = get_array_module(target)
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    A training step allocates and frees the same few hundred MB of activations and gradients every
    step. By default glibc serves large blocks with mmap and unmaps them on free, so the next step
    page-faults every page back in (and the kernel zero-fills it): 10-20% of a CPU training step
    here. Called by programs (googlenet.py, the benchmarks), not on import: it changes the whole
    process's allocator. Returns False where it does not apply (not glibc).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
