"""How many threads minidl's pool and OpenBLAS use, re-decided as the machine's load changes.

On an idle machine a training step runs fastest with every core busy: minidl's pool
(``parallel``) splits the memory passes, OpenBLAS splits each matrix product. When other programs
keep cores busy, threads that must meet (OpenBLAS's threads after each product, the pool's at the
end of each pass) wait for one another while the scheduler runs someone else: measured on 2
cores beside two busy processes, a step took 15x its idle time, and 1.2-1.6x with one OpenBLAS
thread (bench/README.md, "Under load"). So ``ThreadPolicy`` watches how much CPU time *other*
programs take and gives them their cores: with ``others`` cores' worth in use, it keeps
``cpu_count - round(others)`` threads (at least one, at most the maximum), for the pool and for
OpenBLAS alike. Other programs' share is the machine's busy time (``/proc/stat``: everything
but idle and I/O wait) less this process's own CPU time (``os.times``), over the last
``RECHECK_S`` seconds; ``threads()`` re-samples at most that often, so it is cheap to call before
every pass. After a pause longer than ``STALE_S`` (between training and evaluation, or while
another program took its turn in a benchmark) the counts stay as they were until a fresh sample
says otherwise: what others did while this process was not computing says little.

Knobs: ``MINIDL_THREADS=N`` fixes the pool at N threads and ``OPENBLAS_NUM_THREADS=N`` (or
``OMP_NUM_THREADS``) fixes OpenBLAS's; a fixed count is left alone, except inside a convolution's
chunk loop, whose GEMMs run one per pool thread with OpenBLAS at one thread
(``parallel.gemm_blocks``). OpenBLAS is reached through
its C API (``openblas_set_num_threads``, under the names NumPy's and SciPy's wheels give it) in
the libraries this process has loaded; without ``/proc`` (not Linux) or without OpenBLAS,
nothing adapts and everything runs as configured.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable

CPUS = os.cpu_count() or 1
RECHECK_S = 0.5  # how often the load is sampled; a step takes a second or more
STALE_S = 2.0  # a longer gap since the last sample (the program paused): start a new sample

# /proc/stat's first line: cpu user nice system idle iowait irq softirq steal ...; busy is all but
# idle and iowait (steal too: a hypervisor that takes a core is another program here)
_IDLE_FIELDS = (3, 4)


def machine_busy_s(stat_text: str) -> float:
    """Seconds of CPU time all programs have used since boot, from ``/proc/stat``'s text."""
    fields = stat_text.split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        raise ValueError("/proc/stat: the first line is not the 'cpu' total")
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(t for i, t in enumerate(ticks) if i not in _IDLE_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


def read_cpu_times() -> tuple[float, float]:
    """(the machine's busy CPU seconds, this process's CPU seconds, all threads)."""
    with open("/proc/stat") as f:
        machine = machine_busy_s(f.read(4096))
    own = os.times()
    return machine, own.user + own.system


def threads_for(others: float, maximum: int, cpus: int | None = None) -> int:
    """Threads to use when other programs keep ``others`` cores' worth busy: the cores they
    leave (of ``cpus``, by default ``CPUS``), at least 1 and at most ``maximum``."""
    return max(1, min(maximum, (cpus or CPUS) - int(others + 0.5)))


class ThreadPolicy:
    """The thread counts for the pool (``threads()``) and OpenBLAS, adapted to the load.

    ``maximum``: the pool's count on an idle machine; ``adapt``: False fixes it (MINIDL_THREADS
    was given). ``blas``: an ``OpenBLAS`` (or None): its count follows the pool's, capped at its
    own initial count. ``read_cpu`` and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        maximum: int,
        adapt: bool = True,
        blas: OpenBLAS | None = None,
        read_cpu: Callable[[], tuple[float, float]] = read_cpu_times,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.maximum, self.adapt, self.blas = maximum, adapt, blas
        self.read_cpu, self.clock = read_cpu, clock
        self.current = maximum
        self.others = 0.0  # cores' worth other programs used in the last interval
        self._last: tuple[float, float, float] | None = None  # (clock, machine s, own s)

    def threads(self) -> int:
        """The pool's thread count now; re-samples the load when ``RECHECK_S`` have passed
        (and then sets OpenBLAS's count to match)."""
        if not self.adapt and self.blas is None:
            return self.current
        now = self.clock()
        if self._last is not None and now - self._last[0] < RECHECK_S:
            return self.current
        try:
            machine, own = self.read_cpu()
        except (OSError, ValueError):  # no /proc: run as configured
            self.adapt, self.blas = False, None
            return self.current
        if self._last is not None and now - self._last[0] <= STALE_S:
            wall = now - self._last[0]
            self.others = max(0.0, (machine - self._last[1]) - (own - self._last[2])) / wall
            wanted = threads_for(self.others, self.maximum)
            if self.adapt:
                self.current = wanted
            if self.blas is not None:
                self.blas.set(min(self.blas.initial, wanted))
        self._last = (now, machine, own)
        return self.current


class OpenBLAS:
    """OpenBLAS's thread count, through its C API in a library this process has loaded."""

    NAMES = ("openblas_", "scipy_openblas_")  # plain builds; NumPy's and SciPy's wheels
    SUFFIXES = ("", "64_", "_64")  # 32-bit-index builds; the ILP64 builds' symbol suffixes

    def __init__(self, set_threads: Callable[[int], None], get_threads: Callable[[], int]):
        self._set, self._get = set_threads, get_threads
        self.initial = self.count = get_threads()

    def set(self, n: int) -> None:
        if n != self.count:
            self._set(n)
            self.count = n

    @classmethod
    def find(cls, maps: str = "/proc/self/maps") -> OpenBLAS | None:
        """The first OpenBLAS among the loaded libraries (by path), or None."""
        try:
            with open(maps) as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
        except OSError:
            return None
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for name in cls.NAMES:
                for suffix in cls.SUFFIXES:
                    setter = getattr(lib, f"{name}set_num_threads{suffix}", None)
                    getter = getattr(lib, f"{name}get_num_threads{suffix}", None)
                    if setter is not None and getter is not None:
                        setter.argtypes, setter.restype = [ctypes.c_int], None
                        getter.argtypes, getter.restype = [], ctypes.c_int
                        return cls(setter, getter)
        return None


def blas_is_fixed(environ=os.environ) -> bool:
    """Whether the user fixed OpenBLAS's thread count in the environment."""
    names = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    return any(name in environ for name in names)
