"""The fast CPU paths against the textbook code, in the mode that matters: several chunks or
blocks, two threads.

conv2d (``conv_nhwc``), the pools (``pool_blocked``) and batch norm (``batchnorm_nhwc``) only
chunk, block and thread above sizes no unit test reaches. The ``shrunk`` fixture lowers every
threshold (conv chunk bytes, pool block bytes, batch norm block size, the thread pool's minimum
pass size) and forces two worker threads even on a one-core machine, so that small float64 inputs
go through several chunks and blocks on two threads; each test compares outputs and gradients with
the textbook path (what CuPy arrays run) and asserts, from what ``shrunk`` recorded, that the
route it means to test really ran.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers.fast_paths import LAYOUTS, as_layout, use_path

import googlenet as G
import minidl as md
import minidl.functional as F
from minidl.ops.cpu import batchnorm_nhwc, conv_nhwc, parallel, pool_blocked
from minidl.ops.cpu.threads import ThreadPolicy
from minidl.ops.dispatch import TEXTBOOK_ENV
from minidl.ops.layout import nchw_view, output_size
from minidl.ops.norm import BatchNorm

SHAPE = (5, 6, 9, 8)  # N, C, H, W: 5 images, so chunks and blocks of 2 end with a partial one


class Ran:
    """What the fast paths did, by phase ("forward", "backward", set by the test).

    ``tasks``: (phase, work function's name, thread id) per task the thread pool ran;
    ``chunks``: (phase, the batch ranges) per call of conv's ``_chunks``;
    ``blocks``: (phase, lo, hi) per block that pooling or batch norm worked on.
    """

    def __init__(self):
        self.phase = "forward"
        self.tasks, self.chunks, self.blocks = [], [], []

    def work(self, phase, function):
        """The threads, one per task, that ran ``phase``'s work defined in ``function`` (a
        function's name: the work callables are its local closures)."""
        return [t for p, name, t in self.tasks if p == phase and name.split(".")[0] == function]

    def threads(self, phase, function):
        """The distinct threads among ``work(phase, function)``."""
        return set(self.work(phase, function))

    def chunk_lists(self, phase):
        return [ranges for p, ranges in self.chunks if p == phase]

    def block_list(self, phase):
        return [(lo, hi) for p, lo, hi in self.blocks if p == phase]

    def clear(self):
        for record in (self.tasks, self.chunks, self.blocks):
            record.clear()


class PairedPool:
    """The thread pool with two real threads, each task first meeting its partner at a barrier.

    With two workers ``parallel_batches`` hands out every threaded pass as two tasks, so both halves
    of each pass provably run at the same time on two threads, whatever the machine's core count or
    load (a pass whose halves do not reach the barrier together fails the test with
    BrokenBarrierError instead of passing on one thread)."""

    def __init__(self, ran):
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="minidl-test")
        self.barrier = threading.Barrier(2, timeout=20)
        self.ran = ran

    def submit(self, fn, *args):
        phase = self.ran.phase

        def task():
            self.barrier.wait()
            self.ran.tasks.append((phase, fn.__qualname__, threading.get_ident()))
            return fn(*args)

        return self.pool.submit(task)


