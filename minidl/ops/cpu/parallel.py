"""Split a memory-bound pass over the batch axis across a small thread pool.

NumPy runs one copy or ufunc on one core, but it releases the GIL while doing so; two threads each
working on half of the batch keep both cores of a small machine busy during the passes that
dominate a convolutional network's time (im2col gathers, col2im scatters, layout transposes,
pooling). BLAS calls are left alone: they are threaded already.

On the GPU (CuPy) a kernel already uses the whole device, so ``parallel_batches`` simply calls the
worker once over the whole range.

How many threads a pass gets is ``policy.threads()`` (``threads``): all ``WORKERS`` on an idle
machine, fewer while other programs keep cores busy (threads that wait for each other on a shared
machine made a step 15x slower); the same call keeps OpenBLAS's thread count in step.
``MINIDL_THREADS=N`` fixes the pool at N threads.

``WORKERS``, ``_MIN_ELEMENTS``, ``policy`` and the pool are module globals read on every call (never
bound at import by the callers), so tests can force two threads and tiny passes
(tests/ops/test_fast_paths.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from .threads import OpenBLAS, ThreadPolicy, blas_is_fixed

WORKERS = max(1, min(int(os.environ.get("MINIDL_THREADS", os.cpu_count() or 1)), 8))
_MIN_ELEMENTS = 1 << 16  # below this, thread hand-off costs more than it saves
_pool: ThreadPoolExecutor | None = None
policy: ThreadPolicy | None = None  # made on the first pass, when NumPy's OpenBLAS is loaded


def applies(x) -> bool:
    """True for NumPy arrays: threads split NumPy's single-core passes (a CuPy kernel already
    uses the whole device)."""
    return type(x) is np.ndarray


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


def parallel_batches(
    xp, n: int, work: Callable[[int, int], None], elements: int = 0, threads: int | None = None
) -> None:
    """Call ``work(lo, hi)`` on contiguous chunks covering ``range(n)``, in parallel on the CPU.

    ``elements`` is the size of the pass (to skip threading for small ones). ``work`` must only
    write to the rows ``lo:hi`` of its outputs, so chunks never race. ``threads``: the count
    already decided by the caller (by default the policy's count now).
    """
    if xp is not np:
        work(0, n)
        return
    chunks = min(_get_policy().threads() if threads is None else threads, WORKERS, n)
    if chunks <= 1 or elements < _MIN_ELEMENTS:
        work(0, n)
        return
    bounds = [n * k // chunks for k in range(chunks + 1)]
    futures = [_get_pool().submit(work, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
    for f in futures:
        f.result()


def parallel_blocks(
    xp,
    n: int,
    step: int,
    work: Callable[[int, int], None],
    elements: int = 0,
    threads: int | None = None,
):
    """Call ``work(lo, hi)`` on consecutive blocks of at most ``step`` items covering ``range(n)``,
    the blocks shared out over the thread pool (each thread walks its blocks in order): for passes
    that should run block by block while a block's data sits in cache."""
    starts = range(0, n, step)

    def run(a, b):
        for lo in starts[a:b]:
            work(lo, min(n, lo + step))

    parallel_batches(xp, len(starts), run, elements, threads)


# OpenBLAS for gemm_blocks, found on first use (False: not looked for yet; None: not found)
_blas_handle: OpenBLAS | None | Literal[False] = False


def _blas() -> OpenBLAS | None:
    """The loaded OpenBLAS: the policy's when it adapts one, else a handle of our own."""
    global _blas_handle
    adapted = _get_policy().blas
    if adapted is not None:
        return adapted
    if _blas_handle is False:
        _blas_handle = OpenBLAS.find()
    return _blas_handle


def gemm_blocks(xp, n: int, step: int, work: Callable[[int, int], None], elements: int = 0):
    """``parallel_blocks`` for work that runs matrix products: each thread runs its blocks'
    products itself, single-threaded (OpenBLAS is set to one thread for the call, then back).

    For the small products of a narrow network's convolution chunks, one thread per product and
    the threads side by side beat every product split over all threads in turn: no hand-off and
    no wait per product, and each block's data stays in its own core's cache (measured: a 3x3
    convolution's forward of 24 -> 32 channels at 32x32, batch 128, 2.3x as fast on 2 cores).
    The products are single-threaded even when the blocks run in turn (a busy machine, a single
    block), so their rounding never depends on a thread count. Work must not call the pool
    itself. Another BLAS than OpenBLAS (none found) is left as it is.
    """
    if xp is not np:
        work(0, n)
        return
    threads = _get_policy().threads()  # decided first: a later re-sample would reset OpenBLAS
    with _single_threaded_blas():
        parallel_blocks(xp, n, step, work, elements, threads=threads)


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """OpenBLAS at one thread inside the block, at its previous count after (if it was found)."""
    blas = _blas()
    if blas is None:
        yield
        return
    before = blas.count
    blas.set(1)
    try:
        yield
    finally:
        blas.set(before)
