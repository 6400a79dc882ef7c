"""NumPy/CuPy: the array module *is* the device.

A minidl tensor holds a ``numpy.ndarray`` (device ``"cpu"``) or a ``cupy.ndarray`` (device
``"cuda"``). Ops never pick a module themselves: they ask ``get_array_module(array)`` and use what
comes back, so one piece of code runs on both. CuPy is imported only when a user asks for
``"cuda"``; until then no CuPy array can exist, so ``get_array_module`` need not import it either.

``MINIDL_SIMULATE_CUDA=1`` makes ``"cuda"`` the simulated CuPy (``minidl.testing.cupy_sim``),
GPU or not: the same code path, checked against CuPy's rules, on the CPU.

A GPU counts as usable only when one tiny kernel of each library a training step needs has run on
it (NVRTC compiles elementwise kernels, cuBLAS runs the matrix products, cuRAND draws dropout's
masks): CuPy's wheel imports and counts devices without those libraries, then fails at the first
kernel.
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
    "install the GPU extra matching your NVIDIA driver (CuPy 14 with its CUDA libraries), in the "
    'repository\'s root: python -m pip install -e ".[cuda13]" (or ".[cuda12]" for a CUDA 12 driver)'
)
# what a failing first kernel's message names -> the library to blame
_LIBRARIES = (("nvrtc", "NVRTC"), ("cublas", "cuBLAS"), ("curand", "cuRAND"), ("cudart", "cudart"))


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


_probe_result: tuple[ModuleType | None, str] | None = None  # (cupy, "") or (None, why not)


def _first_kernels(cupy: ModuleType) -> None:
    """One kernel of each library a training step uses; raises what CuPy raises."""
    a = cupy.arange(4, dtype=cupy.float32).reshape(2, 2)
    b = a * 2 + 1  # an elementwise kernel: compiled by NVRTC
    c = b @ a  # cuBLAS
    d = cupy.random.random((2, 2), dtype=cupy.float32)  # cuRAND
    float((c + d).sum())  # runs them all and waits


def _library_in(error: BaseException) -> str:
    text = f"{type(error).__name__} {error}".lower()
    return next((name for key, name in _LIBRARIES if key in text), "the CUDA runtime")


def _probe_cupy() -> tuple[ModuleType | None, str]:
    """Import CuPy and run the first kernels: (cupy, "") or (None, what failed)."""
    try:
        import cupy
    except ImportError:
        return None, f"CuPy is not installed: {_INSTALL_HINT}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing, or older than the wheel's CUDA
        return None, f"CuPy {cupy.__version__} is installed but no CUDA GPU answers ({e})"
    if count == 0:
        return None, f"CuPy {cupy.__version__} is installed but found no CUDA GPU (device count 0)"
    try:
        _first_kernels(cupy)
    except Exception as e:
        return None, (
            f"CuPy {cupy.__version__} sees {count} GPU(s) but cannot run a kernel: "
            f"{_library_in(e)} failed ({type(e).__name__}: {e}); {_INSTALL_HINT}"
        )
    return cupy, ""


def _probed() -> tuple[ModuleType | None, str]:
    global _probe_result
    if _probe_result is None:
        _probe_result = _probe_cupy()
    return _probe_result


def gpu_status() -> tuple[bool, str]:
    """(True, "") when CuPy runs kernels on a real GPU, else (False, why not); probed once."""
    cupy, why = _probed()
    return cupy is not None, why


def _real_cupy() -> ModuleType:
    """CuPy, once its first kernels have run on a GPU; else a clear error saying what is missing."""
    cupy, why = _probed()
    if cupy is None:
        raise RuntimeError(
            f"device 'cuda': {why} (or set {SIMULATE_ENV}=1 to test the GPU code path on the "
            "simulated CuPy)"
        )
    return cupy


def _simulated_cupy() -> ModuleType:
    """The simulated CuPy, announced once on stderr so nobody mistakes it for a GPU."""
    global _announced
    import importlib

    if not _announced:
        _announced = True
        print(
            f"minidl: {SIMULATE_ENV}=1: device 'cuda' is the SIMULATED CuPy "
            "(NumPy on the CPU behind CuPy's rules), not a GPU; use it to test, never to time.",
            file=sys.stderr,
        )
    return importlib.import_module(_SIMULATION)


def simulation_requested() -> bool:
    """True when ``MINIDL_SIMULATE_CUDA`` asks for the simulated CuPy (set and not "0")."""
    return os.environ.get(SIMULATE_ENV, "") not in ("", "0")


def import_cupy() -> ModuleType:
    """The array module of device "cuda": the simulation when asked for, else CuPy on a GPU.

    ``MINIDL_SIMULATE_CUDA=1`` selects the simulated CuPy (``minidl.testing.cupy_sim``), even where
    a GPU exists (the variable is an explicit request); without it a missing CuPy, GPU or CUDA
    library is a clear error.
    """
    global _active_gpu_module
    if _forced_gpu_module is not None:
        return _forced_gpu_module
    _active_gpu_module = _simulated_cupy() if simulation_requested() else _real_cupy()
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
    """True when CuPy runs its first kernels on a real GPU (the simulation does not count)."""
    return gpu_status()[0]


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
