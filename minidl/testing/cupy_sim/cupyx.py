"""``cupyx``: the scatter operations CuPy offers for indices that repeat."""

from __future__ import annotations

import numpy as _np

from ._array import ndarray as _ndarray
from ._array import unwrap as _unwrap


def _scatter(ufunc):
    def scatter(a: _ndarray, slices, value) -> None:
        if not isinstance(a, _ndarray):
            raise TypeError(f"scatter target must be a cupy.ndarray, got {type(a)}")
        ufunc.at(a._a, _unwrap(slices), _unwrap(value))

    return scatter


scatter_add = _scatter(_np.add)
scatter_max = _scatter(_np.maximum)
scatter_min = _scatter(_np.minimum)
