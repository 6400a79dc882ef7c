"""``cupy.random`` simulated: CuPy's names, and a stream that is *not* NumPy's.

CuPy's random numbers differ from NumPy's for the same seed (and across CuPy versions), so code
must not expect equal streams on both devices: the simulation draws from Philox, not NumPy's
default generators, to make any such expectation fail. ``default_rng`` returns CuPy's smaller
``Generator`` (no ``permutation``, ``shuffle``, ``choice`` or ``normal``).
"""

from __future__ import annotations

from typing import SupportsInt as _SupportsInt

import numpy as _np

from ._array import ndarray as _ndarray
from ._array import unwrap as _unwrap
from ._array import wrap as _wrap
from ._names import API as _API
from ._names import no_such_name as _no_such_name
from ._names import not_simulated as _not_simulated

_NAMES = frozenset(_API["random"])
_GENERATOR_NAMES = frozenset(_API["random.Generator"])


def _philox(seed: _SupportsInt | None) -> _np.random.Generator:
    return _np.random.Generator(_np.random.Philox(None if seed is None else int(seed) + 0x5EED))


def _size(args: tuple) -> tuple[int, ...]:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


class RandomState:
    """CuPy's legacy generator (``cupy.random.seed``, ``rand``, ``randn``, ``permutation``...)."""

    def __init__(self, seed: _SupportsInt | None = None):
        self._g = _philox(seed)

    def seed(self, seed: _SupportsInt | None = None) -> None:
        self._g = _philox(seed)

    def rand(self, *size, dtype=float) -> _ndarray:
        return _wrap(self._g.random(_size(size)).astype(dtype))

    def randn(self, *size, dtype=float) -> _ndarray:
        return _wrap(self._g.standard_normal(_size(size)).astype(dtype))

    def random_sample(self, size=None, dtype=float) -> _ndarray:
        return _wrap(_np.asarray(self._g.random(size)).astype(dtype))

    random = ranf = sample = random_sample

    def standard_normal(self, size=None, dtype=float) -> _ndarray:
        return _wrap(_np.asarray(self._g.standard_normal(size)).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float) -> _ndarray:
        return _wrap(_np.asarray(self._g.uniform(_unwrap(low), _unwrap(high), size)).astype(dtype))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float) -> _ndarray:
        return _wrap(_np.asarray(self._g.normal(_unwrap(loc), _unwrap(scale), size)).astype(dtype))

    def randint(self, low, high=None, size=None, dtype=int) -> _ndarray:
        return _wrap(_np.asarray(self._g.integers(low, high, size)).astype(dtype))

    def permutation(self, num) -> _ndarray:
        if isinstance(num, _np.ndarray):
            _unwrap(num)  # raises: a host array
        return _wrap(self._g.permutation(_unwrap(num)))

    def shuffle(self, a: _ndarray) -> None:
        if not isinstance(a, _ndarray):
            raise TypeError(f"The array must be cupy.ndarray, got {type(a)}")
        self._g.shuffle(a._a)

    def choice(self, a, size=None, replace=True, p=None) -> _ndarray:
        return _wrap(_np.asarray(self._g.choice(_unwrap(a), size, replace, _unwrap(p))))


class Generator:
    """CuPy's ``Generator``, only the methods CuPy's has."""

    def __init__(self, seed: _SupportsInt | None = None):
        self._g = _philox(seed)

    def random(self, size=None, dtype=_np.float64, out=None) -> _ndarray:
        return self._fill(_np.asarray(self._g.random(size)).astype(dtype), out)

    def standard_normal(self, size=None, dtype=_np.float64, out=None) -> _ndarray:
        return self._fill(_np.asarray(self._g.standard_normal(size)).astype(dtype), out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64) -> _ndarray:
        return _wrap(_np.asarray(self._g.uniform(_unwrap(low), _unwrap(high), size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False) -> _ndarray:
        return _wrap(_np.asarray(self._g.integers(low, high, size, dtype, endpoint)))

    @staticmethod
    def _fill(values: _np.ndarray, out: _ndarray | None) -> _ndarray:
        if out is None:
            return _wrap(values)
        out._a[...] = values
        return out

    def __getattr__(self, name: str):
        if name in _GENERATOR_NAMES:
            raise _not_simulated(f"random.Generator.{name}")
        raise AttributeError(f"'cupy.random.Generator' has no attribute {name!r} (CuPy's lacks it)")


def default_rng(seed: _SupportsInt | None = None) -> Generator:
    return Generator(seed)


_global = RandomState()


def seed(seed: _SupportsInt | None = None) -> None:
    _global.seed(seed)


def get_random_state() -> RandomState:
    return _global


def __getattr__(name: str):
    if name not in _NAMES:
        raise _no_such_name("cupy.random", name)
    if hasattr(RandomState, name):
        return getattr(_global, name)
    raise _not_simulated(f"random.{name}")
