"""Regenerate ``cupy_api.json``: the names real CuPy has, which the simulated CuPy may offer.

Run where CuPy imports (no GPU needed: importing CuPy and reading its names needs no driver)::

    pip install cupy-cuda12x    # or cupy-cuda13x
    python -m minidl.testing.snapshot_cupy_api

The simulation (``cupy_sim.py``) refuses every name that is not in the snapshot, so code tested on
it cannot lean on a NumPy name that CuPy lacks (``Generator.permutation``, ``ndarray.__index__``).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("cupy_api.json")


def _public(obj) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def _kind(cupy, value) -> str:
    if isinstance(value, cupy.ufunc):
        return "ufunc"
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    if callable(value):
        return "function"
    return "value"


def snapshot() -> dict:
    """The names of CuPy's namespaces that minidl's simulation mirrors."""
    import cupy
    import cupyx

    return {
        "cupy_version": cupy.__version__,
        "cupy": {name: _kind(cupy, getattr(cupy, name)) for name in _public(cupy)},
        "ndarray": sorted(dir(cupy.ndarray)),
        "ufunc": _public(cupy.add),
        "random": _public(cupy.random),
        "random.Generator": _public(cupy.random.Generator),
        "random.RandomState": _public(cupy.random.RandomState),
        "lib.stride_tricks": _public(cupy.lib.stride_tricks),
        "cupyx": _public(cupyx),
        "cuda": _public(cupy.cuda),
        "cuda.runtime": _public(cupy.cuda.runtime),
        "cuda.Device": _public(cupy.cuda.Device),
        "cuda.Stream": _public(cupy.cuda.Stream),
        "cuda.Event": _public(cupy.cuda.Event),
        "cuda.MemoryPool": _public(cupy.cuda.MemoryPool),
    }


def main() -> None:
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
