"""Which code an op runs: its textbook path, or the fast CPU path beside it. Decided here.

conv2d, the pools and batch norm each have a textbook path (what a learner reads, and what CuPy
runs) and a fast path for NumPy arrays (channels-last chunks or blocks on a thread pool). Each op
picks in one visible line, ``fast = use_fast_path(x, path)``, and that function is the only
place the choice is made:

- ``MINIDL_TEXTBOOK=1`` in the environment (read at every call), or
- ``with minidl.textbook():`` around the code

makes every op take its textbook path, so a learner can step through it on a laptop, and the
whole test suite can be run on it. ``minidl.textbook(False)`` forces the fast paths back inside
its block (the fast paths' own tests use it), whatever the environment says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

TEXTBOOK_ENV = "MINIDL_TEXTBOOK"
_forced: ContextVar[bool | None] = ContextVar("minidl_textbook", default=None)


class FastPath(Protocol):
    """A fast path's module: says which arrays it serves."""

    def applies(self, x: Any) -> bool: ...


def textbook_requested() -> bool:
    """True when the ops must take their textbook paths (a ``textbook()`` block, else the
    environment variable ``MINIDL_TEXTBOOK`` set and not "0")."""
    forced = _forced.get()
    if forced is not None:
        return forced
    return os.environ.get(TEXTBOOK_ENV, "") not in ("", "0")


@contextlib.contextmanager
def textbook(enabled: bool = True) -> Iterator[None]:
    """Within the block every op takes its textbook path (``enabled=False``: its fast path
    wherever one applies, whatever ``MINIDL_TEXTBOOK`` says). Blocks nest; per thread."""
    token = _forced.set(enabled)
    try:
        yield
    finally:
        _forced.reset(token)


def use_fast_path(x: Any, path: FastPath) -> bool:
    """True when ``x`` takes ``path``: the path serves it and the textbook was not asked for."""
    return not textbook_requested() and path.applies(x)
