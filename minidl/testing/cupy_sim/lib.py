"""``cupy.lib``: only ``stride_tricks`` (CuPy's signatures: no ``writeable``, no ``subok``)."""

from __future__ import annotations

from types import SimpleNamespace as _Namespace

from numpy.lib import stride_tricks as _np_tricks

from ._array import ndarray as _ndarray
from ._array import unwrap as _unwrap
from ._array import wrap as _wrap


def _as_strided(x: _ndarray, shape=None, strides=None) -> _ndarray:
    """A strided view of a device array (the caller answers for staying inside its buffer)."""
    if not isinstance(x, _ndarray):
        raise TypeError(f"as_strided: x must be a cupy.ndarray, got {type(x)}")
    return _wrap(_np_tricks.as_strided(_unwrap(x), shape=shape, strides=strides))


def _sliding_window_view(x: _ndarray, window_shape, axis=None, *, subok=False, writeable=False):
    if not isinstance(x, _ndarray):
        raise TypeError(f"sliding_window_view: x must be a cupy.ndarray, got {type(x)}")
    view = _np_tricks.sliding_window_view(_unwrap(x), window_shape, axis, writeable=writeable)
    return _wrap(view)


stride_tricks = _Namespace(as_strided=_as_strided, sliding_window_view=_sliding_window_view)
