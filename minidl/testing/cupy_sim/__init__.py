"""A simulated CuPy: CuPy's API and rules on top of NumPy, for testing minidl's GPU path anywhere.

No GPU machine is needed: arrays live in host memory, but behind CuPy's border (see ``_array``).
Only names real CuPy has exist (from the committed snapshot ``cupy_api.json``); host arrays mixed
into device computations raise; implicit conversion to NumPy raises; transfers and
synchronisations are counted in ``stats``; the random stream differs from NumPy's; assignments
that would scatter duplicates raise. Select it with ``MINIDL_SIMULATE_CUDA=1`` (device "cuda"
then uses it when no GPU is present) or use it directly in tests: ``xp = minidl.testing.cupy_sim``.

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
