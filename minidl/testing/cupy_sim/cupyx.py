"""``cupyx``: the scatter operations CuPy offers for indices that repeat."""

from __future__ import annotations

import numpy as np

from ._array import ndarray, unwrap


def _scatter(ufunc):
    def scatter(a: ndarray, slices, value) -> None:
        if not isinstance(a, ndarray):
            raise TypeError(f"scatter target must be a cupy.ndarray, got {type(a)}")
        ufunc.at(a._a, unwrap(slices), unwrap(value))

    return scatter


scatter_add = _scatter(np.add)
scatter_max = _scatter(np.maximum)
scatter_min = _scatter(np.minimum)