@pytest.fixture
def shrunk(monkeypatch):
    """Every fast-path threshold shrunk, two worker threads forced; yields the ``Ran`` record."""
    ran = Ran()
    pool = PairedPool(ran)
    monkeypatch.setenv(TEXTBOOK_ENV, "0")  # the fast paths, even in a MINIDL_TEXTBOOK=1 session
    monkeypatch.setattr(parallel, "WORKERS", 2)
    monkeypatch.setattr(parallel, "_MIN_ELEMENTS", 1)
    monkeypatch.setattr(parallel, "_pool", pool)
    monkeypatch.setattr(parallel, "policy", ThreadPolicy(2, adapt=False))  # the load is ignored
    monkeypatch.setattr(conv_nhwc, "_CHUNK_BYTES", 1)  # chunks of WORKERS = 2 images
    monkeypatch.setattr(pool_blocked, "_BLOCK_BYTES", 2 * 6 * 9 * 8 * 8)  # 2 images of SHAPE
    monkeypatch.setattr(batchnorm_nhwc, "_BLOCK_ELEMENTS", 256)  # 40 rows of 6 channels

    chunks = conv_nhwc._chunks

    def recorded_chunks(n, bytes_per_item):
        ranges = chunks(n, bytes_per_item)
        ran.chunks.append((ran.phase, ranges))
        return ranges

    monkeypatch.setattr(conv_nhwc, "_chunks", recorded_chunks)
    for module in (pool_blocked, batchnorm_nhwc):
        monkeypatch.setattr(module, "parallel_blocks", _recording_blocks(ran))
    yield ran
    pool.pool.shutdown()


def _recording_blocks(ran):
    """``parallel_blocks`` that records each block it hands to ``work``."""

    def parallel_blocks(xp, n, step, work, elements=0):
        phase = ran.phase

        def recorded(lo, hi):
            ran.blocks.append((phase, lo, hi))
            work(lo, hi)

        parallel.parallel_blocks(xp, n, step, recorded, elements)

    return parallel_blocks


def _forward_backward(ran, fn, inputs, gy):
    """[y, gradient of every input] of ``fn`` at ``inputs`` under the upstream gradient ``gy``."""
    ran.clear()
    ran.phase = "forward"
    ts = [md.Tensor(a, requires_grad=True) for a in inputs]
    y = fn(*ts)
    ran.phase = "backward"
    y.backward(md.Tensor(gy))
    return [y.numpy()] + [t.grad.numpy() for t in ts]


def _fast_and_textbook(ran, monkeypatch, fn, inputs, gy):
    """``_forward_backward`` on the textbook path, then on the fast path (``ran`` then holds what
    the fast run did); asserts both agree to float64 rounding."""
    with monkeypatch.context() as m:
        use_path("textbook", np, m)
        textbook = _forward_backward(ran, fn, inputs, gy)
    fast = _forward_backward(ran, fn, inputs, gy)
    for a, b in zip(fast, textbook):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


class FakeBLAS:
    """OpenBLAS's thread count as ``parallel.gemm_blocks`` sets it, recorded."""

    def __init__(self, count):
        self.count, self.counts = count, []

    def set(self, n):
        self.count = n
        self.counts.append(n)


def _assert_chunked_and_threaded(ran, phase, work):
    assert min(len(c) for c in ran.chunk_lists(phase)) >= 2, ran.chunk_lists(phase)
    assert len(ran.threads(phase, work)) == 2, ran.tasks


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "k,stride,padding", [(1, 1, 0), (1, 2, 1), (3, 1, 1), (3, 2, 1), (5, 1, 2), (5, 2, 0)]
)
@pytest.mark.parametrize("channels", [4, 8])
def test_conv2d_fast_path_matches_textbook(
    shrunk, monkeypatch, layout, k, stride, padding, channels
):
    """Every route of the chunked convolution: the 1x1 GEMM; im2col chunk by chunk on two
    threads; backward's gather of g at stride 1 (dW from g's columns at C >= the threshold, here
    shrunk to 6, else x's columns rebuilt) and col2im's scatter at stride 2; for NCHW,
    channels-last and channel-slice inputs and gradients."""
    monkeypatch.setattr(conv_nhwc, "_DW_FROM_GCOLS_MIN_CHANNELS", 6)
    blas = FakeBLAS(2)
    monkeypatch.setattr(parallel, "_blas", lambda: blas)
    from_gcols = []
    dw = conv_nhwc._weight_grad_from_gcols
    monkeypatch.setattr(
        conv_nhwc, "_weight_grad_from_gcols", lambda *a: from_gcols.append(a) or dw(*a)
    )
    rng = np.random.default_rng(k * 10 + stride + channels)
    N, _, H, W = SHAPE
    x = rng.standard_normal((N, channels, H, W))
    w, b = rng.standard_normal((7, channels, k, k)), rng.standard_normal(7)
    gy = rng.standard_normal(
        (N, 7, output_size(H, k, stride, padding), output_size(W, k, stride, padding))
    )
    _fast_and_textbook(
        shrunk,
        monkeypatch,
        lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
        [as_layout(np, x, layout), w, b],
        as_layout(np, gy, layout),
    )
    if k == 1:  # one GEMM over channels: no chunks; only layout copies of x and gy are threaded
        assert not shrunk.chunks
        for phase in ("forward", "backward"):
            copies = shrunk.threads(phase, "nhwc")
            assert len(copies) == (0 if layout == "channels_last" else 2), shrunk.tasks
        return
    # each chunk's im2col (or col2im) and GEMMs run on one of the two threads, OpenBLAS set to
    # one thread around each pass (forward; backward) and back
    for phase in ("forward", "backward"):
        _assert_chunked_and_threaded(shrunk, phase, "parallel_blocks")
    assert blas.counts == [1, 2, 1, 2]
    gather = stride == 1
    assert len(from_gcols) == (1 if gather and channels >= 6 else 0)


