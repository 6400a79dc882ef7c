"""NumPy/CuPy: the array module *is* the device.

A minidl tensor holds a ``numpy.ndarray`` (device ``"cpu"``) or a ``cupy.ndarray`` (device
``"cuda"``). Ops never pick a module themselves: they ask ``get_array_module(array)`` and use what
comes back, so one piece of code runs on both. CuPy is imported only when a user asks for
``"cuda"``; until then no CuPy array can exist, so ``get_array_module`` need not import it either.

Without a GPU, ``MINIDL_SIMULATE_CUDA=1`` makes ``"cuda"`` the simulated CuPy
(``minidl.testing.cupy_sim``): the same code path, checked against CuPy's rules, on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")

_INSTALL_HINT = (
    "install the GPU extra matching your CUDA toolkit, in the repository's root: "
    'python -m pip install -e ".[cuda13]" (or ".[cuda12]")'
)


_SIMULATION = "minidl.testing.cupy_sim"
SIMULATE_ENV = "MINIDL_SIMULATE_CUDA"
_forced_gpu_module: ModuleType | None = None  # set by simulate_cuda() (tests)
_active_gpu_module: ModuleType | None = None  # what import_cupy() last handed out
_announced = False


def _device_modules() -> list[ModuleType]:
    """The GPU array modules already imported: real CuPy, the simulated one (never imports)."""
    return [m for m in (sys.modules.get("cupy"), sys.modules.get(_SIMULATION)) if m is not None]


def get_array_module(*arrays: Any) -> ModuleType:
    """``cupy`` (or the simulated CuPy) if any argument is one of its arrays, else ``numpy``."""
    for xp in _device_modules():
        for a in arrays:
            if isinstance(a, xp.ndarray):
                return xp
    return np


def _real_cupy() -> ModuleType:
    """Import CuPy and check that a GPU answers; a clear error says which of the two is missing."""
    hint = f"(or set {SIMULATE_ENV}=1 to test the GPU code path on the simulated CuPy)"
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            f"device 'cuda' needs CuPy, which is not installed: {_INSTALL_HINT} {hint}"
        ) from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing or broken
        raise RuntimeError(f"CuPy is installed but no CUDA GPU could be reached: {e} {hint}") from e
    if count == 0:
        raise RuntimeError(f"CuPy is installed but found no CUDA GPU (device count 0) {hint}")
    return cupy


def _simulated_cupy() -> ModuleType:
    """The simulated CuPy, announced once on stderr so nobody mistakes it for a GPU."""
    global _announced
    import importlib

    if not _announced:
        _announced = True
        print(
            f"minidl: {SIMULATE_ENV}=1 and no GPU: device 'cuda' is the SIMULATED CuPy "
            "(NumPy on the CPU behind CuPy's rules), not a GPU; use it to test, never to time.",
            file=sys.stderr,
        )
    return importlib.import_module(_SIMULATION)


def import_cupy() -> ModuleType:
    """The array module of device "cuda": CuPy on a GPU, else the simulation when asked for.

    ``MINIDL_SIMULATE_CUDA=1`` selects the simulated CuPy (``minidl.testing.cupy_sim``) when no
    GPU answers; without it a missing CuPy or GPU is a clear error.
    """
    global _active_gpu_module
    if _forced_gpu_module is not None:
        return _forced_gpu_module
    try:
        _active_gpu_module = _real_cupy()
    except RuntimeError:
        if os.environ.get(SIMULATE_ENV, "") in ("", "0"):
            raise
        _active_gpu_module = _simulated_cupy()
    return _active_gpu_module


def synchronize() -> None:
    """Wait for the GPU's queued work (timing needs it); nothing to do when none is in use."""
    xp = _forced_gpu_module or _active_gpu_module
    if xp is not None:
        xp.cuda.get_current_stream().synchronize()


@contextlib.contextmanager
def simulate_cuda() -> Iterator[ModuleType]:
    """Within the block, device "cuda" is the simulated CuPy even where a GPU exists (tests)."""
    global _forced_gpu_module
    import importlib

    previous = _forced_gpu_module
    _forced_gpu_module = importlib.import_module(_SIMULATION)
    try:
        yield _forced_gpu_module
    finally:
        _forced_gpu_module = previous


def is_gpu_available() -> bool:
    """True when CuPy imports and sees at least one real GPU (the simulation does not count)."""
    try:
        _real_cupy()
    except RuntimeError:
        return False
    return True


def is_simulated(xp: ModuleType) -> bool:
    """True for the simulated CuPy's module."""
    return xp.__name__ == _SIMULATION


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
    return "cpu" if get_array_module(array) is np else "cuda"


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
    # numpy, CuPy and the simulation all offer the unbuffered ufunc.at (CuPy: cupyx.scatter_add)
    get_array_module(target).add.at(target, index, values)


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
