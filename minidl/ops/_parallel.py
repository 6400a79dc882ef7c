"""Split a memory-bound pass over the batch axis across a small thread pool.

NumPy runs one copy or ufunc on one core, but it releases the GIL while doing so; two threads each
working on half of the batch keep both cores of a small machine busy during the passes that
dominate a convolutional network's time (im2col gathers, col2im scatters, layout transposes,
pooling). BLAS calls are left alone: they are threaded already.

On the GPU (CuPy) a kernel already uses the whole device, so ``parallel_batches`` simply calls the
worker once over the whole range.

How many threads a pass gets is ``policy.threads()`` (``_threads``): all ``WORKERS`` on an idle
machine, fewer while other programs keep cores busy (threads that wait for each other on a shared
machine made a step 15x slower); the same call keeps OpenBLAS's thread count in step.
``MINIDL_THREADS=N`` fixes the pool at N threads.

``WORKERS``, ``_MIN_ELEMENTS``, ``policy`` and the pool are module globals read on every call (never
bound at import by the callers), so tests can force two threads and tiny passes
(tests/test_fast_paths.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._threads import OpenBLAS, ThreadPolicy, blas_is_fixed

WORKERS = max(1, min(int(os.environ.get("MINIDL_THREADS", os.cpu_count() or 1)), 8))
_MIN_ELEMENTS = 1 << 16  # below this, thread hand-off costs more than it saves
_pool: ThreadPoolExecutor | None = None
policy: ThreadPolicy | None = None  # made on the first pass, when NumPy's OpenBLAS is loaded


def _get_policy() -> ThreadPolicy:
    global policy
    if policy is None:
        blas = None if blas_is_fixed() else OpenBLAS.find()
        policy = ThreadPolicy(WORKERS, adapt="MINIDL_THREADS" not in os.environ, blas=blas)
    return policy


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="minidl")
    return _pool


def parallel_batches(xp, n: int, work: Callable[[int, int], None], elements: int = 0) -> None:
    """Call ``work(lo, hi)`` on contiguous chunks covering ``range(n)``, in parallel on the CPU.

    ``elements`` is the size of the pass (to skip threading for small ones). ``work`` must only
    write to the rows ``lo:hi`` of its outputs, so chunks never race.
    """
    if xp is not np:
        work(0, n)
        return
    chunks = min(_get_policy().threads(), WORKERS, n)
    if chunks <= 1 or elements < _MIN_ELEMENTS:
        work(0, n)
        return
    bounds = [n * k // chunks for k in range(chunks + 1)]
    futures = [_get_pool().submit(work, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()


def parallel_blocks(xp, n: int, step: int, work: Callable[[int, int], None], elements: int = 0):
    """Call ``work(lo, hi)`` on consecutive blocks of at most ``step`` items covering ``range(n)``,
    the blocks shared out over the thread pool (each thread walks its blocks in order): for passes
    that should run block by block while a block's data sits in cache."""
    starts = range(0, n, step)

    def run(a, b):
        for lo in starts[a:b]:
            work(lo, min(n, lo + step))

    parallel_batches(xp, len(starts), run, elements)
