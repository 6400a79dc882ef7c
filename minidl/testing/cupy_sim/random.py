"""``cupy.random`` simulated: CuPy's names, and a stream that is *not* NumPy's.

CuPy's random numbers differ from NumPy's for the same seed (and across CuPy versions), so code
must not expect equal streams on both devices: the simulation draws from Philox, not NumPy's
default generators, to make any such expectation fail. ``default_rng`` returns CuPy's smaller
``Generator`` (no ``permutation``, ``shuffle``, ``choice`` or ``normal``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._array import ndarray, unwrap, wrap
from ._names import API, no_such_name, not_simulated

_NAMES = frozenset(API["random"])
_GENERATOR_NAMES = frozenset(API["random.Generator"])


def _philox(seed: Any) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(None if seed is None else int(seed) + 0x5EED))


def _size(args: tuple) -> tuple[int, ...]:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


class RandomState:
    """CuPy's legacy generator (``cupy.random.seed``, ``rand``, ``randn``, ``permutation``...)."""

    def __init__(self, seed: Any = None):
        self._g = _philox(seed)

    def seed(self, seed: Any = None) -> None:
        self._g = _philox(seed)

    def rand(self, *size, dtype=float) -> ndarray:
        return wrap(self._g.random(_size(size)).astype(dtype))

    def randn(self, *size, dtype=float) -> ndarray:
        return wrap(self._g.standard_normal(_size(size)).astype(dtype))

    def random_sample(self, size=None, dtype=float) -> ndarray:
        return wrap(np.asarray(self._g.random(size)).astype(dtype))

    random = ranf = sample = random_sample

    def standard_normal(self, size=None, dtype=float) -> ndarray:
        return wrap(np.asarray(self._g.standard_normal(size)).astype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float) -> ndarray:
        return wrap(np.asarray(self._g.uniform(unwrap(low), unwrap(high), size)).astype(dtype))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float) -> ndarray:
        return wrap(np.asarray(self._g.normal(unwrap(loc), unwrap(scale), size)).astype(dtype))

    def randint(self, low, high=None, size=None, dtype=int) -> ndarray:
        return wrap(np.asarray(self._g.integers(low, high, size)).astype(dtype))

    def permutation(self, num) -> ndarray:
        if isinstance(num, np.ndarray):
            unwrap(num)  # raises: a host array
        return wrap(self._g.permutation(unwrap(num)))

    def shuffle(self, a: ndarray) -> None:
        if not isinstance(a, ndarray):
            raise TypeError(f"The array must be cupy.ndarray, got {type(a)}")
        self._g.shuffle(a._a)

    def choice(self, a, size=None, replace=True, p=None) -> ndarray:
        return wrap(np.asarray(self._g.choice(unwrap(a), size, replace, unwrap(p))))


class Generator:
    """CuPy's ``Generator``, only the methods CuPy's has."""

    def __init__(self, seed: Any = None):
        self._g = _philox(seed)

    def random(self, size=None, dtype=np.float64, out=None) -> ndarray:
        return self._fill(np.asarray(self._g.random(size)).astype(dtype), out)

    def standard_normal(self, size=None, dtype=np.float64, out=None) -> ndarray:
        return self._fill(np.asarray(self._g.standard_normal(size)).astype(dtype), out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64) -> ndarray:
        return wrap(np.asarray(self._g.uniform(unwrap(low), unwrap(high), size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False) -> ndarray:
        return wrap(np.asarray(self._g.integers(low, high, size, dtype, endpoint)))

    @staticmethod
    def _fill(values: np.ndarray, out: ndarray | None) -> ndarray:
        if out is None:
            return wrap(values)
        out._a[...] = values
        return out

    def __getattr__(self, name: str):
        if name in _GENERATOR_NAMES:
            raise not_simulated(f"random.Generator.{name}")
        raise AttributeError(f"'cupy.random.Generator' has no attribute {name!r} (CuPy's lacks it)")


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)


_global = RandomState()


def seed(seed: Any = None) -> None:
    _global.seed(seed)


def get_random_state() -> RandomState:
    return _global


def __getattr__(name: str):
    if name not in _NAMES:
        raise no_such_name("cupy.random", name)
    if hasattr(RandomState, name):
        return getattr(_global, name)
    raise not_simulated(f"random.{name}")
