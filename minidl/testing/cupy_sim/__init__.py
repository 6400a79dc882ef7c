"""A simulated CuPy: CuPy's API and rules on top of NumPy, for testing minidl's GPU path anywhere.

No GPU machine is needed: arrays live in host memory, but behind CuPy's border (see ``_array``).
Only names real CuPy has exist (from the committed snapshot ``cupy_api.json``); host arrays mixed
into device computations raise; implicit conversion to NumPy raises; the random stream differs
from NumPy's. As CuPy 14.2 (its ``_core/_kernel.pyx`` and ``_routines_indexing.pyx``): ufuncs take
only ``out``, ``dtype`` and ``casting``, refuse lists, and write C-contiguous outputs; ``at``,
``reduce``, ``accumulate`` and ``reduceat`` exist only for the ufuncs CuPy gives them; a slice
assigned a list raises. ``stats`` counts transfers, kernel launches (every ufunc call, reduction,
copy, matmul and gather; views launch nothing) and synchronisations: every value read back, and
every result whose size is data (a boolean mask, ``nonzero``, ``unique``, one-argument ``where``).

Deliberately stricter than CuPy: an assignment through an integer index array that would write one
element twice raises (CuPy leaves the element undefined, NumPy keeps the last value).

Select it with ``MINIDL_SIMULATE_CUDA=1`` (device "cuda" then uses it, GPU or not) or use it
directly in tests: ``xp = minidl.testing.cupy_sim``.

It tests that code *could* run on CuPy; it says nothing about GPU speed or CUDA kernels.
"""

from __future__ import annotations

from . import _namespace
from ._array import ndarray, stats
from ._names import API as _API

__all__ = ["ndarray", "stats"]  # stats: the simulation's own counters for tests (not CuPy's)

__version__ = _API["cupy_version"] + "+minidl-sim"


def __getattr__(name: str):
    value = _namespace.lookup(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(_API["cupy"])
