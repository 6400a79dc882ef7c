"""The names real CuPy has, from the committed snapshot (``snapshot_cupy_api.py`` writes it)."""

from __future__ import annotations

import json
from pathlib import Path

API: dict = json.loads((Path(__file__).parent.parent / "cupy_api.json").read_text())


def not_simulated(name: str) -> NotImplementedError:
    """The error for a name CuPy has but the simulation does not (yet) provide."""
    return NotImplementedError(
        f"cupy.{name} exists in CuPy {API['cupy_version']} but is not simulated by minidl's "
        "cupy-sim; add it to minidl/testing/cupy_sim if minidl needs it"
    )


def no_such_name(where: str, name: str) -> AttributeError:
    """The error for a name real CuPy does not have (NumPy may)."""
    return AttributeError(
        f"module '{where}' has no attribute {name!r} (not in CuPy {API['cupy_version']})"
    )
