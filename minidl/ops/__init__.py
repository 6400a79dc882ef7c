"""Differentiable primitives, one family per module; importing this registers their checks."""

from . import activation, arithmetic, linalg, reduction, shape  # noqa: F401