def _tiling(blocks, n):
    """The distinct blocks in order, after checking that they cover range(n) without overlap."""
    tiling = sorted(set(blocks))
    assert [lo for lo, _ in tiling] == [0] + [hi for _, hi in tiling[:-1]], tiling
    assert tiling[-1][1] == n, tiling
    return tiling


def _tie_heavy(rng, shape):
    """ReLU-like values: about 40% zeros and only a few distinct values, so windows tie often."""
    return np.maximum(rng.integers(-2, 4, shape), 0).astype(np.float64)


POOL_GEOMETRIES = [
    # kernel, stride, padding, ceil_mode
    (3, 1, 1, False),
    (3, 2, 0, True),
    (2, 2, 0, False),
    ((3, 2), (2, 1), (1, 0), True),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k,stride,padding,ceil_mode", POOL_GEOMETRIES)
@pytest.mark.parametrize("values", ["ties", "distinct"])
def test_max_pool_blocked_path_matches_textbook(
    shrunk, monkeypatch, layout, k, stride, padding, ceil_mode, values
):
    """Blocks of 2 images on two threads, forward and backward; with many ties the gradient still
    goes to the same (first) maximum on both paths."""
    rng = np.random.default_rng(1)
    x = _tie_heavy(rng, SHAPE) if values == "ties" else rng.standard_normal(SHAPE)
    fn = lambda t: F.max_pool2d(t, k, stride, padding, ceil_mode)  # noqa: E731
    gy = rng.standard_normal(fn(md.Tensor(x)).shape)
    _fast_and_textbook(
        shrunk, monkeypatch, fn, [as_layout(np, x, layout)], as_layout(np, gy, layout)
    )
    for phase in ("forward", "backward"):
        assert _tiling(shrunk.block_list(phase), SHAPE[0]) == [(0, 2), (2, 4), (4, 5)]
        assert len(shrunk.threads(phase, "parallel_blocks")) == 2, shrunk.tasks


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k,stride,padding,ceil_mode", POOL_GEOMETRIES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_threaded_path_matches_textbook(
    shrunk, monkeypatch, layout, k, stride, padding, ceil_mode, count_include_pad
):
    """Both separable 1-D sums (and their adjoints) split over the batch on two threads."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(SHAPE)
    fn = lambda t: F.avg_pool2d(t, k, stride, padding, ceil_mode, count_include_pad)  # noqa: E731
    gy = rng.standard_normal(fn(md.Tensor(x)).shape)
    _fast_and_textbook(
        shrunk, monkeypatch, fn, [as_layout(np, x, layout)], as_layout(np, gy, layout)
    )
    for phase, function in (("forward", "_sum_1d"), ("backward", "_sum_1d_backward")):
        assert len(shrunk.work(phase, function)) == 4  # two 1-D passes, each in two halves
        assert len(shrunk.threads(phase, function)) == 2, shrunk.tasks


@pytest.mark.parametrize("layout", ["channels_last", "channel_slice"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_batch_norm_blocked_path_matches_reference(shrunk, monkeypatch, layout, training, relu):
    """Batch norm's blocked path (9 blocks of 40 rows, the last partial, on two threads) against
    its reference path on the same channels-last input: output, gradients, running statistics."""
    rng = np.random.default_rng(3)
    x, gy = rng.standard_normal(SHAPE) * 3 + 2, rng.standard_normal(SHAPE)
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    stats = []

    def fn(t, g, b):
        rm, rv = np.linspace(-1, 1, 6), np.linspace(0.5, 2, 6)
        stats.append((rm, rv))
        return BatchNorm(rm, rv, training, momentum=0.5, relu=relu)(t, g, b)

    _fast_and_textbook(
        shrunk, monkeypatch, fn, [as_layout(np, x, layout), gamma, beta], as_layout(np, gy, layout)
    )
    (rm_ref, rv_ref), (rm, rv) = stats
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-12)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-12)
    # passes: forward the statistics (training only), then y; backward the sums, then dx
    for phase, passes in (("forward", 2 if training else 1), ("backward", 2)):
        blocks = shrunk.block_list(phase)
        tiling = _tiling(blocks, SHAPE[0] * SHAPE[2] * SHAPE[3])  # rows of C values
        assert len(tiling) >= 8 and len(blocks) == passes * len(tiling), blocks
        assert len(shrunk.threads(phase, "parallel_blocks")) == 2, shrunk.tasks


def test_googlenet_training_step_is_the_same_on_both_paths(shrunk, monkeypatch):
    """Whole-program equivalence: one float64 training step of a narrow CIFAR GoogLeNet, every
    convolution, pool and batch norm of it through the shrunk chunks, blocks and threads, gives
    the loss and parameter gradients of the textbook code."""
    rng = np.random.default_rng(4)
    x, target = rng.standard_normal((3, 3, 32, 32)), rng.integers(0, 10, 3)
    model = G.googlenet_cifar(width=0.125, dropout=0.0).double()
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.2

    def step():
        model.zero_grad()
        shrunk.clear()
        loss = F.cross_entropy(model(md.tensor(x)), md.tensor(target))
        loss.backward()
        return [loss.numpy()] + [p.grad.numpy() for p in model.parameters()]

    with monkeypatch.context() as m:
        use_path("textbook", np, m)
        textbook = step()
    fast = step()
    for a, b in zip(fast, textbook):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert shrunk.chunks and shrunk.blocks and len({t for *_, t in shrunk.tasks}) == 2


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [1, 2, 3])
def test_max_pool_blocked_path_when_the_first_offsets_fall_into_the_padding(
    shrunk, monkeypatch, layout, size
):
    """A 5x5/1 pool padded by 2 on inputs of 1-3 pixels: offset 0 (at size 1 also offset 1)
    reads no input at all, so the first offset the fast path takes is not 0; its values and
    first-maximum gradient must still be the textbook's."""
    rng = np.random.default_rng(2)
    x = _tie_heavy(rng, (5, 3, size, size))
    fn = lambda t: F.max_pool2d(t, 5, 1, 2)  # noqa: E731
    gy = rng.standard_normal(fn(md.Tensor(x)).shape)
    _fast_and_textbook(
        shrunk, monkeypatch, fn, [as_layout(np, x, layout)], as_layout(np, gy, layout)
    )
    assert shrunk.block_list("forward"), "the fast path did not run"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k,padding,width", [(3, 1, 8), (3, 1, 1), (5, 2, 6), (5, 2, 2)])
