"""Which code an op runs: its textbook path, or the fast CPU path beside it. Decided here.

conv2d, the pools, batch norm and the channels-last concat each have a textbook path (what a
learner reads, and what CuPy runs) and a fast path for NumPy arrays in ``minidl.ops.cpu``
(channels-last chunks or blocks on a thread pool). Each op picks in one visible line,
``fast = fast_path(x, "conv_nhwc")``: the module ``minidl.ops.cpu.conv_nhwc`` when it serves
``x``, else None. That function is the only place the choice is made, and it imports the fast
module at its first use: code that runs on the textbook never loads the thread pool.

- ``MINIDL_TEXTBOOK=1`` in the environment (read at every call), or
- ``with minidl.textbook():`` around the code

makes every op take its textbook path, so a learner can step through it on a laptop, and the
whole test suite can be run on it. ``minidl.textbook(False)`` forces the fast paths back inside
its block (the fast paths' own tests use it), whatever the environment says.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

TEXTBOOK_ENV = "MINIDL_TEXTBOOK"
_forced: ContextVar[bool | None] = ContextVar("minidl_textbook", default=None)


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


def fast_path(x: Any, name: str) -> ModuleType | None:
    """The fast CPU path ``minidl.ops.cpu.<name>`` when it serves ``x`` (its ``applies(x)``)
    and the textbook was not asked for; else None: the op takes its textbook path."""
    if textbook_requested():
        return None
    path = importlib.import_module(f"{__package__}.cpu.{name}")
    return path if path.applies(x) else None
