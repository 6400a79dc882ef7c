"""The list of gradient checks every op registers, so the check table grows with the library.

An op module registers a *case factory* next to its Function::

    @register_gradcheck("add")
    def _cases(rng):
        yield GradCase("broadcast", lambda a, b: a + b, [rng.standard_normal((3, 4)),
                                                          rng.standard_normal(4)])

``python -m minidl.gradcheck`` and ``tests/ops/test_gradcheck_ops.py`` run every registered case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class GradCase:
    """One gradient check: ``fn(*tensors) -> Tensor`` at float64 ``inputs``.

    Floating inputs are differentiated; integer inputs (class targets) are passed as constants.
    ``tol`` bounds the max relative error; ``eps`` is the central-difference step.
    """

    label: str
    fn: Callable[..., Any]
    inputs: Sequence[np.ndarray]
    tol: float = 1e-6
    eps: float = 1e-6
    op: str = field(default="", init=False)

    @property
    def shapes(self) -> str:
        return " ".join("x".join(map(str, a.shape)) or "scalar" for a in self.inputs)


_FACTORIES: dict[str, list[Callable[[np.random.Generator], Iterable[GradCase]]]] = {}


def register_gradcheck(op: str) -> Callable:
    """Decorator: register a factory ``rng -> iterable of GradCase`` for the op named ``op``."""

    def decorate(factory: Callable[[np.random.Generator], Iterable[GradCase]]) -> Callable:
        _FACTORIES.setdefault(op, []).append(factory)
        return factory

    return decorate


def registered_ops() -> list[str]:
    return sorted(_FACTORIES)


def gradcheck_cases(seed: int = 0) -> list[GradCase]:
    """Every registered case, built with a fixed seed (same inputs on every run)."""
    cases = []
    for op in registered_ops():
        for i, factory in enumerate(_FACTORIES[op]):
            rng = np.random.default_rng([seed, i, sum(map(ord, op))])
            for case in factory(rng):
                case.op = op
                cases.append(case)
    return cases


def tie_free(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 0.1) -> np.ndarray:
    """A random permutation of well-separated values: no ties, no kinks near each other
    (for max, max pooling and ReLU checks, where central differences must not cross a kink)."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * gap + gap / 2


__all__ = ["GradCase", "register_gradcheck", "registered_ops", "gradcheck_cases", "tie_free"]