def test_max_pool_flat_w_backward_matches_textbook_and_runs_where_it_should(
    shrunk, monkeypatch, layout, k, padding, width
):
    """A stride-1 "same" pool on dense channels-last blocks routes its gradient along W on flat
    offsets, at any width (down to 1: only the window's own column then holds an arg-max); with
    ties, the textbook's first-maximum gradient. Other layouts keep the strided code."""
    calls = []
    original = pool_blocked._max_w_flat_backward
    monkeypatch.setattr(
        pool_blocked, "_max_w_flat_backward", lambda *a: calls.append(a) or original(*a)
    )
    rng = np.random.default_rng(5)
    shape = (5, 6, 4, width)
    x = _tie_heavy(rng, shape)
    fn = lambda t: F.max_pool2d(t, k, 1, padding)  # noqa: E731
    gy = rng.standard_normal(shape)
    _fast_and_textbook(
        shrunk, monkeypatch, fn, [as_layout(np, x, layout)], as_layout(np, gy, layout)
    )
    assert bool(calls) == (layout == "channels_last")


@pytest.mark.parametrize("k,padding", [(3, 1), (5, 2), (7, 3)])
@pytest.mark.parametrize("width", [1, 2, 7, 9])
def test_max_w_flat_backward_is_the_strided_adjoint(k, padding, width):
    """``_max_w_flat_backward`` against ``_max_1d_backward`` along W, for arg-max offsets that
    ``_max_1d`` found on a tie-heavy block: the same gradient (up to k of them meet at an input,
    added in another order)."""
    rng = np.random.default_rng(6)
    nhwc = np.maximum(rng.integers(-2, 4, (3, 5, width, 4)), 0).astype(np.float64)
    idx = nchw_view(np.empty(nhwc.shape, np.int8))
    pool_blocked._max_1d(nchw_view(nhwc), 3, k, 1, padding, width, idx)
    gy = nchw_view(rng.standard_normal(nhwc.shape))
    assert pool_blocked.flat_along_w(gy, idx, gy, k=k, s=1, p=padding)
    out = nchw_view(np.empty(nhwc.shape))
    gx_flat = pool_blocked._max_w_flat_backward(gy, idx, k, padding, out)
    gx_strided = pool_blocked._max_1d_backward(gy, idx, 3, k, 1, padding, width)
    np.testing.assert_allclose(gx_flat, gx_strided, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("channels", [1, 2, 8])
@pytest.mark.parametrize("ndim", [2, 4])
def test_copy_channels_moves_narrow_slices_as_items(channels, ndim):
    """``channels.copy_channels`` is ``dst[...] = src`` for channel slices of wider buffers (each
    pixel's channels moved as one void item), for dense arrays, and with NumPy's own copy for
    arrays whose channels are not adjacent, another dtype (cast) or a broadcast; the
    destination's neighbours are left alone; it returns dst."""
    from minidl.ops.cpu import channels as ch

    rng = np.random.default_rng(8)
    lead = (6,) if ndim == 2 else (2, 3, 4)
    wide_src, wide_dst = rng.standard_normal((*lead, 11)), np.full((*lead, 13), 7.0)
    src, dst = wide_src[..., 3 : 3 + channels], wide_dst[..., 4 : 4 + channels]
    assert ch.copy_channels(dst, src) is dst
    assert np.array_equal(dst, src)
    assert (wide_dst[..., :4] == 7).all() and (wide_dst[..., 4 + channels :] == 7).all()
    dense = np.empty(src.shape)
    assert np.array_equal(ch.copy_channels(dense, src), src)
    transposed = np.empty(src.shape[::-1]).T  # channels far apart: NumPy's own copy
    assert np.array_equal(ch.copy_channels(transposed, src), src)
    assert np.array_equal(ch.copy_channels(np.empty(src.shape, "f4"), src), src.astype("f4"))
    assert np.array_equal(
        ch.copy_channels(np.empty(src.shape), src[:1]), np.broadcast_to(src[:1], src.shape)
    )
