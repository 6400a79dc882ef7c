"""``cupy.lib``: only ``stride_tricks`` (CuPy's signatures: no ``writeable``, no ``subok``)."""

from __future__ import annotations

from types import SimpleNamespace

from numpy.lib import stride_tricks as _np_tricks

from ._array import ndarray, unwrap, wrap


def as_strided(x: ndarray, shape=None, strides=None) -> ndarray:
    """A strided view of a device array (the caller answers for staying inside its buffer)."""
    if not isinstance(x, ndarray):
        raise TypeError(f"as_strided: x must be a cupy.ndarray, got {type(x)}")
    return wrap(_np_tricks.as_strided(unwrap(x), shape=shape, strides=strides))


def sliding_window_view(x: ndarray, window_shape, axis=None, *, subok=False, writeable=False):
    if not isinstance(x, ndarray):
        raise TypeError(f"sliding_window_view: x must be a cupy.ndarray, got {type(x)}")
    return wrap(_np_tricks.sliding_window_view(unwrap(x), window_shape, axis, writeable=writeable))


stride_tricks = SimpleNamespace(as_strided=as_strided, sliding_window_view=sliding_window_view)
