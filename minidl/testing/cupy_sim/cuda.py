"""``cupy.cuda`` simulated: one device, streams and events that time on the host clock.

Work in the simulation is synchronous, so ``synchronize`` has nothing to wait for; it is counted
in ``stats.syncs`` so tests can see where code would stall a real GPU.
"""

from __future__ import annotations

import time as _time
from types import SimpleNamespace as _Namespace
from typing import cast as _cast

from ._array import _count
from ._names import API as _API
from ._names import no_such_name as _no_such_name
from ._names import not_simulated as _not_simulated

_NAMES = frozenset(_API["cuda"])
_NAME = b"minidl cupy-sim (host memory)"


def _synchronize() -> None:
    _count("syncs")


class Device:
    """The one simulated GPU, ``Device(0)``."""

    def __init__(self, device: int | None = None):
        if device not in (None, 0):
            raise ValueError(f"cupy-sim has one device (0), got device={device!r}")
        self.id = 0

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def use(self) -> None:
        return None

    def synchronize(self) -> None:
        _synchronize()

    @property
    def compute_capability(self) -> str:
        return "90"

    @property
    def mem_info(self) -> tuple[int, int]:
        total = 16 << 30
        return total - MemoryPool.default.used_bytes(), total

    def __repr__(self) -> str:
        return "<CUDA Device 0 (simulated)>"


class Stream:
    """A stream; all simulated work has finished by the time a call returns."""

    # the default stream (set below the class), a class attribute as CuPy's: an instance's
    # ``null`` is that stream too (no annotation: the class's names are CuPy's, tested)
    null = _cast("Stream", None)

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False):
        """CuPy's arguments; every simulated stream behaves alike."""

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def use(self) -> Stream:
        return self

    def synchronize(self) -> None:
        _synchronize()

    @property
    def done(self) -> bool:
        return True


Stream.null = Stream(null=True)


class Event:
    """A timing event on the host's monotonic clock."""

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess=False):
        self._t: float | None = None

    def record(self, stream: Stream | None = None) -> None:
        self._t = _time.perf_counter()

    def synchronize(self) -> None:
        _synchronize()

    @property
    def done(self) -> bool:
        return self._t is not None


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    """Milliseconds between two recorded events, as CuPy's."""
    if start_event._t is None or end_event._t is None:
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event was not recorded")
    return (end_event._t - start_event._t) * 1e3


def get_current_stream() -> Stream:
    return Stream.null


def get_device_id() -> int:
    return 0


def is_available() -> bool:
    return True


class MemoryPool:
    """The device memory pool: bytes held by live simulated arrays (their NumPy buffers)."""

    default: MemoryPool

    def used_bytes(self) -> int:
        from ._array import device_bytes

        return device_bytes()

    def total_bytes(self) -> int:
        return self.used_bytes()

    def free_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream: Stream | None = None) -> None:
        return None

    def n_free_blocks(self) -> int:
        return 0

    def get_limit(self) -> int:
        return 0

    def set_limit(self, size: int | None = None, fraction: float | None = None) -> None:
        return None


class PinnedMemoryPool:
    default: PinnedMemoryPool

    def free_all_blocks(self) -> None:
        return None

    def n_free_blocks(self) -> int:
        return 0


MemoryPool.default = MemoryPool()
PinnedMemoryPool.default = PinnedMemoryPool()


def _get_device_properties(device: int) -> dict:
    Device(device)
    return {"name": _NAME, "totalGlobalMem": 16 << 30, "major": 9, "minor": 0}


runtime = _Namespace(
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    getDeviceProperties=_get_device_properties,
    deviceSynchronize=_synchronize,
    runtimeGetVersion=lambda: 12000,
    driverGetVersion=lambda: 12000,
)


def __getattr__(name: str):
    if name not in _NAMES:
        raise _no_such_name("cupy.cuda", name)
    raise _not_simulated(f"cuda.{name}")
