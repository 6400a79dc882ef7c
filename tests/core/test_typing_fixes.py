"""Bugs the type checker found (``mypy``, configured in pyproject.toml): each test fails without
its fix."""

from __future__ import annotations

from minidl.testing import cupy_sim as cp


def test_a_sim_streams_null_is_the_null_stream_as_cupys():
    """``Stream.null`` is a class attribute in CuPy, so an instance's ``null`` is that stream; the
    simulation's instances shadowed it with the ``null`` flag they were built with (a bool)."""
    assert cp.cuda.Stream().null is cp.cuda.Stream.null
    assert cp.cuda.Stream.null.null is cp.cuda.Stream.null
    assert cp.cuda.get_current_stream() is cp.cuda.Stream.null
