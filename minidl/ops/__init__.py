"""Differentiable primitives, one family per module; importing this registers their checks."""

from . import (  # noqa: F401
    activation,
    arithmetic,
    conv,
    dropout,
    linalg,
    loss,
    norm,
    pool,
    reduction,
    shape,
)
